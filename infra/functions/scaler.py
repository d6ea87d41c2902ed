"""Scaler Lambda: every minute, submit enough worker jobs to AWS Batch to drain the jobs queue.

One round: take the lease (``lease.py``; another run holding it means this one does nothing), observe the queue
depth and the active workers, decide (``scaler_logic.decide``), hold back after repeated fast failures
(``scaler_logic.backoff`` over the job queue's recent FAILED jobs), submit.

Environment: ``QUEUE_URL``, ``JOB_QUEUE`` and ``JOB_DEFINITION`` (ARNs), ``MAX_WORKERS``,
``MESSAGES_PER_WORKER``, ``JOB_NAME_PREFIX``; ``LEASE_BUCKET``, ``LEASE_KEY`` and ``LEASE_SECONDS`` for the lease
(no bucket: no lease, for local runs); ``POWERTOOLS_METRICS_NAMESPACE`` for the metrics.
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

from .lease import Lease
from .scaler_logic import (
    FAST_FAILURE_WINDOW_SECONDS,
    Backoff,
    Decision,
    FailedJob,
    Observation,
    backoff,
    decide,
    held_back,
)

ACTIVE_STATUSES: Final = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
SERVICE: Final = "whisper-batch"
DEFAULT_LEASE_SECONDS: Final = 55  # the function's 50 s timeout and a margin: free again by the next tick
# FAILED jobs read per round: enough to see a crash loop (a few a minute at most, as the back-off holds it), and a
# bound on the round's time when the queue keeps a long history.
MAX_FAILED_LISTED: Final = 200

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
    lease_bucket: str | None = None
    lease_key: str = "scaler/lease.json"
    lease_seconds: float = DEFAULT_LEASE_SECONDS

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
            lease_bucket=env.get("LEASE_BUCKET") or None,
            lease_key=env.get("LEASE_KEY") or "scaler/lease.json",
            lease_seconds=float(env.get("LEASE_SECONDS") or DEFAULT_LEASE_SECONDS),
        )


@dataclass(frozen=True)
class Round:
    """What one run saw and did; ``skipped`` when another run held the lease."""

    observation: Observation | None = None
    decision: Decision | None = None
    job_ids: tuple[str, ...] = ()
    backoff: Backoff | None = None
    skipped: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            **(asdict(self.observation) if self.observation else {}),
            **(asdict(self.decision) if self.decision else {"submit": 0}),
            "job_ids": list(self.job_ids),
            "backoff": self.backoff.reason if self.backoff else None,
            "skipped": self.skipped,
        }


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


def recent_failures(batch: Any, job_queue: str, now: float) -> list[FailedJob]:
    """The queue's FAILED jobs that stopped within the back-off window (Batch reports times in milliseconds)."""
    paginator = batch.get_paginator("list_jobs")
    pages = paginator.paginate(jobQueue=job_queue, jobStatus="FAILED", PaginationConfig={"MaxItems": MAX_FAILED_LISTED})
    failures = []
    for page in pages:
        for job in page["jobSummaryList"]:
            stopped = job.get("stoppedAt")
            if stopped is None or now - stopped / 1000 > FAST_FAILURE_WINDOW_SECONDS:
                continue
            started = job.get("startedAt")
            failures.append(
                FailedJob(
                    job_id=job["jobId"],
                    stopped_at=stopped / 1000,
                    started_at=None if started is None else started / 1000,
                    reason=job.get("statusReason", ""),
                )
            )
    return failures


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


def scale(sqs: Any, batch: Any, config: ScalerConfig, now: float | None = None) -> Round:
    """One scaling round without the lease: observe, decide, hold back after fast failures, submit."""
    now = time.time() if now is None else now
    observation = observe(sqs, batch, config)
    decision = decide(observation, max_workers=config.max_workers, messages_per_worker=config.messages_per_worker)
    hold = backoff(recent_failures(batch, config.job_queue, now), now) if decision.submit else None
    if hold is not None:
        logger.warning("holding back worker submissions", extra={"reason": hold.reason, "wanted": decision.submit})
        decision = held_back(decision, observation, hold)
    job_ids = submit_workers(batch, config, decision.submit, now)
    return Round(observation=observation, decision=decision, job_ids=tuple(job_ids), backoff=hold)


def run(sqs: Any, batch: Any, s3: Any, config: ScalerConfig, *, owner: str, now: float | None = None) -> Round:
    """One round under the lease; another run holding it means this one submits nothing."""
    if config.lease_bucket is None:
        return scale(sqs, batch, config, now)
    lease = Lease(s3, config.lease_bucket, config.lease_key, config.lease_seconds)
    with lease.held(owner) as holding:
        if not holding:
            logger.info("another scaler run holds the lease; this one submits nothing", extra={"owner": owner})
            return Round(skipped=True)
        return scale(sqs, batch, config, now)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    config = ScalerConfig.from_env()
    s3 = boto3.client("s3") if config.lease_bucket else None
    outcome = run(boto3.client("sqs"), boto3.client("batch"), s3, config, owner=context.aws_request_id)
    if outcome.observation is not None:
        metrics.add_metric(name="QueueVisibleMessages", unit=MetricUnit.Count, value=outcome.observation.visible)
        metrics.add_metric(name="ActiveWorkers", unit=MetricUnit.Count, value=outcome.observation.active_workers)
    metrics.add_metric(name="WorkersSubmitted", unit=MetricUnit.Count, value=len(outcome.job_ids))
    metrics.add_metric(name="ScalerHeldBack", unit=MetricUnit.Count, value=int(outcome.backoff is not None))
    result = outcome.summary()
    logger.info("scaled", extra=result)
    return result
