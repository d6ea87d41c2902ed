"""Real ``whisper-worker run`` processes and the backend's view of the queue, for tests that run workers as a
deployment does: a subprocess per worker talking to moto's server over loopback HTTP, its JSON log in a file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.samples import TEST_MODEL
from tests.support.waiting import eventually
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``python -m worker.cli run`` subprocess (or another ``command``); stdout and stderr go to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, command: tuple[str, ...] = ("worker.cli", "run")) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (anything else, e.g. a torn last line, is skipped)."""
        records = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_for_line(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.lines():
                if predicate(record):
                    return record
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        for record in self.lines():  # one last look: the process may have logged it and exited
            if predicate(record):
                return record
        raise AssertionError(f"no matching log line within {timeout}s; log:\n{self.log_path.read_text()[-4000:]}")

    def send(self, sig: signal.Signals) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(timeout=10)


def completed_lines(workers: list[WorkerProcess], job_id: str) -> list[dict[str, Any]]:
    return [r for w in workers for r in w.lines() if r.get("message") == "job completed" and r.get("job_id") == job_id]


class Backend:
    """The test's side of the queue: upload, send, and look at the queue, DLQ, results and callbacks."""

    def __init__(self, local: LocalAws, receiver: CallbackReceiver) -> None:
        assert local.resources is not None
        self.local = local
        self.r = local.resources
        self.s3 = local.client("s3")
        self.sqs = local.client("sqs")
        self.receiver = receiver

    def upload(self, path: Path, key: str) -> str:
        self.s3.put_object(Bucket=self.r.bucket, Key=key, Body=path.read_bytes())
        return f"s3://{self.r.bucket}/{key}"

    def send(self, job_id: str, audio: str, **fields: Any) -> None:
        body = {"job_id": job_id, "audio": audio, "model": TEST_MODEL, "callback_url": self.receiver.url, **fields}
        self.sqs.send_message(QueueUrl=self.r.queue_url, MessageBody=json.dumps(body))

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages on the jobs queue (or ``url``)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.r.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def keys(self, job_id: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.r.bucket, Prefix=f"results/{job_id}/")
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def result(self, job_id: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.r.bucket, Key=f"results/{job_id}/result.json")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def callbacks(self, job_id: str, status: str = "completed") -> list[Any]:
        return [
            c
            for c in self.receiver.received
            if c.signature_valid
            and c.payload
            and c.payload.get("job_id") == job_id
            and c.payload.get("status") == status
        ]

    def wait_progress(self, job_id: str, state: str, timeout: float = 60) -> None:
        """Block until the job's signed progress callback says it entered ``state`` (the job asked for them)."""

        def arrived() -> bool:
            return any(
                c.signature_valid
                and c.payload
                and c.payload.get("job_id") == job_id
                and c.payload.get("state") == state
                for c in self.receiver.received
            )

        eventually(arrived, timeout, f"a {state!r} progress callback for {job_id}", every=0.02)

    def wait_started(self, job_id: str, timeout: float = 60) -> None:
        """Block until a worker is working on ``job_id``.

        The worker logs nothing when a job starts, so look at what it leaves behind: an object under
        ``results/<job_id>/`` (the job's claim) appears as soon as it begins. A worker without claims is
        caught by the fallback: the message has been in flight for two seconds, so it is past receiving.
        """
        deadline = time.monotonic() + timeout
        in_flight_since: float | None = None
        while time.monotonic() < deadline:
            if self.keys(job_id):
                return
            if self.counts()[1]:
                in_flight_since = in_flight_since or time.monotonic()
                if time.monotonic() - in_flight_since > 2:
                    return
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not start within {timeout}s")

    def wait_visible(self, count: int, timeout: float) -> float:
        """Seconds until ``count`` messages are visible (receivable) on the jobs queue."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.counts()[0] >= count:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{count} message(s) not visible within {timeout}s: (visible, in flight) {self.counts()}")
