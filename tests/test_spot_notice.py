"""A spot interruption notice, from a stand-in metadata service through the instance's watcher script to a real
worker with 8 jobs in progress: what will not finish in time is visible again within seconds, the worker exits 0
before the instance goes, and a second worker completes the rest. Nothing lost, nothing transcribed twice."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.support.samples import JFK, TEST_MODEL
from tests.support.waiting import eventually
from tests.support.worker_processes import ROOT, Backend, WorkerProcess, completed_lines
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.models.cache import resolve

WATCHER = ROOT / "infra" / "host" / "interruption-watch.sh"
TOKEN = "token-for-tests"
JOBS = 8


class FakeMetadata:
    """The two IMDSv2 calls the watcher makes; the notice is 404 until ``announce`` (as on EC2)."""

    def __init__(self) -> None:
        self.notice: dict[str, str] | None = None
        self.unauthorised = 0
        self.polls = 0  # notice reads answered 404 (nothing announced yet)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._answer(200 if ok else 400, TOKEN if ok else "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    outer.unauthorised += 1
                    self._answer(401, "")
                elif self.path == "/latest/meta-data/spot/instance-action" and outer.notice is not None:
                    self._answer(200, json.dumps(outer.notice))
                else:
                    outer.polls += 1
                    self._answer(404, "")

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def announce(self, seconds: float) -> float:
        at = datetime.now(UTC) + timedelta(seconds=seconds)
        self.notice = {"action": "terminate", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return at.replace(microsecond=0).timestamp()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    fake = FakeMetadata()
    yield fake
    fake.close()


@pytest.fixture
def watcher(metadata: FakeMetadata, tmp_path: Path) -> Iterator[Path]:
    """The instance's watcher script, polling the stand-in; yields the notice file it writes."""
    notice_dir = tmp_path / "run"
    env = {"PATH": "/usr/bin:/bin", "IMDS_ENDPOINT": metadata.url, "NOTICE_DIR": str(notice_dir), "POLL_SECONDS": "0.3"}
    proc = subprocess.Popen(["bash", str(WATCHER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield notice_dir / "interruption.json"
    proc.kill()
    proc.wait(timeout=10)


def test_the_watcher_writes_the_notice_once_announced(metadata: FakeMetadata, watcher: Path) -> None:
    eventually(lambda: metadata.polls >= 3, 10, "three reads of the notice")
    assert not watcher.exists(), "no notice yet: nothing to write"
    metadata.announce(120)
    eventually(watcher.exists, 5, "the notice file")
    assert json.loads(watcher.read_text()) == metadata.notice
    assert metadata.unauthorised == 0, "every metadata read carries an IMDSv2 token"


def _states(backend: Backend, jobs: list[str]) -> set[str]:
    """The states the jobs' status documents show now (a job that wrote none yet shows nothing)."""
    states = set()
    for job_id in jobs:
        try:
            body = backend.s3.get_object(Bucket=backend.r.bucket, Key=f"results/{job_id}/status.json")["Body"]
        except backend.s3.exceptions.NoSuchKey:
            continue
        states.add(json.loads(body.read())["state"])
    return states


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    speech = decode_audio(JFK, max_seconds=60)
    return write_wav(tmp_path_factory.mktemp("audio") / "long.wav", np.concatenate([speech] * 3))


def test_spot_notice_hands_back_what_will_not_finish_and_a_second_worker_completes_it(
    metadata: FakeMetadata,
    watcher: Path,
    long_clip: Path,
    receiver: CallbackReceiver,
    secret: str,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False)
    with LocalAws(visibility_timeout=120, max_receive_count=5) as local:
        backend = Backend(local, receiver)
        audio = backend.upload(long_clip, "audio/long.wav")
        jobs = [f"spot-{n:02d}" for n in range(JOBS)]
        for job_id in jobs:
            backend.send(job_id, audio)
        common = {"secret": secret, "model_dir": model_dir, "model": TEST_MODEL}
        settings = {"concurrency": JOBS, "visibility_timeout": 120, "callback_attempts": 3, "max_idle_seconds": 5}
        env = local.worker_env(**common, **settings, interruption_file=watcher, progress_interval=1)
        first = WorkerProcess(env, tmp_path / "first.log")
        try:
            eventually(lambda: backend.counts()[1] == JOBS, 60, f"all {JOBS} messages in progress")
            eventually(lambda: _states(backend, jobs) & {"transcribing"}, 60, "a job transcribing")
            goes_at = metadata.announce(45)
            eventually(watcher.exists, 5, "the notice file")
            noticed = time.monotonic()
            line = first.wait_for_line(lambda r: r.get("message", "").startswith("spot interruption notice"), 10)
            handed_back = line["handed_back"]
            assert handed_back >= 1, f"45 s cannot finish {JOBS} jobs of 33 s audio on this machine"
            eventually(lambda: backend.counts()[0] >= handed_back, 10 - (time.monotonic() - noticed), "hand-back")
            assert first.wait(timeout=max(1.0, goes_at - time.time())) == 0, "exits 0 before the instance goes"
        finally:
            first.kill()
        assert time.time() < goes_at
        second = WorkerProcess(local.worker_env(**common, **settings), tmp_path / "second.log")
        try:
            assert second.wait(timeout=300) == 0
        finally:
            second.kill()

        assert backend.counts() == (0, 0), "every message settled"
        assert backend.counts(local.resources.dlq_url) == (0, 0)
        for job_id in jobs:
            assert backend.result(job_id)["status"] == "completed"
            assert len(backend.callbacks(job_id)) == 1, f"{job_id}: exactly one valid completion callback"
            done_by = [w for w in (first, second) if completed_lines([w], job_id)]
            assert len(completed_lines([first, second], job_id)) == 1 and len(done_by) == 1, job_id
        assert all(c.signature_valid for c in receiver.received)
