"""The scaler: a Lambda on a one-minute schedule that submits worker jobs while messages wait.

It never runs twice at once and never reruns an event: reserved concurrency 1, no retries by EventBridge or by
Lambda's asynchronous invocation, and a lease in S3 that the code itself takes (``functions/lease.py``). A run
that fails is simply followed by the next tick; the ScalerErrors alarm says when that keeps happening.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import SCALER_RESERVED_CONCURRENCY
from infra.functions_code import python_function

SCHEDULE = Duration.minutes(1)
TIMEOUT = Duration.seconds(50)  # finishes before the next tick, so two runs never overlap
# The lease outlives a run killed at its timeout, and is free again by the next tick.
LEASE_SECONDS = TIMEOUT.to_seconds() + 5
LEASE_KEY = "scaler/lease.json"
# One run at a time (SCALER_RESERVED_CONCURRENCY). An async event for a throttled function waits in Lambda's
# queue; it may wait at most this long (Lambda's minimum), so a stale tick never runs behind a fresh one.
MAX_EVENT_AGE = Duration.minutes(1)


class Scaler(Construct):
    """Runs ``functions.scaler.handler``; the Stack grants ``role`` the queue and Batch actions it needs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: lambda_.Code,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        made = python_function(
            self,
            "",
            code=code,
            handler="functions.scaler.handler",
            description="whisper-batch: submit Batch worker jobs for the waiting messages",
            role_description="whisper-batch scaler: reads queue depth, lists and submits worker jobs",
            environment=environment,
            log_retention=log_retention,
            timeout=TIMEOUT,
            reserved_concurrent_executions=SCALER_RESERVED_CONCURRENCY,
            retry_attempts=0,  # async invoke config: a failed round is not rerun, the next tick is a fresh one
            max_event_age=MAX_EVENT_AGE,
        )
        self.role, self.log_group, self.function = made.role, made.log_group, made.function
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(SCHEDULE),
            description="whisper-batch: run the scaler every minute",
            targets=[targets.LambdaFunction(self.function, retry_attempts=0, max_event_age=MAX_EVENT_AGE)],
        )
