"""Scaler Lambda: every minute, submit enough worker jobs to AWS Batch to drain the jobs queue.

Environment: ``QUEUE_URL``, ``JOB_QUEUE`` and ``JOB_DEFINITION`` (ARNs), ``MAX_WORKERS``,
``MESSAGES_PER_WORKER``, ``JOB_NAME_PREFIX``; ``POWERTOOLS_METRICS_NAMESPACE`` for the metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .scaler_logic import Decision, Observation, decide

ACTIVE_STATUSES: Final = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
SERVICE: Final = "whisper-batch"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "WhisperBatch"), service=SERVICE)


@dataclass(frozen=True)
class ScalerConfig:
    queue_url: str
    job_queue: str
    job_definition: str
    max_workers: int
    messages_per_worker: int
    job_name_prefix: str = "whisper-worker"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScalerConfig:
        env = os.environ if env is None else env
        return cls(
            queue_url=env["QUEUE_URL"],
            job_queue=env["JOB_QUEUE"],
            job_definition=env["JOB_DEFINITION"],
            max_workers=int(env["MAX_WORKERS"]),
            messages_per_worker=int(env["MESSAGES_PER_WORKER"]),
            job_name_prefix=env.get("JOB_NAME_PREFIX", "whisper-worker"),
        )


def observe(sqs: Any, batch: Any, config: ScalerConfig) -> Observation:
    attributes = sqs.get_queue_attributes(
        QueueUrl=config.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return Observation(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        active_workers=count_active_jobs(batch, config.job_queue),
    )


def count_active_jobs(batch: Any, job_queue: str) -> int:
    paginator = batch.get_paginator("list_jobs")
    return sum(
        len(page["jobSummaryList"])
        for status in ACTIVE_STATUSES
        for page in paginator.paginate(jobQueue=job_queue, jobStatus=status)
    )


def submit_workers(batch: Any, config: ScalerConfig, count: int, now: float | None = None) -> list[str]:
    stamp = int(time.time() if now is None else now)
    job_ids = []
    for index in range(count):
        response = batch.submit_job(
            jobName=f"{config.job_name_prefix}-{stamp}-{index}",
            jobQueue=config.job_queue,
            jobDefinition=config.job_definition,
        )
        job_ids.append(response["jobId"])
    return job_ids


def scale(sqs: Any, batch: Any, config: ScalerConfig) -> tuple[Observation, Decision, list[str]]:
    """One scaling round: observe, decide, submit."""
    observation = observe(sqs, batch, config)
    decision = decide(observation, max_workers=config.max_workers, messages_per_worker=config.messages_per_worker)
    job_ids = submit_workers(batch, config, decision.submit)
    return observation, decision, job_ids


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    config = ScalerConfig.from_env()
    observation, decision, job_ids = scale(boto3.client("sqs"), boto3.client("batch"), config)
    metrics.add_metric(name="QueueVisibleMessages", unit=MetricUnit.Count, value=observation.visible)
    metrics.add_metric(name="ActiveWorkers", unit=MetricUnit.Count, value=observation.active_workers)
    metrics.add_metric(name="WorkersSubmitted", unit=MetricUnit.Count, value=len(job_ids))
    result = {**asdict(observation), **asdict(decision), "job_ids": job_ids}
    logger.info("scaled", extra=result)
    return result
