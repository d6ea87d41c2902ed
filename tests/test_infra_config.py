"""Deployment settings from CDK context: defaults, command-line strings, and refusals that name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    AUDIO_SAMPLE_RATE,
    CPU_MODELS,
    MIB,
    SQS_MAX_RETENTION_DAYS,
    WORKER_AUDIO_SHARE,
    WORKER_BYTES_PER_AUDIO_SECOND,
    WORKER_FINISH_SECONDS,
    WORKER_MAX_AUDIO_SECONDS,
    WORKER_MIN_DECODED_SECONDS,
    WORKER_RUNTIME_RESERVE_BYTES,
    ConfigError,
    InfraConfig,
    LifecycleRule,
)

ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = ROOT / "cdk.json"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:whisper-batch/webhook-AbC123"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def config(env: dict[str, str] | None = None, **context: Any) -> InfraConfig:
    return InfraConfig.from_context(context.get, env or {})


def test_cdk_json_spells_out_every_default() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    assert InfraConfig.from_context(context.get, {}) == InfraConfig()
    assert json.loads(CDK_JSON.read_text())["app"] == ".venv-infra/bin/python -m infra.app"  # no torch there


def test_defaults() -> None:
    c = config()
    assert c.stack_name == "WhisperBatch" and c.metrics_namespace == "WhisperBatch"
    assert c.retain_data and c.spot and c.api and c.api_auth == "iam"
    assert c.instance_types == ("g4dn.xlarge", "g5.xlarge", "g6.xlarge")  # single-GPU sizes, not families
    # AMX for the bf16 encoder, and 16 GiB: a 14 GiB job fits
    assert c.cpu_instance_types == ("m7i.xlarge", "c7i.2xlarge")
    assert not c.private_endpoints and c.kms_key_arns == () and c.workers_have_internet
    assert c.bucket_lifecycle == (LifecycleRule("audio/", expire_after_days=7), LifecycleRule("results/", 30))
    assert c.lifecycle == () and c.noncurrent_expire_days == 7
    assert c.alarms == "notify" and not c.alarms_reach_someone
    assert c.webhook_secret_arn is None


def test_command_line_strings_are_coerced() -> None:
    c = config(
        cpuOnly="true",
        spot="false",
        maxWorkers="3",
        cpuInstanceTypes="c7i.2xlarge,m7i.xlarge",
        gpuInstanceTypes='["g5.xlarge"]',
        kmsKeyArns=KEY_ARN,
        privateEndpoints="true",
        lifecycle='{"exports/": {"expireAfterDays": 7}}',
        resultsExpireDays="0",
        alarms="none",
        removalPolicy="destroy",
        webhookSecretName="null",
    )
    assert c.cpu_only and not c.spot and c.max_workers == 3
    assert c.instance_types == ("c7i.2xlarge", "m7i.xlarge") and c.gpu_instance_types == ("g5.xlarge",)
    assert c.kms_key_arns == (KEY_ARN,) and c.private_endpoints
    assert c.lifecycle == (LifecycleRule("exports/", expire_after_days=7),)
    assert c.bucket_lifecycle == (LifecycleRule("audio/", expire_after_days=7), *c.lifecycle)  # results kept
    assert c.alarms == "none"
    assert not c.retain_data and c.webhook_secret_name is None


def test_api_key_mode_is_taken_once_acknowledged() -> None:
    c = config(apiAuth="apiKey", apiKeyAcknowledged="true", apiCallbackHosts="hooks.example.com")
    assert c.api_auth == "apiKey" and c.api_callback_hosts == ("hooks.example.com",)
    assert config(apiAuth="apiKey", api="false").api_auth == "apiKey"  # no API, nothing to acknowledge


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
        ({"lifecycle": {"x/": {"expireAfterDays": 0}}}, "expireAfterDays"),
        ({"lifecycle": {"x/": {"infrequentAccessAfterDays": 10}}}, "infrequentAccessAfterDays"),
        ({"lifecycle": {"results/": {"expireAfterDays": 10}}}, "results/ has its own key, resultsExpireDays"),
        ({"audioExpireDays": "0"}, "audioExpireDays"),
        ({"resultsExpireDays": "-1"}, "resultsExpireDays"),
        ({"alarms": "off"}, "alarms must be notify or none"),
        ({"apiAuth": "apiKey"}, "one API key, shared by every caller.*apiKeyAcknowledged=true"),
        ({"apiCallbackHosts": "https://hooks.example.com"}, "apiCallbackHosts"),
        ({"apiCallbackHosts": "Hooks.Example.com"}, "apiCallbackHosts"),
        ({"alarmTopicArn": "pager"}, "alarmTopicArn"),
        ({"lifecycle": {"audio/": {"glacier": 10}}}, "lifecycle"),
        ({"lifecycle": {"audio/": {}}}, "lifecycle"),
        ({"lifecycle": {"x/": {"expireAfterDays": 40, "infrequentAccessAfterDays": 60}}}, "infrequentAccessAfterDays"),
        ({"cpuOnly": True, "models": "large-v3", "defaultModel": "large-v3"}, "cpuOnly"),
        ({"defaultModel": "large-v3"}, "models"),
        ({"maxvCpus": 2, "jobVcpus": 4}, "maxvCpus"),
        ({"logRetentionDays": 10}, "logRetentionDays"),
        ({"apiRateLimit": 50, "apiBurstLimit": 10}, "apiBurstLimit"),
        ({"gpuInstanceTypes": []}, "gpuInstanceTypes is empty"),
        ({"cpuOnly": True, "models": "base", "cpuInstanceTypes": "[]"}, "cpuInstanceTypes is empty"),
        ({"gpuInstanceTypes": "g5,g6.xlarge"}, "'g5' is not an instance type.*g5.xlarge"),
        ({"kmsKeyArns": "alias/my-key"}, "kmsKeyArns"),
        ({"kmsKeyArns": [KEY_ARN.replace(":key/", ":alias/")]}, "kmsKeyArns"),
        ({"jobMemoryMiB": 2048}, "jobMemoryMiB .* leaves no room for decoded audio"),
        ({"privateEndpoints": True, "natGateways": 0, "modelDownload": True}, "modelDownload needs internet"),
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


def test_finishing_window_is_the_workers() -> None:
    from worker.service.runner import RUNTIME_FINISH_SECONDS

    assert WORKER_FINISH_SECONDS == RUNTIME_FINISH_SECONDS


def test_the_stack_reads_the_workers_numbers_without_loading_torch_or_numpy() -> None:
    probe = "import sys, infra.config; print(sorted({'torch', 'numpy', 'whisper'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_job_timeout_too_short_for_any_runtime_is_refused() -> None:
    with pytest.raises(ConfigError, match="jobTimeoutHours"):
        config(jobTimeoutHours="0")  # context refuses it outright
    with pytest.raises(ConfigError, match="leaves workers no runtime"):
        InfraConfig(job_timeout_hours=0).validate()


@pytest.mark.parametrize(
    ("old", "new"), [("gpuInstanceClasses", "gpuInstanceTypes"), ("cpuInstanceClasses", "cpuInstanceTypes")]
)
def test_the_old_instance_class_keys_point_to_their_successors(old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=f"{old} was replaced by {new}.*-c {new}="):
        config(**{old: '["g5", "g6"]'})
    assert config(**{old: None}).instance_types  # left as null in an old cdk.json: harmless


def test_private_endpoints_without_nat_means_no_internet() -> None:
    assert not config(privateEndpoints="true", natGateways="0").workers_have_internet
    assert config(privateEndpoints="true", natGateways="1").workers_have_internet


# ---------------------------------------------------------------------------------- memory → worker limits


@pytest.mark.parametrize(
    ("memory_mib", "decoded", "concurrency"),
    [
        (14336, 48234, 16),  # the default: 11.5 GiB past the runtime, half of it at 128 kB/s → 13.4 h
        (8192, 23068, 12),  # a 6.4 h budget: twelve half-hour files at once
        (4096, 6291, 3),
        (2816, 1048, 1),  # barely above the runtime: one message at a time
        (2707, 602, 1),  # the least memory the context accepts: the worker's 600 s minimum fits
    ],
)
def test_worker_limits_follow_job_memory(memory_mib: int, decoded: int, concurrency: int) -> None:
    gpu = config(jobMemoryMiB=memory_mib)
    cpu = config(jobMemoryMiB=memory_mib, cpuOnly="true", models="base")
    assert gpu.worker_max_decoded_seconds == cpu.worker_max_decoded_seconds == decoded
    # CPUs get as many messages at once as a GPU: fewer leave the engine's passes half empty
    assert gpu.worker_concurrency == cpu.worker_concurrency == concurrency
    # what the budget holds fits the job's memory beside the runtime, counting the decode peak twice
    assert WORKER_RUNTIME_RESERVE_BYTES + decoded * WORKER_BYTES_PER_AUDIO_SECOND <= memory_mib * MIB


def test_budget_constants_are_the_workers() -> None:
    from worker.audio import (
        SAMPLE_RATE,  # numpy and the decoder: fine in tests, never in infra
        budget,
    )
    from worker.service.settings import Settings

    assert AUDIO_SAMPLE_RATE == SAMPLE_RATE
    assert WORKER_BYTES_PER_AUDIO_SECOND == budget.BYTES_PER_SECOND
    assert WORKER_RUNTIME_RESERVE_BYTES == budget.RUNTIME_RESERVE_BYTES
    assert WORKER_AUDIO_SHARE == budget.AUDIO_SHARE
    assert WORKER_MIN_DECODED_SECONDS == budget.MINIMUM_SECONDS
    assert Settings().max_audio_seconds == WORKER_MAX_AUDIO_SECONDS


def test_memory_below_the_runtime_and_the_minimum_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match="give at least 2707"):
        config(jobMemoryMiB=2706)


@pytest.mark.parametrize("memory_mib", [2707, 4096, 14336, 30720])
def test_decoded_seconds_are_what_the_worker_would_derive_from_the_same_limit(memory_mib: int, tmp_path: Path) -> None:
    from worker.audio.budget import default_budget_seconds

    cgroup = tmp_path / "memory.max"
    cgroup.write_text(str(memory_mib * MIB))  # Batch's MEMORY limit, as the container sees it
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\n")  # the host has more
    derived = default_budget_seconds(cgroup_v2=cgroup, cgroup_v1=tmp_path / "none", meminfo=meminfo)
    assert config(jobMemoryMiB=memory_mib).worker_max_decoded_seconds == int(derived)
