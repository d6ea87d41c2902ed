"""Settle Lambda: every message that reaches the DLQ gets a final result.json and its failure callback, then moves
to the settled-letters queue (``worker.client.settle`` does the work; the bundle carries it, standard library and
boto3 only).

An SQS event source mapping on the DLQ calls it with a few records at a time and ReportBatchItemFailures on: a
record that could not be settled (S3 or SQS refused, or too little time left to try) is reported and stays in the
DLQ for the next delivery; settling is idempotent, so a redelivered record only forwards what S3 already holds.
A configuration or secret problem fails the whole invocation, so every record stays and the Errors alarm fires.

Environment: ``WHISPER_RESULTS_BUCKET``, ``WHISPER_RESULTS_PREFIX``, ``WHISPER_SETTLED_URL`` (required here: the
mapping deletes what the handler reports settled), ``WHISPER_WEBHOOK_SECRET_ARN`` (none: no callbacks),
``WHISPER_ALLOW_HTTP`` and ``WHISPER_ALLOW_PRIVATE_URLS`` as for the worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger

from worker.client.deadletters import from_lambda_record
from worker.client.settle import SettleConfig, read_secret, settle
from worker.webhooks import WebhookPoster

SERVICE: Final = "whisper-batch"
CALLBACK_ATTEMPTS: Final = 3
CALLBACK_TIMEOUT_SECONDS: Final = 10.0
# Time one record may take at most: its S3 calls and every callback attempt with the backoff between them.
RECORD_BUDGET_MS: Final = int((CALLBACK_ATTEMPTS * CALLBACK_TIMEOUT_SECONDS + 10) * 1000)

logger = Logger(service=SERVICE)


@lru_cache(maxsize=4)
def _secret(secret_arn: str, endpoint: str | None) -> str:
    """The webhook secret, read once per container (per ARN)."""
    return read_secret(boto3.client("secretsmanager", endpoint_url=endpoint), secret_arn)


def _parts(env: Mapping[str, str]) -> tuple[SettleConfig, WebhookPoster | None, Any, Any]:
    config = SettleConfig.from_env(env)
    if not config.settled_url:
        raise RuntimeError("WHISPER_SETTLED_URL is not set: settled letters would be deleted from the DLQ")
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    secret_arn = env.get("WHISPER_WEBHOOK_SECRET_ARN")
    poster = None
    if secret_arn:
        poster = WebhookPoster(
            _secret(secret_arn, endpoint),
            attempts=CALLBACK_ATTEMPTS,
            timeout=CALLBACK_TIMEOUT_SECONDS,
            allow_http=config.allow_http,
            allow_private=config.allow_private,
        )
    return config, poster, _client("s3", endpoint), _client("sqs", endpoint)


@lru_cache(maxsize=8)
def _client(service: str, endpoint: str | None) -> Any:
    return boto3.client(service, endpoint_url=endpoint)


@logger.inject_lambda_context
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    config, poster, s3, sqs = _parts(os.environ)
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        message_id = record["messageId"]
        if context.get_remaining_time_in_millis() < RECORD_BUDGET_MS:
            logger.warning("too little time left; record stays in the DLQ", extra={"message_id": message_id})
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            outcome = settle(from_lambda_record(record), s3=s3, sqs=sqs, config=config, poster=poster)
        except Exception as exc:  # any failure keeps the record in the DLQ, to be settled on its next delivery
            logger.exception("could not settle", extra={"message_id": message_id, "error": str(exc)})
            failures.append({"itemIdentifier": message_id})
            continue
        logger.info("settled", extra=outcome.as_dict())
    return {"batchItemFailures": failures}
