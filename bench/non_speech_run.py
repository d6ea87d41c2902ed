"""The non-speech tiers: words invented on recordings without speech, and how stable speech with long gaps is.

    python -m bench.non_speech_run --json bench/results/cpu-non-speech.json [--seconds 60] [--corpus DIR]

1. Each generated non-speech kind (``bench.non_speech``: digital silence, low noise, 50/100 Hz hum, slow chords)
   through the engine with voice activity detection on and off, and through ``transcribe()`` (the reference) off:
   the words each writes (tokens with a letter or digit; the lone full stops both write for noise are not words).
2. An hour of digital silence through the engine with detection on: seconds of work.
3. Speech with gaps: real clips, each followed by 45 s of the next non-speech kind, transcribed three times alone and
   three times while other jobs are in flight, detection on and off: how many distinct transcripts the six runs give.
4. The real-speech corpus (``--corpus``, the dev clips) with detection on and off: WER and seconds.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import DEV_CORPUS
from bench.non_speech import NON_SPEECH, silence, with_gaps
from bench.run import cpu_record, package_versions
from bench.wer import corpus_wer
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.speech import VadOptions
from worker.engine import Engine
from worker.engine.options import TranscribeOptions
from worker.service.app import build_engine
from worker.service.settings import Settings

MODEL = "tiny.en"
GAP_SECONDS = 45.0
ON = TranscribeOptions(vad=VadOptions())
OFF = TranscribeOptions()


def words(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


def timed(engine: Engine, audio: np.ndarray, options: TranscribeOptions) -> tuple[str, float]:
    started = time.monotonic()
    text = engine.transcribe(MODEL, audio, options).text
    return text, round(time.monotonic() - started, 2)


def non_speech_tier(engine: Engine, seconds: float) -> list[dict[str, Any]]:
    reference = engine.reference  # type: ignore[attr-defined]
    rows = []
    for name, make in NON_SPEECH.items():
        audio = make(seconds, 0)
        row: dict[str, Any] = {"kind": name, "seconds": seconds}
        for label, system, options in (
            ("engine_vad", engine, ON),
            ("engine", engine, OFF),
            ("reference", reference, OFF),
        ):
            text, took = timed(system, audio, options)
            row[label] = {"words": words(text), "text": text[:200], "work_seconds": took}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def silent_hour(engine: Engine) -> dict[str, Any]:
    audio = silence(3600.0)
    text, took = timed(engine, audio, ON)
    return {"seconds": 3600.0, "work_seconds": took, "words": words(text)}


def clips(corpus: Path) -> list[tuple[np.ndarray, str]]:
    out = []
    for path in sorted(corpus.glob("*.flac")):
        reference = path.with_suffix(".txt")
        if reference.exists():
            out.append((decode_audio(path, max_seconds=3600), reference.read_text().strip()))
    return out


def gaps_tier(engine: Engine, corpus: list[tuple[np.ndarray, str]]) -> dict[str, Any]:
    speech = with_gaps([audio for audio, _ in corpus[:4]], GAP_SECONDS)
    others = [audio for audio, _ in corpus[4:20]]
    result: dict[str, Any] = {"seconds": round(speech.size / SAMPLE_RATE, 1), "gap_seconds": GAP_SECONDS}
    for label, options in (("vad", ON), ("no_vad", OFF)):
        texts = [engine.transcribe(MODEL, speech, options).text for _ in range(3)]
        for _ in range(3):  # other jobs in flight: they share the engine's passes
            busy = threading.Thread(target=engine.transcribe_many, args=(MODEL, others, options))
            busy.start()
            texts.append(engine.transcribe(MODEL, speech, options).text)
            busy.join()
        result[label] = {
            "distinct_transcripts": len(set(texts)),
            "words": [words(t) for t in texts],
        }
        print(label, json.dumps(result[label]), flush=True)
    return result


def corpus_tier(engine: Engine, corpus: list[tuple[np.ndarray, str]]) -> dict[str, Any]:
    audios = [audio for audio, _ in corpus]
    references = [text for _, text in corpus]
    out: dict[str, Any] = {"clips": len(audios), "seconds": round(sum(a.size for a in audios) / SAMPLE_RATE, 1)}
    for label, options in (("vad", ON), ("no_vad", OFF), ("vad_again", ON), ("no_vad_again", OFF)):
        started = time.monotonic()
        texts = [t.text for t in engine.transcribe_many(MODEL, audios, options)]
        took = round(time.monotonic() - started, 2)
        out[label] = {"wer": corpus_wer(references, texts), "work_seconds": took}
        print(label, json.dumps(out[label]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.non_speech_run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each non-speech recording")
    parser.add_argument("--corpus", type=Path, default=DEV_CORPUS, help="real speech with .txt references")
    parser.add_argument("--model-dir", type=Path, default=Path(".cache/models"))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    engine = build_engine(Settings(model_dir=args.model_dir, default_model=MODEL, device="cpu"))
    corpus = clips(args.corpus)
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench.non_speech_run", *(argv or [])],
        "versions": package_versions(),
        "model": MODEL,
        "engine": engine.name,
        "cpu": cpu_record(),
        # written from the corpus's parent on (audio/dev): the same wherever it ran
        "corpus": f"generated non-speech (bench.non_speech), and {args.corpus.parent.name}/{args.corpus.name} "
        f"({len(corpus)} clips)",
        "non_speech": non_speech_tier(engine, args.seconds),
        "silent_hour": silent_hour(engine),
        "speech_with_gaps": gaps_tier(engine, corpus),
        "dev_corpus": corpus_tier(engine, corpus),
    }
    print(json.dumps(document["silent_hour"]))
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
