"""Where the batched engine's time goes, in each CPU precision.

    python -m bench.engine_profile --corpus ../shared/audio/dev                   # fp32 and bf16, the CPU engine
    python -m bench.engine_profile --corpus DIR --engine batched --precision bf16
    python -m bench.engine_profile --corpus DIR --joined --json profile.json

The corpus is any directory ``bench.run`` takes (audio files with same-named ``.txt`` references, or a built
corpus's manifest), ``--joined`` its files as one long recording. For each precision the engine is built as the
worker builds it (``WHISPER_CPU_PRECISION``) and transcribes the whole corpus once through ``transcribe_many`` (its
wall, speed and counters). Then one pass of the corpus's first windows (the backend's batch size, packed as the
engine packs them; the quickest of ``--passes``) is split into stages: the log-Mel spectrogram, the torch encoder,
the decoder (openai-whisper's decoder steps; with CTranslate2, its ``generate``, which itself encodes the windows
decoded whole) and the rest (batch assembly, isolating pieces, tokens to results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import corpus as corpus_mod
from bench.run import cpu_record, package_versions
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.engine import backends
from worker.engine.batched import APART_MAX_SAMPLES, BatchedEngine
from worker.engine.device import choose_precision
from worker.engine.options import TranscribeOptions
from worker.engine.windows import Window, pack, pieces_of
from worker.service.app import build_engine
from worker.service.settings import Settings


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Stages:
    """Seconds per stage of one pass, from wrappers around the functions and modules the backend calls."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.steps = 0

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds[stage] += time.perf_counter() - started

        return wrapper

    @contextlib.contextmanager
    def module(self, stage: str, module: torch.nn.Module, *, steps: bool = False) -> Iterator[None]:
        """Time every forward of ``module`` (a decoder's forwards are its steps)."""
        started: list[float] = []

        def before(*_: Any) -> None:
            _sync(self.device)
            started.append(time.perf_counter())

        def after(*_: Any) -> None:
            _sync(self.device)
            self.seconds[stage] += time.perf_counter() - started.pop()
            self.steps += int(steps)

        handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class _TimedCt2:
    """CTranslate2's model with its ``generate`` (encoder for windows decoded whole, then the decoder) timed."""

    def __init__(self, model: Any, stages: Stages) -> None:
        self._model = model
        self.generate = stages.timed("decoder", model.generate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _apart(window: Window) -> bool:
    """Decoded a row per piece, as the engine decides for a new window (``batched._apart``)."""
    (piece, offset), *others = window.placements
    return bool(others) or offset != 0 or piece.samples <= APART_MAX_SAMPLES


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def one_pass(backend: Any, audios: list[np.ndarray], device: str) -> dict[str, Any]:
    """One pass of the corpus's first windows, its stages timed."""
    windows = pack([p for job, audio in enumerate(audios) for p in pieces_of(job, audio)])[: backend.batch_windows]
    tokenizer = backend.tokenizer("en", "transcribe")
    stages = Stages(device)
    started = time.perf_counter()
    batch = np.stack([w.audio(audios) for w in windows])
    shared: list[Window | None] = [w if _apart(w) else None for w in windows]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(backends, "log_mel", stages.timed("mel", backends.log_mel)))
        stack.enter_context(_patched(backends, "encode_apart", stages.timed("encoder", backends.encode_apart)))
        if isinstance(backend, backends.TorchBackend):
            stack.enter_context(stages.module("encoder", backend.encoder))
            stack.enter_context(stages.module("decoder", backend.model.decoder, steps=True))
        else:
            stack.enter_context(_patched(backend, "model", _TimedCt2(backend.model, stages)))
        decoded = backend.generate(batch, tokenizer, shared if any(shared) else None)
    _sync(device)
    wall = time.perf_counter() - started
    parts = {stage: round(stages.seconds.get(stage, 0.0), 3) for stage in ("mel", "encoder", "decoder")}
    parts["other"] = round(wall - sum(parts.values()), 3)
    steps = stages.steps or max((len(d.tokens) for d in decoded), default=0) + 1
    return {
        "windows": len(windows),
        "rows": len(decoded),
        "filled_seconds": round(sum(w.used for w in windows) / SAMPLE_RATE, 1),  # pieces and the gaps between
        "wall_seconds": round(wall, 3),
        "seconds": parts,
        "decoder_steps": steps,
        "ms_per_step": round(parts["decoder"] / steps * 1000, 2) if steps else None,
    }


def profile(args: argparse.Namespace, audios: list[np.ndarray], precision: str) -> dict[str, Any]:
    # From the environment too, so WHISPER_MODEL_DIR / WHISPER_MODEL_SOURCES reach the model lookup.
    settings = Settings.from_env().with_overrides(
        default_model=args.model,
        device=args.device,
        engine=args.engine,
        batch_windows=args.batch_windows,
        cpu_precision=precision,
    )
    engine = build_engine(settings)
    assert isinstance(engine, BatchedEngine), "the profile is for the batched engines"
    options = TranscribeOptions(language="en")
    engine.transcribe_many(args.model, audios[:2], options)  # load and warm up (a bf16 encoder converts here)
    before = engine.stats.snapshot()
    _sync(args.device)
    started = time.perf_counter()
    engine.transcribe_many(args.model, audios, options)
    _sync(args.device)
    wall = time.perf_counter() - started
    after = engine.stats.snapshot()
    seconds = sum(a.size for a in audios) / SAMPLE_RATE
    chosen = choose_precision(precision, "cuda" if args.device.startswith("cuda") else args.device)
    return {
        "precision": chosen.name,
        "reason": chosen.reason,
        "corpus": {"wall_seconds": round(wall, 2), "realtime": round(seconds / wall, 1)},
        "counters": {k: round(after[k] - before.get(k, 0.0), 3) for k in after},
        # the quickest of a few: on a shared machine a pass that others slowed says little
        "pass": min(
            (one_pass(engine._backend(args.model), audios, args.device) for _ in range(args.passes)),
            key=lambda timed: timed["wall_seconds"],
        ),
    }


def describe(result: dict[str, Any]) -> str:
    p, c = result["pass"], result["corpus"]
    parts = ", ".join(f"{stage} {value:.3f} s" for stage, value in p["seconds"].items())
    return (
        f"{result['precision']} ({result['reason']}): corpus {c['wall_seconds']:.2f} s, {c['realtime']}x realtime\n"
        f"  one pass of {p['windows']} windows ({p['rows']} rows, {p['filled_seconds']} s filled): "
        f"{p['wall_seconds']:.3f} s = {parts}; {p['decoder_steps']} decoder steps, {p['ms_per_step']} ms each"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="audio files with same-named .txt references (default: built)")
    parser.add_argument("--joined", action="store_true", help="the corpus's files as one long recording")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="auto", help="WHISPER_ENGINE: auto, batched or ctranslate2")
    parser.add_argument("--precision", default="fp32,bf16", help="comma list of WHISPER_CPU_PRECISION values")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3, help="the pass is timed this many times; the quickest counts")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch-windows", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        corpus = corpus_mod.from_directory(args.corpus) if args.corpus else corpus_mod.build_default()
        corpus = corpus_mod.joined(corpus) if args.joined else corpus
    except corpus_mod.CorpusError as exc:
        parser.error(str(exc))
    audios = [decode_audio(item.audio, max_seconds=24 * 3600) for item in corpus.items] * args.repeat
    cpu = cpu_record()
    flags = ", ".join(flag for flag, present in cpu["flags"].items() if present) or "none of them"
    print(
        f"corpus: {corpus.describe()} x{args.repeat}; CPU: {cpu['model']} ({flags}); {torch.get_num_threads()} threads"
    )
    results = []
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if args.device != "cpu":  # a GPU runs fp16 whatever the CPU precision says: once is enough
        precisions = precisions[:1]
    for precision in precisions:
        results.append(profile(args, audios, precision))
        print(describe(results[-1]), flush=True)
    if args.json:
        body = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": ["python", "-m", "bench.engine_profile", *(sys.argv[1:] if argv is None else argv)],
            "versions": package_versions(),
            "corpus": corpus.describe(),
            "cpu": cpu,
            "engine": args.engine,
            "model": args.model,
            "runs": results,
        }
        args.json.write_text(json.dumps(body, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
