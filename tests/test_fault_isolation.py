"""One bad job never stalls the others: real ``whisper-worker run`` processes over moto's server, with poison
messages mixed in among good ones, a worker that cannot serve, and a worker that reaches its runtime limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.faults import write_poison
from tests.support.samples import JFK, TEST_MODEL
from tests.support.worker_processes import Backend, WorkerProcess
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver

FAULTY_WORKER = ("tests.support.faults",)


def _send(backend: Backend, job_id: str, audio: str, **fields: object) -> None:
    body = {"job_id": job_id, "audio": audio, "model": TEST_MODEL, "callback_url": backend.receiver.url, **fields}
    backend.sqs.send_message(QueueUrl=backend.r.queue_url, MessageBody=json.dumps(body))


def _dead_letters(backend: Backend) -> dict[str, dict]:
    """DLQ messages by job id, with their error code attribute where the worker set one."""
    found: dict[str, dict] = {}
    for _ in range(5):
        reply = backend.sqs.receive_message(
            QueueUrl=backend.r.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        for message in reply.get("Messages", []):
            body = json.loads(message["Body"])
            found[body["job_id"]] = message.get("MessageAttributes", {})
    return found


def _receive_count_of_next_message(backend: Backend) -> int:
    reply = backend.sqs.receive_message(
        QueueUrl=backend.r.queue_url, AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=1
    )
    [message] = reply["Messages"]
    return int(message["Attributes"]["ApproximateReceiveCount"])


@pytest.fixture
def env_for(tmp_path: Path, secret: str, model_dir: Path):
    def make(local: LocalAws, **settings: object) -> dict[str, str]:
        return local.worker_env(secret=secret, model_dir=model_dir, model=TEST_MODEL, **settings)

    return make


def test_poison_jobs_fail_alone_and_good_jobs_complete(
    tmp_path: Path, secret: str, env_for, receiver: CallbackReceiver
) -> None:
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(JFK.read_bytes()[: JFK.stat().st_size // 2])  # decodes part way, then errors
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        backend = Backend(local, receiver)
        jfk = backend.upload(JFK, "in/jfk.flac")
        good = [f"good-{i}" for i in range(4)]
        for job_id in good:
            _send(backend, job_id, jfk)
        _send(backend, "good-translate", jfk, model="base", task="translate")
        _send(backend, "poison-language", jfk, model="base", language="yue")  # base knows 99 languages, not yue
        _send(backend, "poison-truncated", backend.upload(truncated, "in/truncated.flac"))
        _send(backend, "poison-engine", backend.upload(write_poison(tmp_path / "poison.wav"), "in/poison.wav"))
        backend.sqs.send_message(
            QueueUrl=backend.r.queue_url,
            MessageBody=json.dumps({"job_id": "poison-contract", "audio": jfk, "language": "xx"}),
        )
        env = env_for(local, concurrency=4, retry_base_seconds=1, max_idle_seconds=10)
        env["TEST_FAULT_ON_CALL"] = "1"  # one pass raises once: its parts are decoded again one by one, none fails
        worker = WorkerProcess(env, tmp_path / "worker.log", FAULTY_WORKER)
        try:
            worker.wait_for_line(lambda r: r.get("message") == "idle limit reached; stopping", timeout=300)
            assert worker.wait(timeout=60) == 0
        finally:
            worker.kill()

        for job_id in [*good, "good-translate"]:
            result = backend.result(job_id)
            assert result is not None and result["status"] == "completed", (job_id, result)
            assert backend.callbacks(job_id), job_id
        assert "ask not what your country" in backend.result("good-0")["text_preview"].lower()
        expected = {
            "poison-language": "invalid_message",
            "poison-truncated": "undecodable_audio",
            "poison-engine": "engine_failed",
            "poison-contract": "invalid_message",
        }
        for job_id, code in expected.items():
            result = backend.result(job_id)
            assert result is not None and result["status"] == "failed", (job_id, result)
            assert result["error"]["code"] == code, (job_id, result["error"])
        assert "language" in backend.result("poison-language")["error"]["message"]
        assert backend.callbacks("poison-language", status="failed")
        assert set(_dead_letters(backend)) == set(expected)
        assert backend.counts() == (0, 0)  # nothing stalled in flight
        lines = worker.lines()
        assert any(r.get("message") == "engine pass failed; decoding its parts one by one" for r in lines)


def test_worker_without_its_device_takes_no_message(tmp_path: Path, env_for, receiver: CallbackReceiver) -> None:
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        backend = Backend(local, receiver)
        _send(backend, "waits", backend.upload(JFK, "in/jfk.flac"))
        worker = WorkerProcess(env_for(local, device="cuda"), tmp_path / "worker.log")
        try:
            assert worker.wait(timeout=120) == 3
        finally:
            worker.kill()
        [line] = [r for r in worker.lines() if r.get("level") == "ERROR"]
        assert "CUDA" in line["reason"]
        assert _receive_count_of_next_message(backend) == 1  # the broken worker never received it


def test_worker_whose_default_model_does_not_load_takes_no_message(
    tmp_path: Path, env_for, receiver: CallbackReceiver
) -> None:
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        backend = Backend(local, receiver)
        _send(backend, "waits", backend.upload(JFK, "in/jfk.flac"))
        env = env_for(local) | {"WHISPER_DEFAULT_MODEL": "no-such-model"}
        worker = WorkerProcess(env, tmp_path / "worker.log")
        try:
            assert worker.wait(timeout=120) == 3
        finally:
            worker.kill()
        [line] = [r for r in worker.lines() if r.get("level") == "ERROR"]
        assert "no-such-model" in line["reason"]
        assert _receive_count_of_next_message(backend) == 1


def test_worker_leaves_at_its_runtime_limit_after_finishing_its_job(
    tmp_path: Path, env_for, receiver: CallbackReceiver
) -> None:
    long_clip = write_wav(tmp_path / "long.wav", np.tile(decode_audio(JFK, max_seconds=60), 3))
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        backend = Backend(local, receiver)
        audio = backend.upload(long_clip, "in/long.wav")
        for i in range(3):
            _send(backend, f"job-{i}", audio)
        started = time.monotonic()
        worker = WorkerProcess(env_for(local, max_runtime_seconds=1), tmp_path / "worker.log")
        try:
            assert worker.wait(timeout=180) == 0
        finally:
            worker.kill()
        assert time.monotonic() - started < 120
        assert any(
            r.get("message") == "maximum runtime reached; finishing the jobs in progress" for r in worker.lines()
        )
        done = [i for i in range(3) if (backend.result(f"job-{i}") or {}).get("status") == "completed"]
        assert len(done) >= 1  # the job in progress finished rather than being cut off
        assert backend.counts() == (3 - len(done), 0)  # the rest wait, visible, for the next worker
        assert _dead_letters(backend) == {}
