"""Measure a worker's cold start: process start → first result, through the real ``whisper-worker run``.

What AWS Batch does when the queue wakes it from zero: a job message is already waiting, a fresh process starts
with the model baked into the image, receives the message, transcribes it and stores the result. This script
plays that on this machine with the embedded AWS (moto's S3 + SQS over loopback HTTP):

1. bake: resolve the model into a model directory (an official checkpoint must already be there; a bundled one
   is converted), as ``whisper-worker models fetch`` does at image build time;
2. queue one job (the JFK sample unless ``--audio``);
3. start ``whisper-worker run --max-jobs 1`` and time, from just before the process is spawned, the arrival of
   its "worker started", "model loaded" and "job completed" log lines (stdout is read unbuffered as it comes).

It also times ``whisper-worker --help`` and ``schema``, which must stay fast (lazy imports in the CLI).

    .venv/bin/python scripts/cold_start.py                 # tiny.en (bundled), preload on
    .venv/bin/python scripts/cold_start.py --runs 3 --no-preload
    .venv/bin/python scripts/cold_start.py --json          # machine-readable, for CI trends
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.local.moto_server import LocalAws  # noqa: E402
from worker.models.cache import resolve  # noqa: E402
from worker.sample import sample_audio  # noqa: E402

MILESTONES = ("worker started", "model loaded", "job completed")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "whisper-worker"  # what the image's ENTRYPOINT runs
    return [str(script)] if script.is_file() else [sys.executable, "-m", "worker.cli"]


def bake(model: str, model_dir: Path) -> None:
    """Put the model's weights in ``model_dir`` the way the image build does, so the run loads, not converts."""
    resolve(model, model_dir=model_dir, sources={}, download=False)


def time_command(args: list[str], repeat: int = 3) -> float:
    """Best wall time of ``whisper-worker <args>`` over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([*_command(), *args], capture_output=True, check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def one_run(local: LocalAws, model: str, model_dir: Path, audio: Path, preload: bool, index: int) -> dict[str, Any]:
    assert local.resources is not None
    r = local.resources
    job_id = f"cold-{index}"
    key = f"audio/{job_id}{audio.suffix}"
    local.client("s3").upload_file(str(audio), r.bucket, key)
    message = {"job_id": job_id, "audio": f"s3://{r.bucket}/{key}", "model": model}
    local.client("sqs").send_message(QueueUrl=r.queue_url, MessageBody=json.dumps(message))

    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_")}
    env.update(
        AWS_ENDPOINT_URL=r.endpoint_url,
        AWS_REGION="us-east-1",
        WHISPER_QUEUE_URL=r.queue_url,
        WHISPER_RESULTS_BUCKET=r.bucket,
        WHISPER_DEFAULT_MODEL=model,
        WHISPER_MODEL_DIR=str(model_dir),
        WHISPER_PRELOAD_MODEL="true" if preload else "false",
        WHISPER_WAIT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    seen: dict[str, float] = {}
    records: dict[str, dict] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*_command(), "run", "--max-jobs", "1"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            now = time.perf_counter() - started
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            name = record.get("message")
            if name in MILESTONES and name not in seen:
                seen[name] = now
                records[name] = record
            if "ModelLoadSeconds" in record:
                records["emf:model_load"] = record

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait(timeout=600)
    exited = time.perf_counter() - started
    reader.join(timeout=10)
    if code != 0 or "job completed" not in seen:
        raise SystemExit(f"worker exited {code} without completing the job; milestones seen: {sorted(seen)}")
    result = json.loads(
        local.client("s3").get_object(Bucket=r.bucket, Key=f"results/{job_id}/result.json")["Body"].read()
    )
    assert result["status"] == "completed", result
    return {
        "first_result_seconds": round(seen["job completed"], 3),
        "worker_started_seconds": round(seen.get("worker started", float("nan")), 3),
        "model_loaded_seconds": round(seen.get("model loaded", float("nan")), 3),
        "model_load_seconds": records.get("model loaded", {}).get("load_seconds"),
        "job_processing_seconds": records["job completed"].get("processing_seconds"),
        "audio_seconds": result["duration_seconds"],
        "process_exit_seconds": round(exited, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en", help="model to bake and serve (default: tiny.en, bundled)")
    parser.add_argument("--model-dir", type=Path, help="baked model directory (default: a fresh temporary one)")
    parser.add_argument("--audio", type=Path, default=None, help="audio file for the first job (default: JFK, 11 s)")
    parser.add_argument("--runs", type=int, default=1, help="cold starts to measure (median reported)")
    parser.add_argument("--preload", action=argparse.BooleanOptionalAction, default=True, help="WHISPER_PRELOAD_MODEL")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    audio = args.audio or sample_audio()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        model_dir = args.model_dir or Path(tmp) / "models"
        bake(args.model, model_dir)
        cli = {"help_seconds": round(time_command(["--help"]), 3), "schema_seconds": round(time_command(["schema"]), 3)}
        with LocalAws(bucket="cold-start", queue="cold-start", visibility_timeout=120) as local:
            runs = [one_run(local, args.model, model_dir, audio, args.preload, i) for i in range(args.runs)]

    median = statistics.median(r["first_result_seconds"] for r in runs)
    report = {"model": args.model, "preload": args.preload, "cpu_count": os.cpu_count(), **cli, "runs": runs}
    report["first_result_seconds_median"] = median
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"cold start, model {args.model}, preload {'on' if args.preload else 'off'}, {os.cpu_count()} CPU cores:")
    for i, run in enumerate(runs, start=1):
        print(
            f"  run {i}: process start to first result {run['first_result_seconds']:.2f} s "
            f"(worker started {run['worker_started_seconds']:.2f} s, model loaded {run['model_loaded_seconds']:.2f} s"
            f" after {run['model_load_seconds']} s of loading, job {run['job_processing_seconds']} s "
            f"for {run['audio_seconds']} s of audio)"
        )
    print(f"  median: {median:.2f} s")
    print(f"  whisper-worker --help {cli['help_seconds']:.2f} s, schema {cli['schema_seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
