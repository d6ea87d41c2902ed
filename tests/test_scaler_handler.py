"""The scaler Lambda handler against moto's SQS, Batch and S3.

moto's Batch runs jobs in Docker unless ``use_docker`` is off; with it off, ListJobs/SubmitJob work without a
Docker engine and a submitted job is marked SUCCEEDED at once. Workers still "running", and workers that FAILED
soon after starting, are arranged by setting moto's own job records (the fake's state, not our code). The lease
is real S3 conditional writes against moto; an overlapping run is started from inside the first one's submit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.batch.models import batch_backends
from moto.batch.utils import JobStatus
from moto.core import DEFAULT_ACCOUNT_ID

from infra.functions import scaler
from infra.functions.lease import Lease
from infra.functions.scaler_logic import COOL_DOWN_SECONDS, FAST_FAILURE_THRESHOLD

REGION = "eu-west-1"
BUCKET = "whisper-results"


@dataclass
class LambdaContext:
    function_name: str = "whisper-batch-scaler"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:whisper-batch-scaler"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@dataclass
class Fake:
    sqs: Any
    batch: Any
    s3: Any
    queue_url: str
    job_queue: str
    job_definition: str


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"batch": {"use_docker": False}}):
        sqs = boto3.client("sqs", region_name=REGION)
        batch = boto3.client("batch", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
        environment = batch.create_compute_environment(
            computeEnvironmentName="workers", type="UNMANAGED", state="ENABLED", serviceRole=role["Role"]["Arn"]
        )
        job_queue = batch.create_job_queue(
            jobQueueName="whisper",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
        )
        definition = batch.register_job_definition(
            jobDefinitionName="whisper-worker",
            type="container",
            containerProperties={"image": "whisper-batch:test", "vcpus": 4, "memory": 14336},
        )
        queue_url = sqs.create_queue(QueueName="whisper-jobs")["QueueUrl"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        f = Fake(sqs, batch, s3, queue_url, job_queue["jobQueueArn"], definition["jobDefinitionArn"])
        monkeypatch.setenv("QUEUE_URL", f.queue_url)
        monkeypatch.setenv("JOB_QUEUE", f.job_queue)
        monkeypatch.setenv("JOB_DEFINITION", f.job_definition)
        monkeypatch.setenv("MAX_WORKERS", "3")
        monkeypatch.setenv("MESSAGES_PER_WORKER", "2")
        yield f


def send(fake: Fake, count: int) -> None:
    for i in range(count):
        fake.sqs.send_message(QueueUrl=fake.queue_url, MessageBody=json.dumps({"job_id": f"j{i}", "audio": "s3://b/k"}))


def submitted(fake: Fake) -> list[dict[str, Any]]:
    return fake.batch.list_jobs(jobQueue=fake.job_queue, filters=[{"name": "JOB_NAME", "values": ["whisper-worker*"]}])[
        "jobSummaryList"
    ]


def test_empty_queue_submits_nothing(fake: Fake) -> None:
    result = scaler.handler({}, LambdaContext())
    assert result["submit"] == 0 and result["job_ids"] == []
    assert submitted(fake) == []


def test_waiting_messages_start_workers(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    send(fake, 3)
    result = scaler.handler({}, LambdaContext())
    assert (result["visible"], result["active_workers"], result["submit"]) == (3, 0, 2)
    jobs = submitted(fake)
    assert sorted(job["jobId"] for job in jobs) == sorted(result["job_ids"])
    described = fake.batch.describe_jobs(jobs=result["job_ids"])["jobs"]
    assert {job["jobDefinition"] for job in described} == {fake.job_definition}
    assert {job["jobQueue"] for job in described} == {fake.job_queue}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf and emf[-1]["WorkersSubmitted"] == [2.0] and emf[-1]["service"] == "whisper-batch"
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "WhisperBatch"


def test_max_workers_caps_submissions(fake: Fake) -> None:
    send(fake, 25)
    assert scaler.handler({}, LambdaContext())["submit"] == 3


def test_workers_already_active_are_counted(fake: Fake) -> None:
    send(fake, 4)
    jobs = fake.batch
    first = jobs.submit_job(
        jobName="whisper-worker-earlier", jobQueue=fake.job_queue, jobDefinition=fake.job_definition
    )
    backend = batch_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend._jobs[first["jobId"]].status = JobStatus.RUNNING  # one worker still running from an earlier tick
    assert scaler.count_active_jobs(fake.batch, fake.job_queue) == 1
    result = scaler.handler({}, LambdaContext())
    assert (result["active_workers"], result["desired_workers"], result["submit"]) == (1, 2, 1)


def test_scale_reads_in_flight_messages(fake: Fake) -> None:
    send(fake, 6)
    fake.sqs.receive_message(QueueUrl=fake.queue_url, MaxNumberOfMessages=4, VisibilityTimeout=300)
    config = scaler.ScalerConfig.from_env()
    outcome = scaler.scale(fake.sqs, fake.batch, config)
    assert outcome.observation is not None and outcome.decision is not None
    assert (outcome.observation.visible, outcome.observation.in_flight) == (2, 4)
    assert outcome.decision.submit == 3 and len(outcome.job_ids) == 3


# ------------------------------------------------------------------------------------------------ the lease


class SubmitsDuring:
    """moto's Batch client, except that its first submit_job first runs ``during``: a second scaler run that
    overlaps the first at its most delicate moment, between deciding and submitting."""

    def __init__(self, batch: Any, during: Callable[[], None]) -> None:
        self._batch = batch
        self._during: Callable[[], None] | None = during

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def submit_job(self, **kwargs: Any) -> Any:
        during, self._during = self._during, None
        if during is not None:
            during()
        return self._batch.submit_job(**kwargs)


def overlapping_runs(fake: Fake, config: scaler.ScalerConfig) -> tuple[scaler.Round, scaler.Round]:
    second: list[scaler.Round] = []

    def run_b() -> None:
        second.append(scaler.run(fake.sqs, fake.batch, fake.s3, config, owner="run-b"))

    first = scaler.run(fake.sqs, SubmitsDuring(fake.batch, run_b), fake.s3, config, owner="run-a")
    return first, second[0]


def test_two_overlapping_runs_do_not_both_submit(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_BUCKET", BUCKET)
    send(fake, 6)
    first, second = overlapping_runs(fake, scaler.ScalerConfig.from_env())
    assert len(first.job_ids) == 3 and not first.skipped
    assert second.skipped and second.job_ids == ()
    assert len(submitted(fake)) == 3  # not 6
    holder = json.loads(fake.s3.get_object(Bucket=BUCKET, Key="scaler/lease.json")["Body"].read())
    assert holder == {"owner": "run-a", "expires_at": 0.0}  # released: the next tick may run


def test_without_the_lease_overlapping_runs_double_submit(fake: Fake) -> None:
    """The control: the same overlap with no lease bucket submits twice, so the test above means something."""
    send(fake, 6)
    first, second = overlapping_runs(fake, scaler.ScalerConfig.from_env())
    assert len(first.job_ids) == 3 and len(second.job_ids) == 3
    assert len(submitted(fake)) == 6


def test_the_handler_skips_while_another_run_holds_the_lease(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_BUCKET", BUCKET)
    send(fake, 3)
    assert Lease(fake.s3, BUCKET, "scaler/lease.json", 55).acquire("another-run") is not None
    result = scaler.handler({}, LambdaContext())
    assert result["skipped"] is True and result["job_ids"] == [] and submitted(fake) == []


def test_an_expired_lease_is_taken_over_and_a_taken_one_is_not_released(fake: Fake) -> None:
    clock = [1000.0]
    lease = Lease(fake.s3, BUCKET, "scaler/lease.json", 55, clock=lambda: clock[0])
    crashed = lease.acquire("crashed-run")
    assert crashed is not None and lease.acquire("next-tick") is None  # live: the next tick waits
    clock[0] += 56
    taken = lease.acquire("next-tick")
    assert taken is not None  # expired: taken over with a compare-and-swap on its etag
    lease.release("crashed-run", crashed)  # a late release from the old holder changes nothing
    holder = json.loads(fake.s3.get_object(Bucket=BUCKET, Key="scaler/lease.json")["Body"].read())
    assert holder["owner"] == "next-tick" and holder["expires_at"] > clock[0]


# ------------------------------------------------------------------------------------ fast-failure back-off


def fail_jobs(fake: Fake, count: int, *, ran_seconds: float, ago_seconds: float = 60) -> list[str]:
    """Worker jobs that FAILED ``ago_seconds`` ago after running ``ran_seconds``: moto's job records, arranged."""
    backend = batch_backends[DEFAULT_ACCOUNT_ID][REGION]
    ids = []
    for index in range(count):
        job_id = fake.batch.submit_job(
            jobName=f"whisper-worker-old-{index}", jobQueue=fake.job_queue, jobDefinition=fake.job_definition
        )["jobId"]
        job = backend._jobs[job_id]
        stopped = time.time() - ago_seconds - index
        job.job_started_at = datetime.fromtimestamp(stopped - ran_seconds)
        job.job_stopped_at = datetime.fromtimestamp(stopped)
        job.job_stopped = True
        job.job_stopped_reason = "Essential container in task exited"
        job.status = JobStatus.FAILED
        ids.append(job_id)
    return ids


def test_failed_jobs_are_read_from_batch(fake: Fake) -> None:
    ids = fail_jobs(fake, 2, ran_seconds=30)
    failures = scaler.recent_failures(fake.batch, fake.job_queue, time.time())
    assert sorted(f.job_id for f in failures) == sorted(ids)
    assert all(f.fast and f.reason == "Essential container in task exited" for f in failures)
    assert all(29 <= f.stopped_at - (f.started_at or 0) <= 31 for f in failures)


def test_repeated_fast_failures_hold_submissions_back(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # moto's own switch: submitted jobs FAIL at once
    scaler.submit_workers(fake.batch, scaler.ScalerConfig.from_env(), FAST_FAILURE_THRESHOLD)
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER")
    send(fake, 5)
    result = scaler.handler({}, LambdaContext())
    assert result["desired_workers"] == 3 and result["submit"] == 0 and result["job_ids"] == []
    assert "3 worker jobs failed within 5 min of starting" in result["backoff"]
    (logged,) = [record for record in caplog.records if record.getMessage() == "holding back worker submissions"]
    assert logged.levelname == "WARNING" and logged.reason == result["backoff"]  # type: ignore[attr-defined]


def test_after_the_cool_down_a_single_worker_probes(fake: Fake) -> None:
    fail_jobs(fake, FAST_FAILURE_THRESHOLD, ran_seconds=20, ago_seconds=COOL_DOWN_SECONDS + 60)
    send(fake, 5)
    result = scaler.handler({}, LambdaContext())
    assert result["submit"] == 1 and len(result["job_ids"]) == 1 and "one worker at a time" in result["backoff"]


def test_workers_that_ran_a_while_before_failing_do_not_hold_anything_back(fake: Fake) -> None:
    fail_jobs(fake, FAST_FAILURE_THRESHOLD + 2, ran_seconds=3600)
    send(fake, 5)
    result = scaler.handler({}, LambdaContext())
    assert result["submit"] == 3 and result["backoff"] is None
