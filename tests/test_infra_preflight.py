"""``make deploy``'s preflight against moto (STS, SSM, Secrets Manager): it names what is missing, plainly."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import preflight

REGION = "eu-west-1"
CONTEXT = {"webhookSecretName": "whisper-batch/webhook"}


def tools(node: str = "v22.11.0", docker: bool = True) -> preflight.Runner:
    def run(argv: Sequence[str]) -> tuple[int, str]:
        if argv[0] == "node":
            return (0, node) if node else (127, "node: not found")
        return (0, "27.0.1") if docker else (1, "Cannot connect to the Docker daemon")

    return run


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def bootstrap(session: Any, version: str = "27") -> None:
    session.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value=version, Type="String")


def test_ready_account_resolves_the_secret_arn(session: Any) -> None:
    bootstrap(session)
    arn = session.client("secretsmanager").create_secret(Name="whisper-batch/webhook", SecretString="whsec_x")["ARN"]
    report = preflight.check(session, CONTEXT, {}, tools())
    assert report.problems == []
    assert report.cdk_args == ["-c", f"webhookSecretArn={arn}"]
    assert any("123456789012" in note for note in report.notes)


def test_everything_missing_is_named(session: Any) -> None:
    report = preflight.check(session, CONTEXT, {}, tools(node="", docker=False))
    text = "\n".join(report.problems)
    assert "Node.js is not installed" in text
    assert "Docker is not running" in text
    assert "not CDK-bootstrapped" in text and "cdk bootstrap" in text
    assert "webhook secret 'whisper-batch/webhook' does not exist" in text
    assert "aws secretsmanager create-secret --name whisper-batch/webhook" in text
    assert report.cdk_args == []


def test_old_node_and_old_bootstrap(session: Any) -> None:
    bootstrap(session, "3")
    text = "\n".join(preflight.check(session, {"webhookSecretName": None}, {}, tools(node="v18.19.0")).problems)
    assert "Node.js v18.19.0 is too old" in text
    assert "bootstrap version 3 is too old" in text


def test_no_region_stops_before_calling_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    report = preflight.check(boto3.session.Session(), CONTEXT, {}, tools())
    assert report.problems == ["No AWS region: set AWS_REGION (or a region in your AWS profile)."]


def test_secret_arn_from_the_environment_is_checked(session: Any) -> None:
    bootstrap(session)
    arn = session.client("secretsmanager").create_secret(Name="other", SecretString="whsec_y")["ARN"]
    report = preflight.check(session, CONTEXT, {"WHISPER_WEBHOOK_SECRET_ARN": arn}, tools())
    assert report.problems == [] and report.cdk_args == ["-c", f"webhookSecretArn={arn}"]


def test_context_reads_cdk_json_and_command_line_overrides(tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"context": {"webhookSecretName": "a", "stackName": "WhisperBatch"}}))
    context = preflight.context_from(["-c", "webhookSecretName=b", "--context", "x=1", "--force"], cdk_json)
    assert context == {"webhookSecretName": "b", "stackName": "WhisperBatch", "x": "1"}


def test_outputs_are_printed_by_key(tmp_path: Path) -> None:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps({"WhisperBatch": {"QueueUrl": "https://sqs/q", "BucketName": "b"}}))
    assert preflight.format_outputs(path).splitlines() == [
        "WhisperBatch outputs:",
        "  BucketName    b",
        "  QueueUrl      https://sqs/q",
    ]
