"""What decoding in child processes costs: the worker end to end on a corpus with WHISPER_DECODER_ISOLATION=false
(decoding in the worker's process, as before worker/audio/isolated.py) and true, in the same run, alternating,
and the decode stage alone (probe + decode per clip) both ways.

    python -m bench.decoder_isolation [--corpus ../shared/audio/dev] [--rounds 3] [--json bench/results/...]

End to end is ``bench.worker_system``'s ``worker`` clock: one ``whisper-worker run`` process over the embedded AWS
(moto's server in a process of its own), a warm-up job, then every corpus message at once; wall from the first
send until the queue holds none of them. Each round runs both settings, in alternating order, each with a fresh
worker and AWS; the report gives every run and the medians. Throughput is audio seconds over wall seconds; CPU
is the worker's and its decoder children's (not moto's or this harness's), steadier than wall on a shared machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.corpus import DEV_CORPUS, Corpus, from_directory, jfk_path
from bench.run import cpu_model, package_versions
from bench.worker_system import WARMUP_JOB, Results, _command, _message, _process_cpu, _queue_empty, _safe, _stop
from worker.audio.decode import decode_audio, probe_seconds
from worker.audio.isolated import DecoderPool
from worker.local.moto_server import LocalAws
from worker.models.cache import resolve

ROOT = Path(__file__).resolve().parent.parent
MODEL = "tiny.en"
MODEL_DIR = ROOT / ".cache" / "bench-models"
LOG = ROOT / ".cache" / "bench-decoder-isolation.log"
CONCURRENCY = 16  # as bench/results/cpu-dev-corpus.json's worker
DECODE_ROUNDS = 5


def cpu_flags() -> list[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].split()
    return []


def decode_stage(corpus: Corpus, rounds: int = DECODE_ROUNDS) -> dict[str, float]:
    """Milliseconds per clip for probe + decode, in this process and through a warm one-child pool (best round)."""
    paths = [item.audio for item in corpus.items]
    pool = DecoderPool(1, memory_mb=1024, timeout_seconds=60, timeout_factor=0.05)
    pool.decode(paths[0], max_seconds=60)  # started: the worker's children live for many jobs

    def in_process(path: Path) -> None:
        probe_seconds(path)
        decode_audio(path, max_seconds=3600)

    def isolated(path: Path) -> None:
        pool.probe(path)
        pool.decode(path, max_seconds=3600)

    best: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name, run in (("in_process", in_process), ("isolated", isolated)):
                started = time.perf_counter()
                for path in paths:
                    run(path)
                per_clip = (time.perf_counter() - started) * 1000 / len(paths)
                best[name] = min(best.get(name, float("inf")), per_clip)
    finally:
        pool.close()
    return {
        "in_process_ms_per_clip": round(best["in_process"], 2),
        "isolated_ms_per_clip": round(best["isolated"], 2),
        "added_ms_per_clip": round(best["isolated"] - best["in_process"], 2),
    }


def worker_wall(corpus: Corpus, isolation: bool, timeout: float = 600) -> dict[str, Any]:
    """One worker process over the corpus: seconds from the first send to the last result, and its stage means."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LocalAws(bucket="whisper-bench", queue="whisper-bench", visibility_timeout=300, own_process=True) as local:
        assert local.resources is not None
        bucket, queue_url = local.resources.bucket, local.resources.queue_url
        s3, sqs = local.client("s3"), local.client("sqs")
        urls = []
        for i, item in enumerate(corpus.items):
            key = f"audio/{i:04d}-{_safe(item.name)}{item.audio.suffix}"
            s3.upload_file(str(item.audio), bucket, key)
            urls.append(f"s3://{bucket}/{key}")
        s3.upload_file(str(jfk_path()), bucket, "audio/warmup.flac")
        sqs.send_message(QueueUrl=queue_url, MessageBody=_message(WARMUP_JOB, f"s3://{bucket}/audio/warmup.flac"))
        env = local.worker_env(
            secret=secret,
            model_dir=MODEL_DIR,
            model=MODEL,
            device="cpu",
            concurrency=CONCURRENCY,
            max_idle_seconds=24 * 3600,
            decoder_isolation=str(isolation).lower(),
        )
        with LOG.open("wb") as log:
            proc = subprocess.Popen([*_command(), "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        results = Results(s3, bucket, proc, LOG)
        try:
            results.wait({WARMUP_JOB}, time.perf_counter() + timeout)
            job_ids = [f"bench-{i:05d}" for i in range(len(urls))]
            cpu_before = _tree_cpu(proc.pid)
            sent = time.perf_counter()
            bodies = [_message(job_id, url) for job_id, url in zip(job_ids, urls, strict=True)]
            for start in range(0, len(bodies), 10):
                entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
                sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            results.wait(set(job_ids), sent + timeout, drained=lambda: _queue_empty(sqs, queue_url))
            wall = max(results.found[j][1] for j in job_ids) - sent
            cpu = _tree_cpu(proc.pid) - cpu_before
        finally:
            _stop(proc)
        failed = [j for j in job_ids if results.found[j][0]["status"] != "completed"]
    decode_ms = [
        record["stages_ms"].get("decode", 0.0)
        for record in _log_records()
        if record.get("message") == "job completed" and record.get("job_id", "").startswith("bench-")
    ]
    return {
        "isolation": isolation,
        "wall_seconds": round(wall, 3),
        "x_real_time": round(corpus.seconds / wall, 2),
        "failed": len(failed),
        "cpu_seconds": round(cpu, 2),
        "decode_stage_ms_mean": round(statistics.fmean(decode_ms), 1) if decode_ms else None,
    }


def _tree_cpu(pid: int) -> float:
    """CPU seconds used so far by the worker and its child processes (the decoders), all threads (Linux)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(child) for child in task.read_text().split()]
    return sum(_process_cpu(p) or 0.0 for p in (pid, *children))


def _log_records() -> list[dict[str, Any]]:
    records = []
    for line in LOG.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEV_CORPUS)
    parser.add_argument("--rounds", type=int, default=3, help="worker runs per setting, alternating")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    corpus = from_directory(args.corpus)
    resolve(MODEL, model_dir=MODEL_DIR, sources={}, download=False)  # converted once, outside the clocks
    stage = decode_stage(corpus)
    print(f"decode stage: {stage}", flush=True)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for isolation in order:
            runs.append({"round": round_ + 1, **worker_wall(corpus, isolation)})
            print(json.dumps(runs[-1]), flush=True)
    before = statistics.median(r["wall_seconds"] for r in runs if not r["isolation"])
    after = statistics.median(r["wall_seconds"] for r in runs if r["isolation"])
    cpu_before = statistics.median(r["cpu_seconds"] for r in runs if not r["isolation"])
    cpu_after = statistics.median(r["cpu_seconds"] for r in runs if r["isolation"])
    summary = {
        "before_in_process_wall_seconds": before,
        "after_isolated_wall_seconds": after,
        "before_x_real_time": round(corpus.seconds / before, 2),
        "after_x_real_time": round(corpus.seconds / after, 2),
        "throughput_ratio_after_over_before": round(before / after, 4),
        "before_cpu_seconds": cpu_before,
        "after_cpu_seconds": cpu_after,
        "cpu_ratio_after_over_before": round(cpu_after / cpu_before, 4),
    }
    ratio = summary["throughput_ratio_after_over_before"]
    print(
        f"worker on {corpus.describe()}: in-process {before:.2f} s ({summary['before_x_real_time']}x), "
        f"isolated {after:.2f} s ({summary['after_x_real_time']}x); throughput ratio {ratio}; "
        f"CPU (worker + decoders) {cpu_before:.1f} s vs {cpu_after:.1f} s"
    )
    if args.json:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        report = {
            "machine": {"cpu": cpu_model(), "cores": cores, "flags": cpu_flags()},
            "corpus": corpus.describe().replace(str(args.corpus), args.corpus.name),  # no path of this machine
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": ["python", "-m", "bench.decoder_isolation", *(argv if argv is not None else sys.argv[1:])],
            "versions": package_versions(),
            "model": MODEL,
            "settings": {"device": "cpu", "concurrency": CONCURRENCY, "rounds": args.rounds},
            "worker": {**summary, "runs": runs},
            "decode_stage": stage,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
