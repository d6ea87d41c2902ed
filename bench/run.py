"""``python -m bench.run``: the same corpus through every system, one process each, and one table.

    python -m bench.run                                      # default corpus, every system, CPU
    python -m bench.run --systems reference,faster-whisper --corpus ~/talks
    python -m bench.run --device cuda --repeat 10 --json bench.json
    python -m bench.run --systems engine,worker --concurrency 4 --engine batched
    python -m bench.run --systems worker --diarize --corpus ~/talks   # worker with and without diarization
    python -m bench.run --corpus ~/clips --joined            # the clips as one long recording, pauses between
    python -m bench.run --corpus ~/clips --precision fp32,bf16   # engine and worker in each CPU precision

Systems: ``reference`` (openai-whisper's transcribe, file after file), ``reference-nocudnn`` (the same with
cuDNN attention off; cuda only), ``faster-whisper`` and ``faster-whisper-batched`` (CTranslate2, int8 on CPU,
float16 on cuda), ``engine`` (our transcription core, no queue) and ``worker`` (our worker end to end through the
embedded S3 + SQS). ``worker-diarize`` is that worker with ``"diarize": true`` in every message; it runs only when
named in ``--systems`` or with ``--diarize`` (which adds it beside ``worker``), so the table shows the worker's speed
with and without speaker diarization side by side (diarization's accuracy: ``python -m bench.diarization``). All
use tiny.en: the openai-whisper checkpoint converted from the bundled CTranslate2 weights, and those weights
themselves for faster-whisper.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import corpus as corpus_mod
from bench.report import Summary, add_ratios, format_report, summarise
from bench.systems import CUDA_ONLY, INSTALL_HINT, OPT_IN, SYSTEMS, Spec

ROOT = Path(__file__).resolve().parent.parent
MODEL = "tiny.en"
DEFAULT_MODEL_DIR = ROOT / ".cache" / "bench-models"
NEEDS_CHECKPOINT = frozenset({"reference", "reference-nocudnn", "engine", "worker", "worker-diarize"})
PRECISIONS = ("auto", "fp32", "bf16")
# The systems that WHISPER_CPU_PRECISION changes; the others run once whatever --precision lists.
WITH_PRECISION = frozenset({"engine", "worker", "worker-diarize", "worker-latency", "worker-one-by-one"})


def default_systems(device: str) -> list[str]:
    return [name for name in SYSTEMS if (device == "cuda" or name not in CUDA_ONLY) and name not in OPT_IN]


def with_diarize(systems: list[str]) -> list[str]:
    """``worker-diarize`` added right after ``worker`` (or last), once."""
    if "worker-diarize" in systems:
        return systems
    at = systems.index("worker") + 1 if "worker" in systems else len(systems)
    return [*systems[:at], "worker-diarize", *systems[at:]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="audio files with same-named .txt references (default: built)")
    parser.add_argument("--systems", help=f"comma list (default: all): {', '.join(SYSTEMS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="transcribe every corpus item N times (fast devices)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="WHISPER_CONCURRENCY for the worker (default: 16 on cpu, as the stack sets it; 64 on cuda: enough "
        "messages in progress that their windows fill the engine's passes)",
    )
    parser.add_argument("--engine", help="WHISPER_ENGINE for the engine and worker systems")
    parser.add_argument(
        "--diarize",
        action="store_true",
        help="also run worker-diarize: the worker with diarize: true in every message, beside worker",
    )
    parser.add_argument(
        "--joined",
        action="store_true",
        help="the corpus's files joined, with pauses, into one long recording (its reference theirs in order)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="WHISPER_CPU_PRECISION for the engine and worker systems, a comma list of auto, fp32, bf16; with more "
        "than one, each of those systems runs once per precision, named e.g. engine-bf16 (default: auto)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="converted checkpoints' cache")
    parser.add_argument(
        "--warmup", type=Path, help="short file each system transcribes once before timing (default: the JFK sample)"
    )
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()] if args.systems else None
    args.systems = args.systems or default_systems(args.device)
    if args.diarize:
        args.systems = with_diarize(args.systems)
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.device != "cuda" and CUDA_ONLY & set(args.systems):
        parser.error(f"{', '.join(sorted(CUDA_ONLY & set(args.systems)))} needs --device cuda")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.precision = [p.strip().lower() for p in args.precision.split(",") if p.strip()] or ["auto"]
    if bad := [p for p in args.precision if p not in PRECISIONS]:
        parser.error(f"unknown precision(s) {', '.join(bad)}; choose from {', '.join(PRECISIONS)}")
    return args


def runs_of(systems: list[str], precisions: list[str]) -> list[tuple[str, str, str | None]]:
    """(name in the table, system, precision) for each process to run: a system that precision changes once per
    precision (named ``system-precision`` when there are several), the others once."""
    runs: list[tuple[str, str, str | None]] = []
    for system in systems:
        if system not in WITH_PRECISION:
            runs.append((system, system, None))
        elif len(precisions) == 1:
            runs.append((system, system, precisions[0]))
        else:
            runs += [(f"{system}-{precision}", system, precision) for precision in precisions]
    return runs


# ---------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_record() -> dict[str, Any]:
    """The CPU's model and the flags that decide Whisper's speed on it (bf16 and int8 matrix instructions)."""
    from worker.engine.device import cpu_info

    info = cpu_info()
    return {"model": info.model if info.model != "unknown" else cpu_model(), "flags": info.speed_flags()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_line(device: str, outcomes: list[dict[str, Any]]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [cpu_model(), f"{cores} cores", f"torch {_version('torch')}", f"device {device}"]
    gpu = next((o.get("device_name") for o in outcomes if o.get("device_name")), "")
    if device == "cuda":
        parts.append(f"GPU {gpu or 'unknown'}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- model files


def model_files(systems: list[str], model_dir: Path) -> tuple[str, str]:
    """(openai-whisper checkpoint, CTranslate2 directory) for tiny.en, resolved once here so that converting the
    bundled weights (first run only) is timed in no system."""
    checkpoint = ct2_dir = ""
    if NEEDS_CHECKPOINT & set(systems):
        from worker.models.cache import resolve

        checkpoint = str(resolve(MODEL, model_dir=model_dir, sources={}, download=False).path)
    if {"faster-whisper", "faster-whisper-batched"} & set(systems):
        from worker.models.cache import BUNDLED, _package_dir

        ct2_dir = str(_package_dir(BUNDLED[MODEL].package))
    return checkpoint, ct2_dir


# ---------------------------------------------------------------------------------------------- one system


def run_system(spec: Spec, workdir: Path) -> tuple[dict[str, Any], float | None]:
    """Run one system in a child process: its outcome, and that child's peak RSS in MB (``os.wait4``)."""
    module = SYSTEMS[spec.system]
    if module is not None and importlib.util.find_spec(module) is None:
        return {"status": "not installed", "detail": INSTALL_HINT.get(module, f"pip install {module}")}, None
    spec_path, out_path = workdir / f"{spec.system}.spec.json", workdir / f"{spec.system}.out.json"
    spec.write(spec_path)
    env = dict(os.environ, WHISPER_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "bench.systems", str(spec_path), str(out_path)], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    if not out_path.is_file():
        return {"status": "error", "detail": f"the process exited with code {proc.returncode} and no result"}, rss_mb
    return json.loads(out_path.read_text()), rss_mb


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        corpus = corpus_mod.from_directory(args.corpus) if args.corpus else corpus_mod.build_default()
        joined_from = len(corpus.items)
        corpus = corpus_mod.joined(corpus) if args.joined else corpus
    except corpus_mod.CorpusError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    items = [
        {"name": it.name, "audio": str(it.audio), "text": it.text, "kind": it.kind, "seconds": it.seconds}
        for it in corpus.items
    ] * args.repeat
    audio_seconds = sum(item["seconds"] for item in items)
    checkpoint, ct2_dir = model_files(args.systems, args.model_dir)
    print(f"corpus: {corpus.describe()} x{args.repeat}; systems: {', '.join(args.systems)}", flush=True)

    summaries: list[Summary] = []
    outcomes: list[dict[str, Any]] = []
    runs = runs_of(args.systems, args.precision)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for n, (name, system, precision) in enumerate(runs, start=1):
            spec = Spec(
                system=system,
                items=[{k: v for k, v in item.items() if k != "text"} for item in items],
                device=args.device,
                model=MODEL,
                model_dir=str(args.model_dir.resolve()),
                checkpoint=checkpoint,
                ct2_dir=ct2_dir,
                warmup=str((args.warmup or corpus_mod.jfk_path()).resolve()),
                concurrency=args.concurrency or (64 if args.device == "cuda" else 16),
                engine=args.engine,
                timeout=600 + 5 * audio_seconds,
                precision=precision,
            )
            # Other work on the machine skews every number: the load average says whether there was any.
            print(f"[{n}/{len(runs)}] {name} ... (load average {os.getloadavg()[0]:.2f})", flush=True)
            started = time.perf_counter()
            workdir = Path(tmp) / name  # a folder per run: a system run twice never reads the last one's result
            workdir.mkdir()
            outcome, rss_mb = run_system(spec, workdir)
            print(f"[{n}/{len(runs)}] {name}: {outcome['status']} in {time.perf_counter() - started:.0f} s")
            outcomes.append(outcome)
            summaries.append(summarise(name, items, outcome, rss_mb))
    add_ratios(summaries)
    corpus_line = f"{corpus.describe()}" + (f", each item x{args.repeat}" if args.repeat > 1 else "")
    if args.joined:
        corpus_line += f": its {joined_from} files joined, {min(corpus_mod.PAUSES)}-{max(corpus_mod.PAUSES)} s apart"
    machine = machine_line(args.device, outcomes)
    print()
    print(format_report(summaries, machine, corpus_line))
    if args.json:
        write_json(args.json, machine, corpus_line, items, summaries, outcomes, run_metadata(args, argv))
    return 0


def package_versions() -> dict[str, str]:
    """Python and the packages whose versions move the figures; those not installed are left out."""
    packages = ("whisper-batch", "torch", "openai-whisper", "ctranslate2", "faster-whisper")
    installed = {name: _version(name) for name in packages}
    return {"python": platform.python_version(), **{k: v for k, v in installed.items() if v != "not installed"}}


def run_metadata(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """What ``bench.publish`` states beside a result: when, how it was run, with what (no figure needs retyping)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)],
        "versions": package_versions(),
        "model": MODEL,
        "corpus_source": ("--corpus: the given audio" if args.corpus else "built-in: synthetic (espeak-ng), JFK sample")
        + (", joined into one recording (--joined)" if args.joined else ""),
        "settings": {
            "device": args.device,
            "repeat": args.repeat,
            "concurrency": args.concurrency or (64 if args.device == "cuda" else 16),
            "engine": args.engine,
            "precision": ",".join(args.precision),
        },
        "cpu": cpu_record(),
    }


def write_json(
    path: Path,
    machine: str,
    corpus_line: str,
    items: list[dict[str, Any]],
    summaries: list[Summary],
    outcomes: list[dict[str, Any]],
    run_info: dict[str, Any] | None = None,
) -> None:
    systems = []
    for summary, outcome in zip(summaries, outcomes, strict=True):
        entry = dataclasses.asdict(summary)
        texts, errors = outcome.get("texts") or [], outcome.get("errors") or []
        walls = outcome.get("item_seconds") or []
        entry["items"] = [
            {
                "name": item["name"],
                "kind": item["kind"],
                "seconds": item["seconds"],
                "reference": item["text"],
                "hypothesis": texts[i] if i < len(texts) else None,
                "error": errors[i] if i < len(errors) else None,
                "wall_seconds": walls[i] if i < len(walls) else None,
            }
            for i, item in enumerate(items)
        ]
        systems.append(entry)
    body = {"machine": machine, "corpus": corpus_line, **(run_info or {}), "systems": systems}
    path.write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
