"""``GET /jobs/{job_id}``: the job's ``result.json``, or its ``status.json`` while there is no result yet.

API Gateway (Lambda proxy integration) calls this; ``RESULTS_BUCKET`` and ``RESULTS_PREFIX`` say where to look.
The role may read only those two keys of each job, and list ``results/`` so a missing key answers 404.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger

DOCUMENTS: Final = ("result.json", "status.json")

logger = Logger(service="whisper-batch")


def response(status: int, body: Any) -> dict[str, Any]:
    payload = body if isinstance(body, str) else json.dumps(body)
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": payload}


def find_job(s3: Any, bucket: str, prefix: str, job_id: str, pattern: str) -> dict[str, Any]:
    """The API Gateway proxy response for ``job_id``; ``pattern`` is the contract's job-id pattern (anchored), the
    path-traversal guard."""
    if re.fullmatch(pattern.removeprefix("^").removesuffix("$"), job_id) is None:
        return response(400, {"error": "invalid_job_id", "message": f"job_id must match {pattern}"})
    for name in DOCUMENTS:
        try:
            obj = s3.get_object(Bucket=bucket, Key=f"{prefix}{job_id}/{name}")
        except s3.exceptions.NoSuchKey:
            continue
        return response(200, obj["Body"].read().decode("utf-8"))
    return response(404, {"error": "not_found", "message": f"no result or status for job {job_id}"})


@logger.inject_lambda_context
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    job_id = (event.get("pathParameters") or {}).get("job_id", "")
    result = find_job(
        boto3.client("s3"),
        os.environ["RESULTS_BUCKET"],
        os.environ.get("RESULTS_PREFIX", "results/"),
        job_id,
        os.environ["JOB_ID_PATTERN"],  # the contract's, set by the stack
    )
    logger.info("job looked up", extra={"job_id": job_id[:128], "status_code": result["statusCode"]})
    return result
