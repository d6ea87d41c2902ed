"""A message that kills the whole worker process each time it is held, among good ones, over several worker
restarts: after the first crash it is a suspect and runs alone, so no good message is received more than twice;
it ends in the DLQ after its receives run out, is settled there (failed result, signed callback), and once the
fault is gone a redrive completes it with the success callback."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.support.samples import JFK, TEST_MODEL
from tests.support.worker_processes import Backend, WorkerProcess
from worker.cli import main
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.models.cache import resolve

MAX_RECEIVES = 4
RESTARTS = 10


def run_until_drained(local: LocalAws, backend: Backend, env: dict[str, str], logs: Path) -> list[WorkerProcess]:
    """Start crashing workers one after another (as Batch would) until one drains the queue and exits 0."""
    workers: list[WorkerProcess] = []
    for n in range(RESTARTS):
        worker = WorkerProcess(env, logs / f"worker-{n}.log", command=("tests.support.crashing_worker",))
        workers.append(worker)
        try:
            code = worker.wait(timeout=180)
        finally:
            worker.kill()
        if code == 0 and backend.counts() == (0, 0):
            return workers
        assert code in (0, -9), f"worker {n} ended with {code}:\n{worker.log_path.read_text()[-3000:]}"
    raise AssertionError(f"the queue was not drained after {RESTARTS} workers: {backend.counts()}")


def receive_counts(workers: list[WorkerProcess], job_id: str) -> list[int]:
    return [
        r["receive_count"] for w in workers for r in w.lines() if r.get("job_id") == job_id and "receive_count" in r
    ]


def test_a_crash_looping_message_costs_good_messages_at_most_one_extra_receive_and_is_settled(
    receiver: CallbackReceiver, secret: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False)
    with LocalAws(visibility_timeout=10, max_receive_count=MAX_RECEIVES) as local:
        backend = Backend(local, receiver)
        audio = backend.upload(JFK, "audio/jfk.flac")
        good = [f"good-{n}" for n in range(8)]
        for job_id in good[:4]:
            backend.send(job_id, audio)
        backend.send("crash-me", audio)
        for job_id in good[4:]:
            backend.send(job_id, audio)
        env = local.worker_env(
            secret=secret,
            model_dir=model_dir,
            model=TEST_MODEL,
            concurrency=4,
            visibility_timeout=10,
            max_idle_seconds=14,  # outlasts the visibility timeout: a crash's messages come back to the next worker
            callback_attempts=3,
        )
        env["TEST_CRASH_JOB_PREFIX"] = "crash-"
        started = time.monotonic()
        workers = run_until_drained(local, backend, env, tmp_path)

        crashes = sum(w.proc.returncode == -9 for w in workers)
        assert crashes == MAX_RECEIVES, "one crash per receive of the bad message, none for anything else"
        for job_id in good:
            assert backend.result(job_id)["status"] == "completed"
            assert len(backend.callbacks(job_id)) == 1
            counts = receive_counts(workers, job_id)
            assert counts and max(counts) <= 2, f"{job_id} was received {max(counts)} times"
        suspects = [r for w in workers for r in w.lines() if r.get("message", "").startswith("suspect message")]
        assert {r["job_id"] for r in suspects} >= {"crash-me"}
        assert all(r["receive_count"] >= 2 for r in suspects)
        dead = backend.sqs.receive_message(
            QueueUrl=local.resources.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=0
        ).get("Messages", [])
        assert [json.loads(m["Body"])["job_id"] for m in dead] == ["crash-me"]
        assert time.monotonic() - started < 400
        assert backend.result("crash-me") is None, "nobody alive could write its result"

        # The DLQ settles it (here from the command line; the stack's Lambda runs the same code).
        r = local.resources
        settled_url = backend.sqs.create_queue(QueueName="settled-letters")["QueueUrl"]
        connection = ["--queue-url", r.queue_url, "--bucket", r.bucket, "--dlq-url", r.dlq_url, "--settled-url"]
        connection += [settled_url, "--endpoint-url", r.endpoint_url, "--region", "us-east-1"]
        monkeypatch.setenv("WHISPER_WEBHOOK_SECRET", secret)
        assert main(["dlq", "settle", *connection, "--allow-http", "--allow-private-urls"]) == 0
        failed = backend.result("crash-me")
        assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
        receives = re.search(r"after (\d+) receives", failed["error"]["message"])
        assert receives and int(receives.group(1)) >= MAX_RECEIVES
        (failure,) = backend.callbacks("crash-me", status="failed")
        assert failure.payload["error"]["code"] == "worker_lost"

        # The fault is fixed: redrive, and a plain worker completes it.
        assert main(["dlq", "redrive", "crash-me", *connection]) == 0
        env.pop("TEST_CRASH_JOB_PREFIX")
        fixed = WorkerProcess(env, tmp_path / "fixed.log")
        try:
            assert fixed.wait(timeout=120) == 0
        finally:
            fixed.kill()
        assert backend.result("crash-me")["status"] == "completed"
        assert len(backend.callbacks("crash-me")) == 1
        assert all(c.signature_valid for c in receiver.received)
