"""The scaler Lambda handler against moto's SQS and Batch.

moto's Batch runs jobs in Docker unless ``use_docker`` is off; with it off, ListJobs/SubmitJob work without a
Docker engine and a submitted job is marked SUCCEEDED at once. Workers still "running" are arranged by setting
the status of moto's own job records (the fake's state, not our code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.batch.models import batch_backends
from moto.batch.utils import JobStatus
from moto.core import DEFAULT_ACCOUNT_ID

from infra.functions import scaler

REGION = "eu-west-1"


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
        f = Fake(sqs, batch, queue_url, job_queue["jobQueueArn"], definition["jobDefinitionArn"])
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
    observation, decision, job_ids = scaler.scale(fake.sqs, fake.batch, config)
    assert (observation.visible, observation.in_flight) == (2, 4)
    assert decision.submit == 3 and len(job_ids) == 3
