"""What an operator and a backend see of a real ``whisper-worker run`` process over moto's S3 + SQS: its JSON log
lines and EMF metrics on stdout, every version of ``status.json``, and the signed progress callbacks.

One worker process serves two jobs, both with presigned URLs: a 33 s clip (two Whisper windows, so progress has a
middle) that completes, and a missing object that fails for good. The bucket is versioned, so every status write
survives to be checked in order.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from tests.support.samples import JFK, TEST_MODEL
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.engine.device import choose_precision
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver, ReceivedCallback

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "WhisperBatchTest"
LONG, MISSING = "obs-long", "obs-missing"


@dataclass
class WorkerRun:
    returncode: int
    stdout: str
    stderr: str
    message_ids: dict[str, str]
    status_history: dict[str, list[dict]]
    callbacks: list[ReceivedCallback]
    signatures: list[str]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "_aws" not in r]

    @property
    def emf(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "_aws" in r]


def _history(s3: Any, bucket: str, key: str) -> list[dict]:
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read())
        for v in reversed(versions)  # newest first in S3's listing
    ]


def _signature(url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    [value] = query.get("Signature") or query["X-Amz-Signature"]
    return value


@pytest.fixture(scope="module")
def run(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerRun]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    tmp = tmp_path_factory.mktemp("observability")
    with LocalAws(visibility_timeout=60, max_receive_count=3) as local, CallbackReceiver(secret) as receiver:
        r = local.resources
        assert r is not None
        s3, sqs = local.client("s3"), local.client("sqs")
        s3.put_bucket_versioning(Bucket=r.bucket, VersioningConfiguration={"Status": "Enabled"})
        write_wav(tmp / "long.wav", np.concatenate([decode_audio(JFK, max_seconds=60)] * 3))
        s3.upload_file(str(tmp / "long.wav"), r.bucket, "audio/long.wav")
        urls = {
            job: s3.generate_presigned_url("get_object", Params={"Bucket": r.bucket, "Key": key}, ExpiresIn=3600)
            for job, key in ((LONG, "audio/long.wav"), (MISSING, "audio/missing.flac"))
        }
        bodies = {
            LONG: {"job_id": LONG, "audio": urls[LONG], "callback_url": receiver.url, "progress_callback": True},
            MISSING: {"job_id": MISSING, "audio": urls[MISSING], "callback_url": receiver.url},
        }
        message_ids = {
            job: sqs.send_message(QueueUrl=r.queue_url, MessageBody=json.dumps(body))["MessageId"]
            for job, body in bodies.items()
        }
        env = local.worker_env(
            secret=secret,
            model_dir=model_dir,
            model=TEST_MODEL,
            metrics_namespace=NAMESPACE,
            progress_interval_seconds=0,
            batch_windows=1,  # one window per forward pass, so a two-window job reports a middle percent
        )
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "run", "--max-jobs", "2"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
        history = {job: _history(s3, r.bucket, f"results/{job}/status.json") for job in bodies}
        try:
            callbacks = receiver.wait_for(7, timeout=10)  # five progress events, two final callbacks
        except TimeoutError:
            callbacks = list(receiver.received)
        yield WorkerRun(
            done.returncode,
            done.stdout,
            done.stderr,
            message_ids,
            history,
            callbacks,
            [_signature(url) for url in urls.values()],
        )


def test_worker_ran_both_jobs(run: WorkerRun) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r for r in run.logs if r.get("message") == "job completed" and r.get("job_id") == LONG]
    assert [r for r in run.logs if r.get("message") == "job failed" and r.get("job_id") == MISSING]


def test_every_stdout_line_is_json_and_job_lines_carry_the_job_keys(run: WorkerRun) -> None:
    assert run.records  # parsing every line did not raise: nothing but JSON on stdout
    for job in (LONG, MISSING):
        lines = [r for r in run.logs if r.get("job_id") == job]
        assert len(lines) >= 2
        for line in lines:
            assert line["service"] == "whisper-batch" and line["level"] in ("INFO", "WARNING", "ERROR")
            assert line["message_id"] == run.message_ids[job]
            assert line["receive_count"] == 1
            assert line["model"] == TEST_MODEL  # the worker's default, named on every line of the job
    [failed] = [r for r in run.logs if r.get("message") == "job failed"]
    assert failed["job_id"] == MISSING and failed["error_code"] == "audio_not_found" and failed["permanent"] is True
    [completed] = [r for r in run.logs if r.get("message") == "job completed"]
    assert 32 < completed["duration_seconds"] < 34 and completed["processing_seconds"] > 0
    stages = completed["stages_ms"]  # where the job's wall time went, stage by stage
    assert list(stages) == ["claim", "fetch", "decode", "transcribe", "render", "store"]
    assert all(ms >= 0 for ms in stages.values()) and stages["transcribe"] > stages["render"]
    assert 0 < completed["cpu_ms"] < sum(stages.values())  # the job thread's own CPU, not the engine's
    cpu = completed["stages_cpu_ms"]  # and where it went
    assert list(cpu) == list(stages) and all(0 <= cpu[s] <= stages[s] + 1 for s in stages)
    assert sum(cpu.values()) <= completed["cpu_ms"] + 1
    assert (
        sum(stages.values()) - stages["store"] <= completed["processing_seconds"] * 1000
    )  # it is taken before storing
    # keys are appended for the life of a job only
    for message in ("worker started", "idle limit reached; stopping", "worker stopped"):
        for line in (r for r in run.logs if r.get("message") == message):
            assert not {"job_id", "message_id", "receive_count", "model"} & set(line), line
    # the start line says which precision the engine's encoder computes in, and why
    [started] = [r for r in run.logs if r.get("message") == "worker started"]
    here = choose_precision("auto", "cpu")
    assert (started["precision"], started["precision_reason"]) == (here.name, here.reason)
    # the last line counts the engine's forward passes: one window each here (batch_windows=1), two for 33 s
    [stopped] = [r for r in run.logs if r.get("message") == "worker stopped"]
    assert stopped["engine"]["passes"] >= 2 and stopped["engine"]["windows"] == stopped["engine"]["passes"]


def test_presigned_url_secrets_never_reach_the_logs(run: WorkerRun) -> None:
    output = run.stdout + run.stderr
    for signature in run.signatures:
        assert signature and signature not in output
    [failed] = [r for r in run.logs if r.get("message") == "job failed"]
    assert "audio/missing.flac?[redacted]" in failed["error"]


def _docs(run: WorkerRun, metric: str) -> list[dict]:
    return [d for d in run.emf if metric in d]


def test_emf_metrics_for_one_completed_and_one_failed_job(run: WorkerRun) -> None:
    for doc in run.emf:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE and doc["service"] == "whisper-batch"
        assert directive["Dimensions"][0][0] == "service"

    [loaded] = _docs(run, "ModelLoadSeconds")  # once per model load, not per job
    assert loaded["ModelLoadSeconds"][0] > 0 and loaded["model"] == TEST_MODEL

    [completed] = _docs(run, "JobsCompleted")
    assert completed["message_id"] == run.message_ids[LONG]
    assert completed["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert completed["JobsCompleted"] == [1.0]
    [audio], [processing], [factor] = (
        completed["AudioSeconds"],
        completed["ProcessingSeconds"],
        completed["RealtimeFactor"],
    )
    assert 32 < audio < 34 and processing > 0
    assert factor == pytest.approx(processing / audio, rel=1e-3)
    assert completed["QueueWaitSeconds"][0] >= 0

    [failed] = _docs(run, "JobsFailed")
    assert failed["message_id"] == run.message_ids[MISSING]
    assert failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "error_code"], ["service"]]
    assert failed["error_code"] == "audio_not_found" and failed["JobsFailed"] == [1.0]
    [waited] = [d for d in _docs(run, "QueueWaitSeconds") if d["message_id"] == run.message_ids[MISSING]]
    assert "JobsCompleted" not in waited and waited["QueueWaitSeconds"][0] >= 0
    assert not _docs(run, "JobsRetried")


def test_status_json_moves_through_its_states(run: WorkerRun) -> None:
    history = run.status_history[LONG]
    states = [doc["state"] for doc in history]
    assert list(dict.fromkeys(states)) == ["fetching", "decoding", "transcribing", "storing", "completed"]
    percents = [doc["percent"] for doc in history if doc["state"] == "transcribing"]
    assert percents[0] == 0.0 and percents == sorted(percents)
    assert any(0 < p < 100 for p in percents), percents  # two windows: a middle was reported
    assert history[-1]["percent"] == 100.0
    assert all(doc["percent"] is None for doc in history if doc["state"] in ("fetching", "decoding", "storing"))
    assert [doc["updated_at"] for doc in history] == sorted(doc["updated_at"] for doc in history)
    assert {doc["message_id"] for doc in history} == {run.message_ids[LONG]}
    assert {doc["job_id"] for doc in history} == {LONG}

    assert [doc["state"] for doc in run.status_history[MISSING]] == ["fetching", "failed"]


def test_progress_callbacks_are_signed_and_come_before_the_result(run: WorkerRun) -> None:
    assert all(c.signature_valid for c in run.callbacks)
    mine = [c.payload for c in run.callbacks if c.payload and c.payload["job_id"] == LONG]
    events = [p for p in mine if p.get("event") == "progress"]
    assert [p["state"] for p in events] == ["fetching", "decoding", "transcribing", "storing", "completed"]
    assert set(events[0]) == {"job_id", "event", "state", "percent"}
    assert mine[-1].get("status") == "completed"  # the result callback comes last
    others = [c.payload for c in run.callbacks if c.payload and c.payload["job_id"] == MISSING]
    assert [p.get("status") for p in others] == ["failed"]  # no progress events unless asked for
    assert len({c.headers["webhook-id"] for c in run.callbacks}) == len(run.callbacks)
