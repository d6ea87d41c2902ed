"""The deploy-time image build's custom resource handlers against moto's CodeBuild: start once per new tag, report
completion, and leave a deleted one alone. (moto finishes every build at once, so a failed build is not played.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.functions import image_build

PROJECT = "whisper-image"


@pytest.fixture
def codebuild(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="image-build", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("codebuild")
        client.create_project(
            name=PROJECT,
            source={"type": "S3", "location": "assets/source.zip"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_LARGE",
            },
            serviceRole=role,
        )
        yield client


def event(request_type: str, tag: str = "a" * 64, **extra: Any) -> dict[str, Any]:
    return {"RequestType": request_type, "ResourceProperties": {"ProjectName": PROJECT, "ImageTag": tag}, **extra}


def builds(codebuild: Any) -> list[str]:
    return list(codebuild.list_builds_for_project(projectName=PROJECT)["ids"])


def test_a_new_tag_starts_a_build_and_completes_with_it(codebuild: Any) -> None:
    started = image_build.on_event(event("Create"), None)
    assert started["PhysicalResourceId"] == "a" * 64
    assert builds(codebuild) == [started["Data"]["BuildId"]]
    assert image_build.is_complete({**event("Create"), **started}, None) == {"IsComplete": True}
    updated = image_build.on_event(event("Update", tag="b" * 64, PhysicalResourceId="a" * 64), None)
    assert updated["PhysicalResourceId"] == "b" * 64 and len(builds(codebuild)) == 2


def test_delete_starts_nothing(codebuild: Any) -> None:
    gone = image_build.on_event(event("Delete", PhysicalResourceId="a" * 64), None)
    assert gone == {"PhysicalResourceId": "a" * 64} and builds(codebuild) == []
    assert image_build.is_complete(event("Delete", PhysicalResourceId="a" * 64), None) == {"IsComplete": True}
