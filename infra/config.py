"""Deployment settings, read once from CDK context (``cdk.json``, or ``cdk deploy -c key=value``).

Every key is described in ``CONTEXT_KEYS`` (the end of this module), from which docs/reference/cdk-context.md
is generated (``python -m scripts.docs_reference``). Values given on the command line arrive as strings, so each
reader accepts ``"true"``/``"8"``/``'["g5"]'`` as well as JSON values from ``cdk.json``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from worker import limits
from worker.aws import SQS_MAX_RECEIVE_COUNT, SQS_MAX_RETENTION_DAYS, SQS_MAX_VISIBILITY_SECONDS

# AWS limits, named once.
BATCH_MAX_RETRY_ATTEMPTS: Final = 10
BATCH_MIN_TIMEOUT_SECONDS: Final = 60
# SIGTERM, then SIGKILL this much later: the ECS agent's ECS_CONTAINER_STOP_TIMEOUT, set on our instances (its default,
# 30 s, is too short for a job in hand to finish or for its messages to be handed back calmly).
BATCH_STOP_GRACE_SECONDS: Final = 120
# Where the instance's watcher writes EC2's spot interruption notice, mounted read-only into the worker's container.
INTERRUPTION_NOTICE_DIR: Final = "/run/whisper-batch"
INTERRUPTION_NOTICE_FILE: Final = f"{INTERRUPTION_NOTICE_DIR}/interruption.json"
# The worker stops receiving at WHISPER_MAX_RUNTIME_SECONDS = job timeout - these two, so it leaves on its own
# (exit 0, nothing lost) rather than being killed by Batch mid-job.
WORKER_FINISH_SECONDS: Final = int(limits.RUNTIME_FINISH_SECONDS)
WORKER_EXIT_MARGIN_SECONDS: Final = 300  # after that window: shutdown, releasing what is left, process exit
WORKER_RUNTIME_HEADROOM_SECONDS: Final = WORKER_FINISH_SECONDS + WORKER_EXIT_MARGIN_SECONDS
S3_MIN_IA_TRANSITION_DAYS: Final = 30  # S3 refuses STANDARD_IA transitions earlier than this
MIB: Final = 1024**2
GIB: Final = 1024**3
# Decoded audio per worker, as worker/audio/budget.py's default_budget_seconds computes it, from the numbers it uses
# (worker/limits.py, which says why each is so); the worker never budgets less than the minimum, so a job must have
# memory for at least that much.
AUDIO_SAMPLE_RATE: Final = limits.SAMPLE_RATE
WORKER_BYTES_PER_AUDIO_SECOND: Final = limits.BUDGET_BYTES_PER_SECOND
WORKER_RUNTIME_RESERVE_BYTES: Final = limits.RUNTIME_RESERVE_BYTES
WORKER_AUDIO_SHARE: Final = limits.AUDIO_SHARE
WORKER_MIN_DECODED_SECONDS: Final = int(limits.MINIMUM_DECODED_SECONDS)
WORKER_MAX_AUDIO_SECONDS: Final = int(limits.MAX_AUDIO_SECONDS)  # the longest file a worker accepts by default
# Messages in progress per worker: enough that each can hold a half-hour recording's decoded audio without waiting
# for the budget (a message waiting on the budget is one another worker could be running), at most 16. Fewer leave
# the batched engine short of work: the jobs a pass finishes come back only while the next pass runs, so the
# messages in progress split into two groups that take turns, each pass with half of them. On 2 CPU cores, 4
# messages at once ran the real-speech bench at 10.4-10.7x, 8 at 11.7-12.3x, 16 at 12.6-13.1x.
CONCURRENCY_AUDIO_SECONDS: Final = 1800
MAX_WORKER_CONCURRENCY: Final = 16
# Explicit single-GPU sizes: a family name lets Batch launch any size of it (up to 48xlarge with 8 GPUs, billed
# whole while one 1-GPU job runs on it). Each fits jobVcpus=4 and jobMemoryMiB=14336 with the ECS agent's share.
# CPU trial: Sapphire Rapids sizes (m7i, c7i), whose AMX multiplies bf16 in hardware: Whisper's encoder ran 3x
# faster there in bf16 than in fp32 (docs/performance.md); m6i/c6i (Ice Lake) have no bf16. m7i.xlarge has 4 vCPUs
# and 16 GiB, which a 14 GiB job needs; c7i.xlarge has only 8 GiB, so c7i's size is the 2xlarge (8 vCPUs, 16 GiB).
DEFAULT_GPU_INSTANCE_TYPES: Final = ("g4dn.xlarge", "g5.xlarge", "g6.xlarge")
DEFAULT_CPU_INSTANCE_TYPES: Final = ("m7i.xlarge", "c7i.2xlarge")
INSTANCE_TYPE_PATTERN: Final = r"[a-z][a-z0-9-]*\.[a-z0-9]+"
# Context keys that were replaced: naming one fails with a pointer to its successor.
RENAMED_KEYS: Final = {
    "gpuInstanceClasses": ("gpuInstanceTypes", DEFAULT_GPU_INSTANCE_TYPES),
    "cpuInstanceClasses": ("cpuInstanceTypes", DEFAULT_CPU_INSTANCE_TYPES),
}
# The scaler runs one round at a time (infra/scaler.py); preflight checks the account can reserve it.
SCALER_RESERVED_CONCURRENCY: Final = 1
HOSTNAME_PATTERN: Final = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+"
SNS_TOPIC_ARN_PATTERN: Final = r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}"
KMS_KEY_ARN_PATTERN: Final = r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(mrk-)?[0-9a-f-]{32,36}"
# CloudWatch Logs accepts only these retention periods (days), named as aws_logs.RetentionDays members.
CLOUDWATCH_RETENTION: Final = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip

DEFAULT_STACK_NAME: Final = "WhisperBatch"
DEFAULT_METRICS_NAMESPACE: Final = "WhisperBatch"
SERVICE_NAME: Final = "whisper-batch"  # the ``service`` dimension of every metric
AUDIO_PREFIX: Final = "audio/"
RESULTS_PREFIX: Final = "results/"
CPU_MODELS: Final = frozenset({"tiny", "tiny.en", "base", "base.en"})
SECRET_ENV_ARN: Final = "WHISPER_WEBHOOK_SECRET_ARN"
# Batch needs a secret's complete ARN (with the 6-character suffix Secrets Manager adds), not a name.
SECRET_ARN_PATTERN: Final = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"

ContextGetter = Callable[[str], Any]


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class LifecycleRule:
    """Expiry and storage-class transitions for one key prefix of the bucket."""

    prefix: str
    expire_after_days: int | None = None
    infrequent_access_after_days: int | None = None


@dataclass(frozen=True)
class InfraConfig:
    stack_name: str = DEFAULT_STACK_NAME
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    retain_data: bool = True
    audio_expire_days: int = 7
    results_expire_days: int = 30  # 0: keep results until deleted
    noncurrent_expire_days: int = 7
    lifecycle: tuple[LifecycleRule, ...] = ()  # other prefixes; audio/ and results/ have their own keys
    visibility_timeout_seconds: int = 300
    max_receive_count: int = 8
    queue_retention_days: int = 4
    vpc_id: str | None = None
    max_azs: int = 2
    nat_gateways: int = 1
    private_endpoints: bool = False
    cpu_only: bool = False
    gpu_instance_types: tuple[str, ...] = DEFAULT_GPU_INSTANCE_TYPES
    cpu_instance_types: tuple[str, ...] = DEFAULT_CPU_INSTANCE_TYPES
    spot: bool = True
    maxv_cpus: int = 64
    ami_id: str | None = None
    root_volume_gib: int = 100
    job_vcpus: int = 4
    job_memory_mib: int = 14336
    job_timeout_hours: int = 12
    job_retry_attempts: int = 3
    runnable_timeout_minutes: int = 60
    max_workers: int = 8
    messages_per_worker: int = 10
    max_idle_seconds: int = 300
    models: tuple[str, ...] = ("base",)
    default_model: str = "base"
    model_download: bool = False
    webhook_secret_name: str | None = "whisper-batch/webhook"
    webhook_secret_arn: str | None = None
    extra_audio_buckets: tuple[str, ...] = ()
    kms_key_arns: tuple[str, ...] = ()
    alarm_email: str | None = None
    alarm_topic_arn: str | None = None
    alarms: str = "notify"  # "none": the operator chose to deploy with no one told of alarms
    worker_hours_alarm: int = 12
    oldest_message_alarm_minutes: int = 30
    log_retention_days: int = 30
    api: bool = True
    api_auth: str = "iam"
    api_rate_limit: int = 10
    api_burst_limit: int = 20
    api_quota_per_day: int | None = None
    api_callback_hosts: tuple[str, ...] = ()
    api_key_acknowledged: bool = False
    image_build: str = "local"  # "codebuild": built in the account, no Docker on the deploying machine
    keep_images: int = 5

    @property
    def bucket_lifecycle(self) -> tuple[LifecycleRule, ...]:
        """Every prefix's rule: uploads and results expire by their own keys, then the ``lifecycle`` extras."""
        rules = [LifecycleRule(AUDIO_PREFIX, expire_after_days=self.audio_expire_days)]
        if self.results_expire_days:
            rules.append(LifecycleRule(RESULTS_PREFIX, expire_after_days=self.results_expire_days))
        return (*rules, *self.lifecycle)

    @property
    def alarms_reach_someone(self) -> bool:
        return bool(self.alarm_email or self.alarm_topic_arn)

    @property
    def instance_types(self) -> tuple[str, ...]:
        return self.cpu_instance_types if self.cpu_only else self.gpu_instance_types

    @property
    def worker_max_decoded_seconds(self) -> int:
        """The worker's WHISPER_MAX_DECODED_SECONDS: what the job's memory limit holds of decoded audio, by the rule
        of ``worker.audio.budget.default_budget_seconds``."""
        spare = self.job_memory_mib * MIB - WORKER_RUNTIME_RESERVE_BYTES
        return max(WORKER_MIN_DECODED_SECONDS, int(spare * WORKER_AUDIO_SHARE / WORKER_BYTES_PER_AUDIO_SECOND))

    @property
    def worker_concurrency(self) -> int:
        """The worker's WHISPER_CONCURRENCY: as many messages as the decoded-audio budget holds half-hour files,
        at least one and at most MAX_WORKER_CONCURRENCY, on a GPU or CPUs alike."""
        return max(1, min(MAX_WORKER_CONCURRENCY, self.worker_max_decoded_seconds // CONCURRENCY_AUDIO_SECONDS))

    @property
    def workers_have_internet(self) -> bool:
        """False where workers sit in isolated subnets reached only through VPC endpoints."""
        return not (self.private_endpoints and self.nat_gateways == 0)

    @property
    def job_timeout_seconds(self) -> int:
        return self.job_timeout_hours * 3600

    @property
    def worker_max_runtime_seconds(self) -> int:
        """The worker's WHISPER_MAX_RUNTIME_SECONDS: when it stops receiving, so that it exits before the timeout."""
        return self.job_timeout_seconds - WORKER_RUNTIME_HEADROOM_SECONDS

    @classmethod
    def from_context(cls, get: ContextGetter, env: Mapping[str, str] | None = None) -> InfraConfig:
        """Read every knob through ``get`` (``node.try_get_context``); unset keys keep the defaults above."""
        env = os.environ if env is None else env
        d = cls()
        _refuse_renamed_keys(get)
        config = cls(
            stack_name=_str(get, "stackName", d.stack_name, pattern=r"[A-Za-z][A-Za-z0-9-]{0,127}"),
            metrics_namespace=_str(get, "metricsNamespace", d.metrics_namespace, pattern=r"[A-Za-z0-9_./#:-]{1,255}"),
            retain_data=_choice(get, "removalPolicy", "retain", ("retain", "destroy")) == "retain",
            audio_expire_days=_int(get, "audioExpireDays", d.audio_expire_days, 1, 100_000),
            results_expire_days=_int(get, "resultsExpireDays", d.results_expire_days, 0, 100_000),
            noncurrent_expire_days=_int(get, "noncurrentVersionExpireDays", d.noncurrent_expire_days, 1, 100_000),
            lifecycle=_lifecycle(get("lifecycle"), d.lifecycle),
            visibility_timeout_seconds=_int(
                get, "visibilityTimeoutSeconds", d.visibility_timeout_seconds, 30, SQS_MAX_VISIBILITY_SECONDS
            ),
            max_receive_count=_int(get, "maxReceiveCount", d.max_receive_count, 1, SQS_MAX_RECEIVE_COUNT),
            queue_retention_days=_int(get, "queueRetentionDays", d.queue_retention_days, 1, SQS_MAX_RETENTION_DAYS),
            vpc_id=_optional_str(get, "vpcId", pattern=r"vpc-[0-9a-f]{8,17}"),
            max_azs=_int(get, "maxAzs", d.max_azs, 1, 6),
            nat_gateways=_int(get, "natGateways", d.nat_gateways, 0, 6),
            private_endpoints=_bool(get, "privateEndpoints", d.private_endpoints),
            cpu_only=_bool(get, "cpuOnly", d.cpu_only),
            gpu_instance_types=_instance_types(get, "gpuInstanceTypes", d.gpu_instance_types),
            cpu_instance_types=_instance_types(get, "cpuInstanceTypes", d.cpu_instance_types),
            spot=_bool(get, "spot", d.spot),
            maxv_cpus=_int(get, "maxvCpus", d.maxv_cpus, 1, 100_000),
            ami_id=_optional_str(get, "amiId", pattern=r"ami-[0-9a-f]{8,17}"),
            root_volume_gib=_int(get, "rootVolumeGiB", d.root_volume_gib, 30, 16_384),
            job_vcpus=_int(get, "jobVcpus", d.job_vcpus, 1, 192),
            job_memory_mib=_int(get, "jobMemoryMiB", d.job_memory_mib, 512, 2_000_000),
            job_timeout_hours=_int(get, "jobTimeoutHours", d.job_timeout_hours, 1, 14 * 24),
            job_retry_attempts=_int(get, "jobRetryAttempts", d.job_retry_attempts, 1, BATCH_MAX_RETRY_ATTEMPTS),
            runnable_timeout_minutes=_int(get, "runnableTimeoutMinutes", d.runnable_timeout_minutes, 10, 24 * 60),
            max_workers=_int(get, "maxWorkers", d.max_workers, 0, 1000),
            messages_per_worker=_int(get, "messagesPerWorker", d.messages_per_worker, 1, 10_000),
            max_idle_seconds=_int(get, "maxIdleSeconds", d.max_idle_seconds, 30, 24 * 3600),
            models=_names(get, "models", d.models),
            default_model=_str(get, "defaultModel", d.default_model, pattern=r"[a-z0-9][a-z0-9._-]{0,63}"),
            model_download=_bool(get, "modelDownload", d.model_download),
            webhook_secret_name=_optional_str(get, "webhookSecretName", d.webhook_secret_name),
            webhook_secret_arn=_optional_str(
                get, "webhookSecretArn", env.get(SECRET_ENV_ARN) or None, pattern=SECRET_ARN_PATTERN
            ),
            extra_audio_buckets=_names(get, "extraAudioBuckets", d.extra_audio_buckets),
            kms_key_arns=_names(get, "kmsKeyArns", d.kms_key_arns, pattern=KMS_KEY_ARN_PATTERN),
            alarm_email=_optional_str(get, "alarmEmail", pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+"),
            alarm_topic_arn=_optional_str(get, "alarmTopicArn", pattern=SNS_TOPIC_ARN_PATTERN),
            alarms=_alarms(get, "alarms", d.alarms),
            worker_hours_alarm=_int(get, "workerHoursAlarm", d.worker_hours_alarm, 1, 168),
            oldest_message_alarm_minutes=_int(
                get, "oldestMessageAlarmMinutes", d.oldest_message_alarm_minutes, 1, 20160
            ),
            log_retention_days=_int(get, "logRetentionDays", d.log_retention_days, 1, 3653),
            api=_bool(get, "api", d.api),
            api_auth=_choice(get, "apiAuth", d.api_auth, ("iam", "apiKey")),
            api_rate_limit=_int(get, "apiRateLimit", d.api_rate_limit, 1, 10_000),
            api_burst_limit=_int(get, "apiBurstLimit", d.api_burst_limit, 1, 5_000),
            api_quota_per_day=_optional_int(get, "apiQuotaPerDay", 1),
            api_callback_hosts=_names(get, "apiCallbackHosts", d.api_callback_hosts, pattern=HOSTNAME_PATTERN),
            api_key_acknowledged=_bool(get, "apiKeyAcknowledged", d.api_key_acknowledged),
            image_build=_choice(get, "imageBuild", d.image_build, ("local", "codebuild")),
            keep_images=_int(get, "keepImages", d.keep_images, 1, 1000),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if self.cpu_only and self.default_model not in CPU_MODELS:
            allowed = ", ".join(sorted(CPU_MODELS))
            raise ConfigError(f"defaultModel {self.default_model!r} is too slow for cpuOnly; use one of {allowed}")
        if self.default_model not in self.models and not self.model_download:
            raise ConfigError(
                f"defaultModel {self.default_model!r} is not among the models baked into the image "
                f"({', '.join(self.models)}): add it to models, or set modelDownload"
            )
        if not self.instance_types:
            key = "cpuInstanceTypes" if self.cpu_only else "gpuInstanceTypes"
            raise ConfigError(f"context {key} is empty: name at least one instance type, e.g. g5.xlarge")
        if self.job_memory_mib * MIB - WORKER_RUNTIME_RESERVE_BYTES < _min_audio_bytes():
            least = -(-(WORKER_RUNTIME_RESERVE_BYTES + _min_audio_bytes()) // MIB)
            raise ConfigError(
                f"jobMemoryMiB ({self.job_memory_mib}) leaves no room for decoded audio beside the model and runtime "
                f"({WORKER_RUNTIME_RESERVE_BYTES // MIB} MiB): give at least {least}"
            )
        if self.model_download and not self.workers_have_internet:
            raise ConfigError(
                "modelDownload needs internet access, but privateEndpoints with natGateways=0 gives workers none: "
                "bake the models into the image (models) or add a NAT gateway"
            )
        if self.maxv_cpus < self.job_vcpus:
            raise ConfigError(f"maxvCpus ({self.maxv_cpus}) cannot fit one job of jobVcpus ({self.job_vcpus})")
        if self.worker_max_runtime_seconds <= 0:
            raise ConfigError(
                f"jobTimeoutHours ({self.job_timeout_hours}) leaves workers no runtime: they stop receiving "
                f"{WORKER_RUNTIME_HEADROOM_SECONDS} s before the job timeout"
            )
        if self.job_timeout_seconds < BATCH_MIN_TIMEOUT_SECONDS:
            raise ConfigError("jobTimeoutHours is below Batch's minimum timeout")
        if self.log_retention_days not in CLOUDWATCH_RETENTION:
            raise ConfigError(f"logRetentionDays must be one of {sorted(CLOUDWATCH_RETENTION)}")
        if self.api_burst_limit < self.api_rate_limit:
            raise ConfigError("apiBurstLimit must be at least apiRateLimit")
        if self.api and self.api_auth == "apiKey" and not self.api_key_acknowledged:
            hosts = "only the hosts in apiCallbackHosts" if self.api_callback_hosts else "any public https host"
            raise ConfigError(
                "apiAuth=apiKey: the stack has one API key, shared by every caller, so GET /jobs/{job_id} answers "
                "any job to whoever holds it (API Gateway cannot tell callers' jobs apart), and callbacks may go to "
                f"{hosts}. Use apiAuth=iam for callers that must not see each other's jobs, or accept this with "
                "-c apiKeyAcknowledged=true (and limit callbacks with -c apiCallbackHosts=hooks.example.com)"
            )


# ---------------------------------------------------------------------------------------------- readers


def _raw(get: ContextGetter, key: str) -> Any:
    value = get(key)
    return None if value is None or value == "" else value


def _bool(get: ContextGetter, key: str, default: bool) -> bool:
    value = _raw(get, key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"context {key} must be true or false, got {value!r}")


def _int(get: ContextGetter, key: str, default: int, minimum: int, maximum: int) -> int:
    value = _raw(get, key)
    if value is None:
        return default
    return _checked_int(key, value, minimum, maximum)


def _optional_int(get: ContextGetter, key: str, minimum: int) -> int | None:
    value = _raw(get, key)
    return None if value is None else _checked_int(key, value, minimum, 10**12)


def _checked_int(key: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"context {key} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"context {key} must be an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"context {key} must be between {minimum} and {maximum}, got {number}")
    return number


def _str(get: ContextGetter, key: str, default: str, *, pattern: str | None = None) -> str:
    value = _optional_str(get, key, default, pattern=pattern)
    if value is None:
        raise ConfigError(f"context {key} must not be empty")
    return value


def _optional_str(
    get: ContextGetter, key: str, default: str | None = None, *, pattern: str | None = None
) -> str | None:
    value = _raw(get, key)
    if value is None or value in ("null", "none"):
        return default if value is None else None
    if not isinstance(value, str):
        raise ConfigError(f"context {key} must be a string, got {value!r}")
    if pattern and not re.fullmatch(pattern, value):
        raise ConfigError(f"context {key} {value!r} does not match {pattern}")
    return value


def _choice(get: ContextGetter, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = _optional_str(get, key, default) or default
    if value not in choices:
        raise ConfigError(f"context {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _alarms(get: ContextGetter, key: str, default: str) -> str:
    """``notify`` or ``none``, read as words: the generic readers take ``none`` for an unset value."""
    value = _raw(get, key)
    if value is None:
        return default
    if value not in ("notify", "none"):
        raise ConfigError(f"context {key} must be notify or none, got {value!r}")
    return str(value)


def _json(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return [part.strip() for part in value.split(",") if part.strip()]  # "g5,g6" on the command line


def _names(get: ContextGetter, key: str, default: tuple[str, ...], *, pattern: str | None = None) -> tuple[str, ...]:
    value = _raw(get, key)
    if value is None:
        return default
    value = _json(key, value)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"context {key} must be a list of names, got {value!r}")
    for item in value:
        if pattern and not re.fullmatch(pattern, item):
            raise ConfigError(f"context {key}: {item!r} does not match {pattern}")
    return tuple(value)


def _instance_types(get: ContextGetter, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Explicit EC2 sizes (``g5.xlarge``); a bare family (``g5``) is refused, since Batch would take any size."""
    names = _names(get, key, default)
    for name in names:
        if not re.fullmatch(INSTANCE_TYPE_PATTERN, name):
            raise ConfigError(
                f"context {key}: {name!r} is not an instance type; give explicit sizes such as {name}.xlarge "
                "(a family lets Batch launch any size of it, up to the largest)"
            )
    return names


def _refuse_renamed_keys(get: ContextGetter) -> None:
    for old, (new, example) in RENAMED_KEYS.items():
        value = _raw(get, old)
        if value is not None:
            raise ConfigError(
                f"context {old} was replaced by {new}, which takes explicit instance sizes rather than families "
                f"(got {value!r}): use e.g. -c {new}={','.join(example)}, and remove {old} from cdk.json"
            )


def _min_audio_bytes() -> int:
    return int(WORKER_MIN_DECODED_SECONDS * WORKER_BYTES_PER_AUDIO_SECOND / WORKER_AUDIO_SHARE)


OWN_KEY_PREFIXES: Final = {AUDIO_PREFIX: "audioExpireDays", RESULTS_PREFIX: "resultsExpireDays"}
_LIFECYCLE_KEYS: Final = {"expireAfterDays", "infrequentAccessAfterDays"}


def _lifecycle(value: Any, default: tuple[LifecycleRule, ...]) -> tuple[LifecycleRule, ...]:
    """``{"exports/": {"expireAfterDays": 90}, "archive/": {"infrequentAccessAfterDays": 30}}``."""
    if value is None:
        return default
    value = json.loads(value) if isinstance(value, str) else value
    if not isinstance(value, dict):
        raise ConfigError("context lifecycle must map a key prefix to its rule")
    rules = []
    for prefix, rule in value.items():
        if prefix in OWN_KEY_PREFIXES:
            raise ConfigError(
                f"context lifecycle[{prefix!r}]: {prefix} has its own key, {OWN_KEY_PREFIXES[prefix]}; "
                "lifecycle is for other prefixes"
            )
        if not isinstance(rule, dict) or set(rule) - _LIFECYCLE_KEYS:
            raise ConfigError(f"context lifecycle[{prefix!r}] may only set {sorted(_LIFECYCLE_KEYS)}")
        expire = rule.get("expireAfterDays")
        to_ia = rule.get("infrequentAccessAfterDays")
        key = f"lifecycle[{prefix!r}]"
        expire = None if expire is None else _checked_int(f"{key}.expireAfterDays", expire, 1, 100_000)
        if to_ia is not None:
            to_ia = _checked_int(f"{key}.infrequentAccessAfterDays", to_ia, S3_MIN_IA_TRANSITION_DAYS, 100_000)
        if expire is None and to_ia is None:
            raise ConfigError(f"context {key} sets neither expireAfterDays nor infrequentAccessAfterDays")
        if expire is not None and to_ia is not None and to_ia >= expire:
            raise ConfigError(f"context {key}: infrequentAccessAfterDays must come before expireAfterDays")
        rules.append(LifecycleRule(prefix, expire_after_days=expire, infrequent_access_after_days=to_ia))
    return tuple(rules)


# ---------------------------------------------------------------------------------------------- the manual


@dataclass(frozen=True)
class ContextKey:
    """One context key, as docs/reference/cdk-context.md shows it: ``field`` is the ``InfraConfig`` field it sets
    (the page takes its default from ``InfraConfig()``); ``default`` says it in words where that field does not."""

    meaning: str
    field: str | None = None
    default: str | None = None


# Every key ``InfraConfig.from_context`` reads, in the order the manual lists them; tests/test_docs_reference.py checks
# this table against the keys the reader names.
CONTEXT_KEYS: Final[dict[str, ContextKey]] = {
    "stackName": ContextKey("CloudFormation stack name", "stack_name"),
    "gpuInstanceTypes": ContextKey(
        'explicit single-GPU sizes for Batch (`"g5.xlarge,g6.xlarge"` on the command line). A bare family (`g5`) is '
        "refused: with a family, Batch may launch any size of it, up to 8 GPUs",
        "gpu_instance_types",
    ),
    "cpuOnly": ContextKey("no GPU: CPU sizes, `WHISPER_DEVICE=cpu`, `tiny`/`base` models only", "cpu_only"),
    "cpuInstanceTypes": ContextKey(
        "the CPU sizes `cpuOnly` uses: Sapphire Rapids (`m7i`, `c7i`), whose AMX runs the worker's bf16 encoder "
        "(`WHISPER_CPU_PRECISION`); sizes with 16 GiB, which the default 14 GiB job needs",
        "cpu_instance_types",
    ),
    "spot": ContextKey("spot (`SPOT_PRICE_CAPACITY_OPTIMIZED`) or on-demand (`BEST_FIT_PROGRESSIVE`)", "spot"),
    "maxvCpus": ContextKey("compute environment ceiling (it scales from 0)", "maxv_cpus"),
    "jobVcpus": ContextKey("vCPUs per worker (one GPU each); fits the xlarge sizes above", "job_vcpus"),
    "jobMemoryMiB": ContextKey(
        "memory per worker. It also sets `WHISPER_MAX_DECODED_SECONDS` (half of the memory past 2.5 GiB for the "
        "runtime, at 128 kB per second of audio) and `WHISPER_CONCURRENCY` (how many half-hour files that holds at "
        "once, at most 16, on a GPU or CPUs). Below 2707 MiB is refused; a budget shorter than the 6 h a worker "
        "accepts is warned about at synth",
        "job_memory_mib",
    ),
    "models": ContextKey("checkpoints baked into the image (`MODELS` build arg)", "models"),
    "imageBuild": ContextKey(
        "`local`: `make deploy` builds the worker image with the local Docker (a CDK asset); `codebuild`: CodeBuild "
        "builds it in the account from the repository uploaded to S3, into the stack's own ECR repository, tagged "
        "by content hash, and the deploy waits for it (no Docker needed)",
        "image_build",
    ),
    "keepImages": ContextKey(
        "with `imageBuild=codebuild`: the repository keeps this many newest images (an ECR lifecycle rule)",
        "keep_images",
    ),
    "defaultModel": ContextKey("`WHISPER_DEFAULT_MODEL`", "default_model"),
    "modelDownload": ContextKey("`WHISPER_MODEL_DOWNLOAD`", "model_download"),
    "maxWorkers": ContextKey("scaler: at most this many worker jobs", "max_workers"),
    "messagesPerWorker": ContextKey("scaler: one worker job per this many messages", "messages_per_worker"),
    "maxIdleSeconds": ContextKey(
        "a worker exits after this long without a message (`WHISPER_MAX_IDLE_SECONDS`)", "max_idle_seconds"
    ),
    "visibilityTimeoutSeconds": ContextKey("the jobs queue's visibility timeout", "visibility_timeout_seconds"),
    "maxReceiveCount": ContextKey(
        "after that many receives a message goes to the DLQ (kept 14 days)", "max_receive_count"
    ),
    "queueRetentionDays": ContextKey("how long an unprocessed job waits", "queue_retention_days"),
    "jobTimeoutHours": ContextKey("a worker's lifetime cap", "job_timeout_hours"),
    "jobRetryAttempts": ContextKey(
        "Batch retries of a worker job; they are for spot reclaims only", "job_retry_attempts"
    ),
    "runnableTimeoutMinutes": ContextKey(
        "cancel a worker job stuck without capacity (the scaler submits a new one)", "runnable_timeout_minutes"
    ),
    "amiId": ContextKey("pin an exact ECS AL2023 (NVIDIA) AMI instead of the latest", "ami_id"),
    "rootVolumeGiB": ContextKey("root disk of each instance", "root_volume_gib"),
    "vpcId": ContextKey("use an existing VPC (its private subnets); unset: a new one", "vpc_id"),
    "natGateways": ContextKey("NAT gateways of a new VPC; `0` puts workers in public subnets", "nat_gateways"),
    "maxAzs": ContextKey("availability zones of a new VPC", "max_azs"),
    "audioExpireDays": ContextKey(
        "uploads under `audio/` are deleted this many days after upload", "audio_expire_days"
    ),
    "resultsExpireDays": ContextKey(
        "transcripts and `result.json` under `results/` are deleted this many days after they were written; `0` "
        "keeps them",
        "results_expire_days",
    ),
    "noncurrentVersionExpireDays": ContextKey(
        "the bucket is versioned: an overwritten or deleted object's old version is kept this many days, then deleted",
        "noncurrent_expire_days",
    ),
    "lifecycle": ContextKey(
        "expiry and Standard-IA transition for other prefixes (`audio/` and `results/` have their own keys)",
        "lifecycle",
    ),
    "removalPolicy": ContextKey(
        "`destroy` deletes the bucket with the stack (only when empty)",
        default=f"`{'retain' if InfraConfig().retain_data else 'destroy'}`",
    ),
    "webhookSecretName": ContextKey("the webhook secret `make deploy` looks up", "webhook_secret_name"),
    "webhookSecretArn": ContextKey(
        "the webhook secret's complete ARN (with the suffix Secrets Manager adds)",
        default=f"`{SECRET_ENV_ARN}` from the environment, else none",
    ),
    "extraAudioBuckets": ContextKey("other buckets the worker may read `s3://` audio from", "extra_audio_buckets"),
    "kmsKeyArns": ContextKey(
        "customer-managed KMS key ARNs (`arn:aws:kms:…:key/…`, not aliases). The worker role gets `kms:Decrypt` on "
        "them through S3 (SSE-KMS audio in `extraAudioBuckets`), and, with a webhook secret, the execution role gets "
        "it through Secrets Manager",
        "kms_key_arns",
    ),
    "privateEndpoints": ContextKey(
        "interface endpoints for SQS, ECR (api, dkr), CloudWatch Logs, ECS (ecs, ecs-agent, ecs-telemetry) and, with "
        "a webhook secret, Secrets Manager, in the workers' subnets and open only to the workers. With "
        "`natGateways=0` the workers go in isolated subnets with no internet at all: only `s3://` audio, no callbacks "
        "to the internet, no `modelDownload`. They cost about $7 a month each per AZ. If the VPC already has an "
        "interface endpoint with private DNS for one of these services, leave `privateEndpoints` off: a second one "
        "with private DNS conflicts, and CloudFormation refuses it",
        "private_endpoints",
    ),
    "alarmEmail": ContextKey("email subscription to the alarm topic", "alarm_email"),
    "alarmTopicArn": ContextKey(
        "an existing SNS topic (paging, chat) that every alarm notifies as well as the stack's own topic",
        "alarm_topic_arn",
    ),
    "alarms": ContextKey(
        "`notify`: `make deploy` refuses to deploy unless `alarmEmail` or `alarmTopicArn` is set; `none` deploys "
        "with alarms that notify no one (a trial)",
        "alarms",
    ),
    "workerHoursAlarm": ContextKey(
        "the `WorkersRunningLong` cost guard: workers have run without a break for this many hours",
        "worker_hours_alarm",
    ),
    "oldestMessageAlarmMinutes": ContextKey("age alarm threshold", "oldest_message_alarm_minutes"),
    "metricsNamespace": ContextKey("`WHISPER_METRICS_NAMESPACE` and the dashboard's", "metrics_namespace"),
    "logRetentionDays": ContextKey("retention of all log groups", "log_retention_days"),
    "api": ContextKey("the HTTPS endpoint", "api"),
    "apiAuth": ContextKey("`iam` (SigV4) or `apiKey` (usage plan)", "api_auth"),
    "apiRateLimit": ContextKey("stage throttling: requests per second", "api_rate_limit"),
    "apiBurstLimit": ContextKey("stage throttling: burst", "api_burst_limit"),
    "apiQuotaPerDay": ContextKey("daily quota for the API key", "api_quota_per_day"),
    "apiCallbackHosts": ContextKey(
        "lower-case host names that `callback_url` of a job sent through the HTTPS API may name "
        "(`https://HOST[:port]/...`); anything else is refused with 400 before it reaches the queue. Empty: any URL "
        "the contract accepts",
        "api_callback_hosts",
    ),
    "apiKeyAcknowledged": ContextKey(
        "`apiAuth=apiKey` is refused without it: one key is shared by every caller, so any key holder can read any "
        "job's result by its id, and callbacks go wherever `apiCallbackHosts` allows",
        "api_key_acknowledged",
    ),
}
