"""Deployment settings from CDK context: defaults, command-line strings, and refusals that name the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    CPU_MODELS,
    SQS_MAX_RETENTION_DAYS,
    WORKER_FINISH_SECONDS,
    ConfigError,
    InfraConfig,
    LifecycleRule,
)

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:whisper-batch/webhook-AbC123"


def config(env: dict[str, str] | None = None, **context: Any) -> InfraConfig:
    return InfraConfig.from_context(context.get, env or {})


def test_cdk_json_spells_out_every_default() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    assert InfraConfig.from_context(context.get, {}) == InfraConfig()
    assert json.loads(CDK_JSON.read_text())["app"] == ".venv/bin/python -m infra.app"


def test_defaults() -> None:
    c = config()
    assert c.stack_name == "WhisperBatch" and c.metrics_namespace == "WhisperBatch"
    assert c.retain_data and c.spot and c.api and c.api_auth == "iam"
    assert c.instance_classes == ("g4dn", "g5", "g6")
    assert c.lifecycle == (LifecycleRule("audio/", expire_after_days=30), LifecycleRule("results/", None, 90))
    assert c.webhook_secret_arn is None


def test_command_line_strings_are_coerced() -> None:
    c = config(
        cpuOnly="true",
        spot="false",
        maxWorkers="3",
        cpuInstanceClasses="c7i,m7i",
        gpuInstanceClasses='["g5"]',
        lifecycle='{"audio/": {"expireAfterDays": 7}}',
        removalPolicy="destroy",
        webhookSecretName="null",
    )
    assert c.cpu_only and not c.spot and c.max_workers == 3
    assert c.instance_classes == ("c7i", "m7i") and c.gpu_instance_classes == ("g5",)
    assert c.lifecycle == (LifecycleRule("audio/", expire_after_days=7),)
    assert not c.retain_data and c.webhook_secret_name is None


def test_webhook_secret_arn_from_context_or_environment() -> None:
    assert config(webhookSecretArn=SECRET_ARN).webhook_secret_arn == SECRET_ARN
    assert config({"WHISPER_WEBHOOK_SECRET_ARN": SECRET_ARN}).webhook_secret_arn == SECRET_ARN


@pytest.mark.parametrize(
    ("context", "names"),
    [
        ({"maxReceiveCount": "0"}, "maxReceiveCount"),
        ({"queueRetentionDays": SQS_MAX_RETENTION_DAYS + 1}, "queueRetentionDays"),
        ({"visibilityTimeoutSeconds": "soon"}, "visibilityTimeoutSeconds"),
        ({"spot": "maybe"}, "spot"),
        ({"apiAuth": "cognito"}, "apiAuth"),
        ({"removalPolicy": "snapshot"}, "removalPolicy"),
        ({"vpcId": "my-vpc"}, "vpcId"),
        ({"webhookSecretArn": "whisper-batch/webhook"}, "webhookSecretArn"),  # a name, not the complete ARN
        ({"webhookSecretArn": SECRET_ARN[:-7]}, "webhookSecretArn"),  # partial ARN: Batch rejects it
        ({"alarmEmail": "ops"}, "alarmEmail"),
        ({"lifecycle": {"audio/": {"expireAfterDays": 0}}}, "expireAfterDays"),
        ({"lifecycle": {"audio/": {"infrequentAccessAfterDays": 10}}}, "infrequentAccessAfterDays"),
        ({"lifecycle": {"audio/": {"glacier": 10}}}, "lifecycle"),
        ({"lifecycle": {"audio/": {}}}, "lifecycle"),
        ({"lifecycle": {"x/": {"expireAfterDays": 40, "infrequentAccessAfterDays": 60}}}, "infrequentAccessAfterDays"),
        ({"cpuOnly": True, "models": "large-v3", "defaultModel": "large-v3"}, "cpuOnly"),
        ({"defaultModel": "large-v3"}, "models"),
        ({"maxvCpus": 2, "jobVcpus": 4}, "maxvCpus"),
        ({"logRetentionDays": 10}, "logRetentionDays"),
        ({"apiRateLimit": 50, "apiBurstLimit": 10}, "apiBurstLimit"),
        ({"gpuInstanceClasses": []}, "instance class"),
    ],
)
def test_bad_values_are_refused_by_name(context: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        config(**context)


def test_cpu_only_takes_small_models() -> None:
    for model in CPU_MODELS:
        assert config(cpuOnly=True, models=model, defaultModel=model).default_model == model


def test_default_model_must_be_baked_unless_downloads_are_allowed() -> None:
    assert config(models="base,large-v3", defaultModel="large-v3").models == ("base", "large-v3")
    assert config(defaultModel="turbo", modelDownload="true").default_model == "turbo"


def test_worker_runtime_leaves_the_finishing_window_and_a_margin_before_the_job_timeout() -> None:
    assert config().worker_max_runtime_seconds == 12 * 3600 - 15 * 60  # 600 s to finish + 300 s to leave
    assert config(jobTimeoutHours="1").worker_max_runtime_seconds == 45 * 60


def test_finishing_window_mirrors_the_worker() -> None:
    from worker.service.runner import RUNTIME_FINISH_SECONDS  # torch-dependent: fine in tests, never in infra

    assert WORKER_FINISH_SECONDS == RUNTIME_FINISH_SECONDS


def test_job_timeout_too_short_for_any_runtime_is_refused() -> None:
    with pytest.raises(ConfigError, match="jobTimeoutHours"):
        config(jobTimeoutHours="0")  # context refuses it outright
    with pytest.raises(ConfigError, match="leaves workers no runtime"):
        InfraConfig(job_timeout_hours=0).validate()
