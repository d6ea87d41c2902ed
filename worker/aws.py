"""boto3 clients built from settings, so one endpoint URL points the worker at moto, LocalStack or MinIO."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from worker.service.settings import Settings

# Adaptive retries absorb S3/SQS throttling before our own error handling sees it.
# A pool that covers every message in progress (each holds a connection while it fetches or stores).
_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "adaptive"}, connect_timeout=5, read_timeout=60, max_pool_connections=64
)


def client(service: str, settings: Settings) -> Any:
    kwargs: dict[str, Any] = {"config": _CONFIG}
    if settings.region:
        kwargs["region_name"] = settings.region
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    return boto3.session.Session().client(service, **kwargs)
