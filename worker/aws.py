"""AWS, one of each for the client and the worker: the boto3 client factory, the error code of a failed call,
SQS's limits, and the dead-letter queue behind a jobs queue.

boto3 is imported only when a client is made, so the contract (pydantic only) can read the limits.
"""

from __future__ import annotations

import json
from typing import Any, Final

# SQS's limits, named once.
SQS_MAX_BATCH: Final = 10  # messages per ReceiveMessage, entries per *Batch call
SQS_MAX_WAIT_SECONDS: Final = 20  # long poll
SQS_MAX_VISIBILITY_SECONDS: Final = 12 * 60 * 60
SQS_MAX_MESSAGE_BYTES: Final = 256 * 1024
SQS_MAX_RETENTION_DAYS: Final = 14
SQS_MAX_RECEIVE_COUNT: Final = 1000  # a redrive policy's maxReceiveCount
SQS_MAX_MESSAGE_ATTRIBUTE_CHARS: Final = 256  # ours: attribute values stay short; SQS allows more

# The worker: adaptive retries absorb S3/SQS throttling before its own error handling sees it, and the pool covers
# every message in progress (each holds a connection while it fetches or stores).
WORKER_RETRIES: Final = {"max_attempts": 5, "mode": "adaptive"}
# A backend's client: standard retries; a SendMessage retried this way may deliver a job twice, which the worker
# recognises by job id and request fingerprint.
CLIENT_RETRIES: Final = {"max_attempts": 6, "mode": "standard"}


def client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    session: Any = None,
    retries: dict[str, Any] = CLIENT_RETRIES,
    read_timeout: float = 30,
    pool: int = 10,
) -> Any:
    """A boto3 client; ``endpoint_url`` points it at moto, LocalStack or MinIO."""
    import boto3
    from botocore.config import Config

    config = Config(retries=dict(retries), connect_timeout=5, read_timeout=read_timeout, max_pool_connections=pool)
    kwargs: dict[str, Any] = {"config": config}
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return (session or boto3.session.Session()).client(service, **kwargs)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call (``NoSuchKey``, ``404``, ``SlowDown``, ...), or "" for other errors."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")


def redrive_policy(sqs: Any, queue_url: str) -> dict[str, Any]:
    """The jobs queue's redrive policy (``deadLetterTargetArn``, ``maxReceiveCount``), empty when it has none."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    return json.loads(attrs.get("RedrivePolicy") or "{}")


def dead_letter_queue(sqs: Any, policy: dict[str, Any]) -> str | None:
    """The URL of the DLQ a redrive policy names, or None."""
    arn = policy.get("deadLetterTargetArn")
    if not arn:
        return None
    *_, account, name = arn.split(":")
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
