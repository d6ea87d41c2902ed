"""``GET /jobs/{job_id}``'s Lambda against moto's S3: result.json first, then status.json, else 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.functions import job_status
from worker.contract import JOB_ID_PATTERN

BUCKET = "whisper-results"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RESULTS_BUCKET", BUCKET)
    monkeypatch.setenv("JOB_ID_PATTERN", JOB_ID_PATTERN)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


class Context:
    function_name = "status"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:status"
    aws_request_id = "req-1"


def get(job_id: str) -> dict[str, Any]:
    return job_status.handler({"pathParameters": {"job_id": job_id}}, Context())


def test_result_json_wins_over_status_json(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="results/t-1/status.json", Body=b'{"status": "running"}')
    s3.put_object(Bucket=BUCKET, Key="results/t-1/result.json", Body=b'{"status": "completed"}')
    response = get("t-1")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"status": "completed"}


def test_status_json_while_there_is_no_result(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="results/t-2/status.json", Body=b'{"status": "running"}')
    assert json.loads(get("t-2")["body"]) == {"status": "running"}


def test_unknown_job_is_404(s3: Any) -> None:
    response = get("nobody")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == "not_found"


@pytest.mark.parametrize("job_id", ["", "../audio/x", "a/b", "x" * 129, "t 1"])
def test_job_ids_outside_the_contract_are_400(s3: Any, job_id: str) -> None:
    assert get(job_id)["statusCode"] == 400
