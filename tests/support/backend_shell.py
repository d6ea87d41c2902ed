"""A backend's shell and a worker process beside it, for tests that drive the CLI and the client against moto.

``backend_env`` is what a backend's shell holds: this process's environment without WHISPER_/AWS_ settings, plus
fake credentials. ``running_worker`` runs ``whisper-worker run`` on tiny.en against the local resources for as long as
the ``with`` block lasts, then stops it as Batch would (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.local.moto_server import LocalResources

ROOT = Path(__file__).resolve().parents[2]
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def backend_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "AWS_"))} | FAKE_AWS


def connected_env(r: LocalResources) -> dict[str, str]:
    """A backend's shell that names the local queue, bucket and DLQ, as ``WHISPER_*`` settings."""
    return backend_env() | {
        "AWS_ENDPOINT_URL": r.endpoint_url,
        "WHISPER_QUEUE_URL": r.queue_url,
        "WHISPER_RESULTS_BUCKET": r.bucket,
        "WHISPER_DLQ_URL": r.dlq_url,
    }


@contextmanager
def running_worker(r: LocalResources, model_dir: Path, log: Path, **settings: str) -> Iterator[subprocess.Popen]:
    env = connected_env(r) | {
        "WHISPER_DEFAULT_MODEL": "tiny.en",
        "WHISPER_DEVICE": "cpu",
        "WHISPER_MODEL_DIR": str(model_dir),
        "WHISPER_ALLOW_HTTP": "true",
        "WHISPER_ALLOW_PRIVATE_URLS": "true",
        "WHISPER_WAIT_SECONDS": "1",
        "WHISPER_MAX_IDLE_SECONDS": "900",  # a safety net: a forgotten worker stops by itself
        "WHISPER_LOG_LEVEL": "WARNING",
        **settings,
    }
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
