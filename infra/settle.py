"""The settle Lambda: an SQS event source on the DLQ that gives every dead letter a final result.json and its
failure callback (``functions/settle.py`` over ``worker.client.settle``), then moves it to the settled-letters queue.

A few records per call, gathered for a few seconds, with ReportBatchItemFailures: a record it cannot settle stays
in the DLQ and comes back after the DLQ's visibility timeout (``DLQ_VISIBILITY``, six times the function's, as AWS
advises for SQS event sources). The Stack grants ``role`` what it needs.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.functions_code import python_function

BATCH_SIZE = 5
BATCHING_WINDOW = Duration.seconds(10)
# Five records, each with its S3 calls and up to three callback attempts of 10 s (functions/settle.py).
TIMEOUT = Duration.minutes(4)
DLQ_VISIBILITY = Duration.seconds(6 * TIMEOUT.to_seconds())


class DeadLetterSettler(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: lambda_.Code,
        dead_letters: sqs.IQueue,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        made = python_function(
            self,
            "",
            code=code,
            handler="functions.settle.handler",
            description="whisper-batch: settle dead letters (result.json, failure callback, settled-letters queue)",
            role_description="whisper-batch settle: final result.json and callback for each dead letter",
            environment=environment,
            log_retention=log_retention,
            timeout=TIMEOUT,
        )
        self.role, self.log_group, self.function = made.role, made.log_group, made.function
        self.mapping = lambda_.EventSourceMapping(
            self,
            "FromDeadLetters",
            target=self.function,
            event_source_arn=dead_letters.queue_arn,
            batch_size=BATCH_SIZE,
            max_batching_window=BATCHING_WINDOW,
            report_batch_item_failures=True,
        )
