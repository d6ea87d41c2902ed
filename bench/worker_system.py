"""The ``worker`` system: our worker end to end, through the interface a backend uses.

The embedded AWS (``LocalAws``: moto's S3 + SQS on loopback) gets every corpus file in its bucket; ONE
``whisper-worker run`` process is started with the environment ``LocalAws.worker_env`` gives it. Two clocks:

* cold start: a warm-up message (the JFK sample) waits in the queue before the process is spawned; from the
  spawn to its ``result.json`` appearing in S3. This is what a scaled-from-zero Batch job costs.
* wall: with the model loaded, every corpus message is sent at once; from the first send to the moment the queue
  holds none of them (every job has written its final ``result.json`` and been deleted), asked every 0.1 s, and
  then every ``result.json`` read back. Asking the queue, not listing the bucket, keeps the harness's own load off
  the cores the worker shares with it. Fetching from S3, decoding, rendering and storing are inside the clock, as
  they are in production.

moto's server runs in a process of its own, and the worker reaches it through ``python -m worker.local.proxy``,
another process, which counts the worker's requests by operation; for ``worker-latency`` it also delays each by
``AWS_LATENCY_MS``, as a region's endpoints would. Per job, the report gives those requests, the CPU time of the
job's thread and each stage's wall time, from the worker's ``job completed`` lines.

The worker's peak RSS is its own: ``VmHWM`` from /proc just before it is stopped, or ``ru_maxrss`` from
``os.wait4`` when it has exited, whichever is larger.

``worker-one-by-one`` sends each message once the one before has its final ``result.json``, as a quiet backend
does: every job has the worker to itself, and each one's latency (send to result) is recorded. ``wall`` is then the
sum of those latencies.

``worker-diarize`` is the same with ``"diarize": true`` in every message (the warm-up's too, so the diarizer's load is
in the cold start): the cost of speaker diarization end to end, beside ``worker``. Its ``txt`` transcripts carry
``[SPEAKER_00]`` labels, which Whisper's normaliser drops before WER (text in brackets); how many speakers each job
found goes into ``extra``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.systems import Outcome, Spec
from worker.local.moto_server import LocalAws

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".cache" / "bench-worker.log"
POLL_SECONDS = 0.2  # listing the bucket, for the warm-up job
DRAIN_POLL_SECONDS = 0.1  # asking the queue whether the corpus's messages are all gone
QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
WARMUP_JOB = "warmup"
FINAL = ("completed", "failed")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "whisper-worker"  # what the container's entrypoint runs
    return [str(script)] if script.is_file() else [sys.executable, "-m", "worker.cli"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:80] or "audio"


def _message(job_id: str, audio_url: str, diarize: bool = False) -> str:
    body: dict[str, Any] = {"job_id": job_id, "audio": audio_url, "formats": ["txt", "json"], "language": "en"}
    if diarize:
        body["diarize"] = True
    return json.dumps(body)


def _log(spec: Spec) -> Path:
    """``.cache/bench-worker.log`` for ``worker``; a log of its own for each other worker system."""
    return LOG if spec.system == "worker" else LOG.with_name(f"bench-{_safe(spec.system)}.log")


class Results:
    """Final ``result.json`` documents as they appear in the bucket, with the time each was first seen."""

    def __init__(self, s3: Any, bucket: str, proc: subprocess.Popen, log: Path = LOG) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._proc = proc
        self._log = log
        self.found: dict[str, tuple[dict[str, Any], float]] = {}

    def wait(self, job_ids: set[str], deadline: float, drained: Callable[[], bool] | None = None) -> None:
        """Until every job's final ``result.json`` is found: the bucket listed every ``POLL_SECONDS``, or, with
        ``drained``, only once it says the queue is empty."""
        pending = set(job_ids) - set(self.found)
        paginator = self._s3.get_paginator("list_objects_v2")
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the worker exited with code {self._proc.returncode}; its log: {self._log}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(pending)} job(s) without a final result; the worker's log: {self._log}")
            if drained is not None and not drained():
                time.sleep(DRAIN_POLL_SECONDS)
                continue
            for page in paginator.paginate(Bucket=self._bucket, Prefix="results/"):
                for obj in page.get("Contents", []):
                    _, job_id, leaf = [*obj["Key"].split("/", 2), "", ""][:3]
                    if leaf == "result.json" and job_id in pending:
                        result = self._read_json(obj["Key"])
                        if result.get("status") in FINAL:
                            self.found[job_id] = (result, time.perf_counter())
                            pending.discard(job_id)
            if pending:
                time.sleep(POLL_SECONDS)

    def _read_json(self, key: str) -> dict[str, Any]:
        return json.loads(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def text(self, job_id: str) -> tuple[str | None, str | None]:
        """(transcript, error) of a finished job."""
        result, _ = self.found[job_id]
        if result["status"] != "completed":
            error = result.get("error") or {}
            return None, f"{error.get('code', 'failed')}: {error.get('message', '')}"
        body = self._s3.get_object(Bucket=self._bucket, Key=result["results"]["txt"])["Body"].read()
        return body.decode("utf-8").strip(), None

    def speakers(self, job_id: str) -> int | None:
        """How many speakers a diarized job found (``result.json``'s ``speakers``); None when not diarized."""
        listed = self.found[job_id][0].get("speakers")
        return None if listed is None else len(listed)


def _queue_empty(sqs: Any, queue_url: str) -> bool:
    """No message in the queue, visible, in flight or delayed: the worker has settled every job it was sent."""
    counts = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(QUEUE_COUNTS))["Attributes"]
    return not any(int(counts.get(name, 0)) for name in QUEUE_COUNTS)


def _vm_hwm_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _process_cpu(pid: int | None) -> float | None:
    """User plus system CPU seconds a process has used so far, all its threads together (Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _cpu_now(pids: dict[str, int | None]) -> dict[str, float | None]:
    return {**{name: _process_cpu(pid) for name, pid in pids.items()}, "harness": time.process_time()}


def _cpu_split(before: dict[str, float | None], after: dict[str, float | None], seconds: float) -> dict[str, Any]:
    """CPU seconds each process used while the corpus ran, and what the machine's cores had in that time: the
    emulated AWS and this harness share the worker's cores here, as they would not in a region."""
    used = {
        name: round(after[name] - start, 2)
        for name, start in before.items()
        if start is not None and after.get(name) is not None
    }
    return {**used, "cores": os.cpu_count() or 1, "wall": round(seconds, 2)}


def _stop(proc: subprocess.Popen, grace: float = 60.0) -> float | None:
    """SIGTERM, reap with ``os.wait4`` (SIGKILL after ``grace``); the process's ru_maxrss in MB."""
    if proc.returncode is not None:
        return None
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss / 1024  # KiB on Linux
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.1)


def _worker_settings(spec: Spec) -> dict[str, object]:
    settings: dict[str, object] = {"device": spec.device, "max_idle_seconds": 24 * 3600}
    if spec.concurrency is not None:
        settings["concurrency"] = spec.concurrency
    if spec.engine is not None:
        settings["engine"] = spec.engine
    if spec.precision is not None:
        settings["cpu_precision"] = spec.precision
    return settings


def run_worker(spec: Spec) -> Outcome:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    log_path = _log(spec)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # moto in a process of its own, and the worker's requests through a proxy process that counts them (and adds
    # the latency a real AWS region has, for worker-latency): neither shares this process's interpreter lock.
    with (
        LocalAws(bucket="whisper-bench", queue="whisper-bench", visibility_timeout=300, own_process=True) as local,
        CountingProxy(local, spec.aws_latency_ms) as proxy,
    ):
        assert local.resources is not None
        bucket, queue_url = local.resources.bucket, local.resources.queue_url
        s3, sqs = local.client("s3"), local.client("sqs")
        urls: dict[str, str] = {}
        for item in spec.items:
            if item["audio"] not in urls:
                path = Path(item["audio"])
                key = f"audio/{len(urls):04d}-{_safe(item['name'])}{path.suffix}"
                s3.upload_file(str(path), bucket, key)
                urls[item["audio"]] = f"s3://{bucket}/{key}"
        warm_key = f"audio/{WARMUP_JOB}{Path(spec.warmup).suffix}"
        s3.upload_file(spec.warmup, bucket, warm_key)
        warm_body = _message(WARMUP_JOB, f"s3://{bucket}/{warm_key}", spec.diarize)
        sqs.send_message(QueueUrl=queue_url, MessageBody=warm_body)

        settings = _worker_settings(spec)
        env = local.worker_env(secret=secret, model_dir=Path(spec.model_dir), model=spec.model, **settings)
        env["AWS_ENDPOINT_URL"] = proxy.url
        with log_path.open("wb") as log:
            started = time.perf_counter()
            proc = subprocess.Popen([*_command(), "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        results = Results(s3, bucket, proc, log_path)
        rss_mb: list[float | None] = []
        latencies: list[float] = []
        try:
            results.wait({WARMUP_JOB}, started + 600)
            cold = results.found[WARMUP_JOB][1] - started
            warm_result = results.found[WARMUP_JOB][0]
            if warm_result["status"] != "completed":
                raise RuntimeError(f"the warm-up job failed: {warm_result.get('error')}; the worker's log: {log_path}")

            job_ids = [f"bench-{i:05d}" for i in range(len(spec.items))]
            bodies = [
                _message(j, urls[item["audio"]], spec.diarize) for j, item in zip(job_ids, spec.items, strict=True)
            ]
            proxy.reset()  # count the corpus's requests, not the warm-up's
            pids = {"worker": proc.pid, "moto": local.server_pid, "proxy": proxy.pid}
            cpu_before = _cpu_now(pids)
            sent = time.perf_counter()
            drained = functools.partial(_queue_empty, sqs, queue_url)
            if spec.one_by_one:
                for job_id, body in zip(job_ids, bodies, strict=True):
                    posted = time.perf_counter()
                    sqs.send_message(QueueUrl=queue_url, MessageBody=body)
                    results.wait({job_id}, sent + spec.timeout, drained=drained)
                    latencies.append(round(results.found[job_id][1] - posted, 3))
                wall = sum(latencies)
            else:
                for start in range(0, len(bodies), 10):
                    entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
                    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                results.wait(set(job_ids), sent + spec.timeout, drained=drained)
                wall = max(results.found[j][1] for j in job_ids) - sent
            cpu = _cpu_split(cpu_before, _cpu_now(pids), time.perf_counter() - sent)
            requests = proxy.counts()
            rss_mb.append(_vm_hwm_mb(proc.pid))
        finally:
            rss_mb.append(_stop(proc))
        texts, errors = zip(*(results.text(j) for j in job_ids), strict=True)
        speakers = [results.speakers(j) for j in job_ids]
    peaks = [m for m in rss_mb if m is not None]
    return Outcome(
        load_seconds=cold,
        load_label="cold start",
        wall_seconds=wall,
        texts=list(texts),
        item_seconds=latencies or [None] * len(job_ids),
        errors=list(errors),
        peak_rss_mb=max(peaks) if peaks else None,
        extra={
            "log": str(log_path),
            "exit_code": proc.returncode,
            "settings": _worker_settings(spec),
            "aws_latency_ms": spec.aws_latency_ms,
            **({"one_by_one": True, "latency_seconds": latency_summary(latencies)} if spec.one_by_one else {}),
            "per_job": per_job_costs(log_path, set(job_ids), requests),
            "engine": engine_counters(log_path),
            "precision": started_precision(log_path),
            "cpu_seconds": cpu,
            **({"diarize": True, "speakers_found": speakers} if spec.diarize else {}),
        },
    )


class CountingProxy:
    """``python -m worker.local.proxy`` in front of the embedded AWS, for the worker's requests only."""

    def __init__(self, local: LocalAws, latency_ms: float) -> None:
        assert local.resources is not None
        self._command = [sys.executable, "-m", "worker.local.proxy", "--upstream", local.resources.endpoint_url]
        self._command += ["--latency-ms", str(latency_ms)]
        self.url = ""

    def __enter__(self) -> CountingProxy:
        self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the request-counting proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)

    @property
    def pid(self) -> int:
        return self._process.pid

    def reset(self) -> None:
        httpx.post(f"{self.url}/_proxy/reset", timeout=10).raise_for_status()

    def counts(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_proxy/counts", timeout=10).json()


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """Send-to-result seconds of jobs sent one at a time: median, 95th percentile (nearest rank) and worst."""
    ordered = sorted(latencies)
    if not ordered:
        return {}
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": ordered[len(ordered) // 2], "p95": p95, "max": ordered[-1]}


def engine_counters(log_path: Path) -> dict[str, float]:
    """The batched engine's counters (passes, windows, ...) from the worker's ``worker stopped`` line, warm-up
    included; empty for an engine without them."""
    counters: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("message") == "worker stopped":
                counters = record.get("engine") or {}
    return counters


def started_precision(log_path: Path) -> str | None:
    """The precision the worker's ``worker started`` line says it computes in."""
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("message") == "worker started":
                return record.get("precision")
    return None


def per_job_costs(log_path: Path, job_ids: set[str], requests: dict[str, int]) -> dict[str, Any]:
    """What each corpus job cost the worker outside the engine: AWS requests (all the worker made while the corpus
    ran, receives included, over the number of jobs), the job thread's CPU, and each stage's wall and CPU time
    (means of the ``job completed`` log lines)."""
    done = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("message") == "job completed" and record.get("job_id") in job_ids:
                done.append(record)
    jobs = max(len(job_ids), 1)

    def mean_by_stage(field: str) -> dict[str, float]:
        total: dict[str, float] = {}
        for record in done:
            for stage, ms in (record.get(field) or {}).items():
                total[stage] = total.get(stage, 0.0) + ms
        return {stage: round(ms / max(len(done), 1), 1) for stage, ms in total.items()}

    cpu = sorted(float(record.get("cpu_ms") or 0.0) for record in done)
    return {
        "jobs_logged": len(done),
        "requests": round(sum(requests.values()) / jobs, 2),
        "requests_by_operation": {op: round(n / jobs, 2) for op, n in sorted(requests.items())},
        "cpu_ms_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "cpu_ms_median": cpu[len(cpu) // 2] if cpu else None,
        "stages_ms_mean": mean_by_stage("stages_ms"),
        "stages_cpu_ms_mean": mean_by_stage("stages_cpu_ms"),
    }
