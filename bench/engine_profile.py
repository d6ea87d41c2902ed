"""Where the batched engine's time goes: ``python -m bench.engine_profile --corpus DIR [--device cuda]``.

Transcribes the corpus (``--repeat`` times over) through ``transcribe_many`` and prints the engine's counters
(forward passes, windows, resampled windows, seconds decoding), then times one full pass split into building
the windows, the log-Mel spectrogram, the encoder and the decoding loop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from worker.audio.decode import decode_audio
from worker.engine.batched import BatchedEngine
from worker.engine.greedy import generate_greedy, log_mel
from worker.engine.options import TranscribeOptions
from worker.engine.windows import pack, pieces_of
from worker.service.app import build_engine
from worker.service.settings import Settings


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="batched")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch-windows", type=int, default=0)
    args = parser.parse_args()
    items = json.loads((args.corpus / "manifest.json").read_text())["items"]
    audios = [decode_audio(args.corpus / item["audio"], max_seconds=1e9) for item in items] * args.repeat
    seconds = sum(a.size for a in audios) / 16000
    # From the environment too, so WHISPER_MODEL_DIR / WHISPER_MODEL_SOURCES reach the model lookup.
    settings = Settings.from_env().with_overrides(
        default_model=args.model, device=args.device, engine=args.engine, batch_windows=args.batch_windows
    )
    engine = build_engine(settings)
    assert isinstance(engine, BatchedEngine), "the profile is for the batched engines"
    options = TranscribeOptions(language="en")
    engine.transcribe_many(args.model, audios[:2], options)  # load and warm up
    before = engine.stats.snapshot()
    _sync(args.device)
    started = time.perf_counter()
    engine.transcribe_many(args.model, audios, options)
    _sync(args.device)
    wall = time.perf_counter() - started
    after = engine.stats.snapshot()
    counters = {k: round(after[k] - before.get(k, 0.0), 3) for k in after}
    print(f"{seconds:.0f} s of audio in {wall:.2f} s: {seconds / wall:.0f}x realtime; {counters}")

    backend = engine._backend(args.model)
    windows = pack([p for job, audio in enumerate(audios) for p in pieces_of(job, audio)])[: backend.batch_windows]
    tokenizer = backend.tokenizer("en", "transcribe")
    marks = [time.perf_counter()]
    batch = np.stack([w.audio(audios) for w in windows])
    marks.append(time.perf_counter())
    if not hasattr(backend, "model") or not isinstance(backend.model, torch.nn.Module):
        print(f"one pass of {len(windows)} windows: building them {marks[1] - marks[0]:.3f} s")
        return
    mel = log_mel(torch.from_numpy(batch).to(args.device), backend.model.dims.n_mels)
    _sync(args.device)
    marks.append(time.perf_counter())
    with torch.inference_mode():
        backend.model.encoder(mel.to(next(backend.model.parameters()).dtype))
    _sync(args.device)
    marks.append(time.perf_counter())
    decoded = generate_greedy(backend.model, mel, tokenizer)
    _sync(args.device)
    marks.append(time.perf_counter())
    steps = max(len(d.tokens) for d in decoded) + 1
    parts = ["windows", "mel", "encoder", "encoder+decoding"]
    timings = ", ".join(f"{name} {b - a:.3f} s" for name, a, b in zip(parts, marks, marks[1:], strict=False))
    per_step = (marks[4] - marks[3] - (marks[3] - marks[2])) / steps * 1000
    print(f"one pass of {len(windows)} windows: {timings}; {steps} steps, about {per_step:.2f} ms per step")


if __name__ == "__main__":
    main()
