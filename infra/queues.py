"""The jobs queue, its dead-letter queue, and the settled-letters queue where settled dead letters wait."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from worker.aws import SQS_MAX_RETENTION_DAYS

LONG_POLL_SECONDS = 20  # SQS maximum


class JobQueues(Construct):
    """SSE and SSL-only queues; after ``max_receive_count`` receives a message moves to the DLQ (kept 14 days).

    The settle Lambda consumes the DLQ, so its visibility timeout (``dead_letter_visibility``) must outlast the
    function's; settled letters then wait in ``settled`` (kept 14 days) to be listed or redriven.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        visibility_timeout: Duration,
        max_receive_count: int,
        retention: Duration,
        dead_letter_visibility: Duration | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(SQS_MAX_RETENTION_DAYS),
            visibility_timeout=dead_letter_visibility,
        )
        self.settled = sqs.Queue(
            self,
            "SettledLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(SQS_MAX_RETENTION_DAYS),
        )
        self.jobs = sqs.Queue(
            self,
            "Jobs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=retention,
            receive_message_wait_time=Duration.seconds(LONG_POLL_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=max_receive_count),
        )
