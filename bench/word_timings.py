"""Word timings: what they cost in the batched engines against openai-whisper's transcribe(), and how close they are.

    python -m bench.word_timings ../shared/audio/dev                 # 5 clips, the AMI meeting, the corpus joined
    python -m bench.word_timings DIR --clips 3 --no-joined --no-vad --json words.json

Each job is timed alone, one after the other (wall seconds and the process's CPU seconds, all threads), as the
worker runs it: with voice activity detection on (the contract's default) unless ``--no-vad``. For the ``batched``
(torch) and ``ctranslate2`` engines: the job without words, then with words; then the reference loop with words.
Each engine's words are matched to the reference's (the same words in order, lower case without punctuation) and
the mean absolute difference of their start times is given in milliseconds.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.engine.batched import BatchedEngine
from worker.engine.gating import vad_options
from worker.engine.options import TranscribeOptions
from worker.service.app import build_engine
from worker.service.settings import Settings
from worker.transcript import Transcript, Word

MODEL = "tiny.en"
ENGINES = ("batched", "ctranslate2")
# one of each corpus in the dev set, longest first where they differ
CLIPS = (
    "librispeech_1221-135766-0001.flac",
    "fleurs_en_002.ogg",
    "vctk_p225_023.flac",
    "arctic_aew_a0001.flac",
    "fleurs_en_005.ogg",
)
LONG = "diarization/ami_mixture.flac"


def _timed(run: object) -> tuple[Transcript, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    transcript = run()  # type: ignore[operator]
    return transcript, time.perf_counter() - wall, time.process_time() - cpu


def _words(transcript: Transcript) -> list[Word]:
    return [w for s in transcript.segments for w in (s.words or [])]


def _key(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def start_difference_ms(words: list[Word], reference: list[Word]) -> tuple[float, int, float]:
    """Mean absolute start difference over the words both read alike (in order), how many those are, and the
    share of them that start within 300 ms of the reference's."""
    ours, theirs = [_key(w.word) for w in words], [_key(w.word) for w in reference]
    pairs = [
        (words[block.a + k], reference[block.b + k])
        for block in difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False).get_matching_blocks()
        for k in range(block.size)
    ]
    if not pairs:
        return float("nan"), 0, float("nan")
    differences = np.array([abs(a.start - b.start) for a, b in pairs])
    return 1000.0 * float(differences.mean()), len(pairs), float((differences <= 0.3).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="the dev speech directory (DESIGN.md: Test audio)")
    parser.add_argument("--clips", type=int, default=5, help="how many short clips (default 5)")
    parser.add_argument("--no-joined", action="store_true", help="leave out the corpus joined as one recording")
    parser.add_argument("--no-vad", action="store_true", help="decode every second (the default detects speech)")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)

    audios: dict[str, np.ndarray] = {}
    for name in (*CLIPS[: args.clips], LONG):
        audios[Path(name).stem] = decode_audio(args.corpus / name, max_seconds=3600)
    if not args.no_joined:
        files = sorted(p for p in args.corpus.iterdir() if p.suffix in (".flac", ".ogg", ".wav"))
        audios["dev-joined"] = np.concatenate([decode_audio(p, max_seconds=600) for p in files])
    vad = None if args.no_vad else vad_options(True)
    plain = TranscribeOptions(language="en", vad=vad)
    words = replace(plain, word_timestamps=True)

    model_dir = Path(tempfile.mkdtemp(prefix="word-timings-"))
    engines = {}
    for name in ENGINES:
        engine = build_engine(Settings(model_dir=model_dir, default_model=MODEL, device="cpu", engine=name))
        assert isinstance(engine, BatchedEngine)
        warm = next(iter(audios.values()))
        engine.transcribe(MODEL, warm, words)  # weights, the torch encoder, numba's DTW: not in the timings
        engines[name] = engine
    reference = engines["batched"].reference
    reference.transcribe(MODEL, next(iter(audios.values())), words)

    rows = []
    for clip, audio in audios.items():
        row: dict[str, object] = {"clip": clip, "seconds": round(audio.size / SAMPLE_RATE, 1)}
        ref, row["reference_wall"], row["reference_cpu"] = _timed(lambda a=audio: reference.transcribe(MODEL, a, words))
        for name, engine in engines.items():
            _, row[f"{name}_wall"], row[f"{name}_cpu"] = _timed(lambda e=engine, a=audio: e.transcribe(MODEL, a, plain))
            before = engine.stats.snapshot().get("aligned_jobs", 0)
            found, row[f"{name}_words_wall"], row[f"{name}_words_cpu"] = _timed(
                lambda e=engine, a=audio: e.transcribe(MODEL, a, words)
            )
            assert engine.stats.snapshot()["aligned_jobs"] == before + 1, "the job did not run on the batched path"
            difference = start_difference_ms(_words(found), _words(ref))
            row[f"{name}_start_ms"], row[f"{name}_matched"], row[f"{name}_within_300ms"] = difference
        row["reference_words"] = len(_words(ref))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    _table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _table(rows: list[dict]) -> None:
    print(
        "CPU seconds per job (wall in brackets); mean start difference from the reference's words, ms "
        "(words matched, % within 300 ms)"
    )
    head = f"{'clip':<34}{'audio s':>8}"
    for name in ENGINES:
        head += f"{name:>16}{name + '+words':>22}{'Δstart ms':>22}"
    head += f"{'reference+words':>20}"
    print(head)
    for r in rows:
        line = f"{r['clip']:<34}{r['seconds']:>8}"
        for name in ENGINES:
            line += f"{r[f'{name}_cpu']:>9.2f} ({r[f'{name}_wall']:>4.1f})"
            line += f"{r[f'{name}_words_cpu']:>15.2f} ({r[f'{name}_words_wall']:>4.1f})"
            line += (
                f"{r[f'{name}_start_ms']:>9.0f} ({r[f'{name}_matched']:>4}, {100 * r[f'{name}_within_300ms']:3.0f}%)"
            )
        line += f"{r['reference_cpu']:>13.2f} ({r['reference_wall']:>4.1f})"
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
