"""What ``make deploy`` checks before it deploys, in plain words.

    python -m infra.preflight [-c key=value ...]   # checks; prints the extra `cdk deploy` arguments on success
    python -m infra.preflight outputs FILE         # prints the stack outputs that `cdk deploy` wrote to FILE

It checks Node, Docker (the worker image is built at deploy time), AWS credentials and region, the CDK
bootstrap stack, and the webhook secret, which it resolves to the complete ARN that Batch needs. Then what a fresh
account lacks: the instance types offered in the region and fitting one worker, the EC2 vCPU quotas the compute
environment's maxvCpus needs, room to reserve the scaler's Lambda concurrency; and what encryption and access need:
the keys in kmsKeyArns, the key the secret is encrypted with, the extra audio buckets, an existing VPC's S3
endpoint. "Does not exist" and "you may not look" are told apart: the first stops the deploy, the second warns.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import SCALER_RESERVED_CONCURRENCY, SECRET_ARN_PATTERN, ConfigError, InfraConfig
from worker.aws import error_code

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_NODE_MAJOR = 20
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_QUALIFIER = "hnb659fds"
CREATE_SECRET_HINT = 'aws secretsmanager create-secret --name {name} --secret-string "whsec_$(openssl rand -base64 32)"'

QUOTAS_CONSOLE = "https://{region}.console.aws.amazon.com/servicequotas/home/services/{service}/quotas/{code}"
QUOTA_REQUEST = (
    "aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code} "
    "--desired-value {value} --region {region}"
)
# Memory ECS registers for jobs is below the installed amount: the kernel and platform take a share (Batch's
# "Compute resource memory management": an m4.large's 8192 MiB shows as 7985), more with the NVIDIA driver, and
# the agent keeps 32 MiB. A conservative estimate of what a job may ask for.
ECS_MEMORY_OVERHEAD: Final = 0.06
ECS_RESERVED_MIB: Final = 32
# EC2 counts vCPUs per quota group (the letters that start the family name), separately for spot and on-demand.
GPU_QUOTA_FAMILIES: Final = frozenset({"g", "gr", "vt"})
STANDARD_QUOTA_FAMILIES: Final = frozenset({"a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"})
# Lambda keeps this much concurrency unreserved (or the whole limit, where the limit is lower, as in new accounts).
LAMBDA_MIN_UNRESERVED: Final = 100
LAMBDA_CONCURRENCY_QUOTA: Final = ("Concurrent executions", "L-B99A9384")
LAMBDA_USUAL_LIMIT: Final = 1000
NOT_FOUND_CODES: Final = frozenset(
    {"ResourceNotFoundException", "NotFoundException", "NoSuchBucket", "404", "InvalidVpcID.NotFound"}
)
DENIED_CODES: Final = frozenset({"AccessDeniedException", "AccessDenied", "403", "UnauthorizedOperation"})

Runner = Callable[[Sequence[str]], tuple[int, str]]
# ``session.client``: a service name (and optionally ``region_name``) in, a boto3 client out; tests pass fakes.
ClientFactory = Callable[..., Any]


@dataclass(frozen=True)
class VcpuQuota:
    name: str
    code: str


VCPU_QUOTAS: Final = {
    ("G and VT", True): VcpuQuota("All G and VT Spot Instance Requests", "L-3819A6DF"),
    ("G and VT", False): VcpuQuota("Running On-Demand G and VT instances", "L-DB2E81BA"),
    ("Standard", True): VcpuQuota("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08"),
    ("Standard", False): VcpuQuota("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A"),
}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # deploying would fail or leave workers unable to run
    warnings: list[str] = field(default_factory=list)  # deploying works, but something will bite; said once
    notes: list[str] = field(default_factory=list)
    cdk_args: list[str] = field(default_factory=list)


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stdout or done.stderr).strip()


def context_from(argv: Sequence[str], cdk_json: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """cdk.json's context, overridden by ``-c key=value`` arguments as ``cdk`` itself would."""
    context = dict(json.loads(cdk_json.read_text())["context"])
    for flag, value in itertools.pairwise(argv):
        if flag in ("-c", "--context") and "=" in value:
            key, _, raw = value.partition("=")
            context[key] = raw
    return context


def check(
    session: Any,
    context: Mapping[str, Any],
    env: Mapping[str, str],
    run: Runner = run_command,
    client: ClientFactory | None = None,
) -> Report:
    report = Report()
    client = client or session.client
    _check_node(report, run)
    if context.get("imageBuild") == "codebuild":
        report.notes.append("imageBuild=codebuild: the worker image is built by CodeBuild in the account, not here.")
    else:
        _check_docker(report, run)
    account = _check_credentials(report, session, client)
    if account is None:
        return report
    region = session.region_name
    _check_bootstrap(report, client("ssm"), region, context)
    config = _config(report, context, env)
    _check_secret(report, client, region, context, env, config)
    if config is None:
        return report
    _check_alarm_destination(report, config)
    _check_instance_types(report, client("ec2"), region, config)
    _check_vcpu_quotas(report, client("service-quotas"), region, config)
    _check_scaler_concurrency(report, client("lambda"), region)
    _check_kms_keys(report, client, account, config)
    _check_buckets(report, client, config)
    if config.vpc_id:
        _check_s3_endpoint(report, client("ec2"), region, config)
    return report


def _config(report: Report, context: Mapping[str, Any], env: Mapping[str, str]) -> InfraConfig | None:
    try:
        return InfraConfig.from_context(context.get, env)
    except ConfigError as exc:
        report.problems.append(f"Context: {exc}.")
        return None


def _check_alarm_destination(report: Report, config: InfraConfig) -> None:
    """Alarms nobody receives are no alarms: a destination, or an explicit ``alarms=none``."""
    if config.alarms_reach_someone:
        return
    if config.alarms == "none":
        report.warnings.append(
            "alarms=none: the alarms are created but notify no one (no alarmEmail, no alarmTopicArn). "
            "Fine for a trial; subscribe someone before real traffic."
        )
        return
    report.problems.append(
        "No one would hear the alarms: set -c alarmEmail=you@example.com (an email subscription, confirmed from "
        "the first message) or -c alarmTopicArn=arn:aws:sns:REGION:ACCOUNT:TOPIC (an existing topic: paging, chat), "
        "or say -c alarms=none to deploy without notifications on purpose."
    )


def _check_node(report: Report, run: Runner) -> None:
    code, out = run(["node", "--version"])
    if code != 0:
        report.problems.append("Node.js is not installed: the CDK CLI needs Node 20 or newer (22 recommended).")
        return
    major = int(out.lstrip("v").split(".")[0] or 0)
    if major < MIN_NODE_MAJOR:
        report.problems.append(f"Node.js {out} is too old: the CDK CLI needs Node {MIN_NODE_MAJOR} or newer.")


def _check_docker(report: Report, run: Runner) -> None:
    code, _ = run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if code != 0:
        report.problems.append(
            "Docker is not running: `cdk deploy` builds the worker image from ./Dockerfile and pushes it to ECR."
        )


def _check_credentials(report: Report, session: Any, client: ClientFactory) -> str | None:
    if not session.region_name:
        report.problems.append("No AWS region: set AWS_REGION (or a region in your AWS profile).")
        return None
    try:
        identity = client("sts").get_caller_identity()
    except Exception as exc:  # botocore raises several unrelated types for "no credentials"
        report.problems.append(
            f"No usable AWS credentials ({type(exc).__name__}): run `aws configure` or set a profile."
        )
        return None
    report.notes.append(f"Deploying to account {identity['Account']} in {session.region_name} as {identity['Arn']}.")
    return identity["Account"]


def _check_bootstrap(report: Report, ssm: Any, region: str, context: Mapping[str, Any]) -> None:
    qualifier = context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER
    name = f"/cdk-bootstrap/{qualifier}/version"
    try:
        version = int(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except Exception:
        report.problems.append(
            f"This account/region is not CDK-bootstrapped ({name} is missing): run "
            f"`.cdk/node_modules/.bin/cdk bootstrap aws://ACCOUNT/{region}` once."
        )
        return
    if version < MIN_BOOTSTRAP_VERSION:
        report.problems.append(f"CDK bootstrap version {version} is too old: run `cdk bootstrap` again.")


def _check_secret(
    report: Report,
    client: ClientFactory,
    region: str,
    context: Mapping[str, Any],
    env: Mapping[str, str],
    config: InfraConfig | None,
) -> None:
    wanted = (
        context.get("webhookSecretArn") or env.get("WHISPER_WEBHOOK_SECRET_ARN") or context.get("webhookSecretName")
    )
    if not wanted or wanted in ("null", "none"):
        report.notes.append("No webhook secret configured: workers will not send callbacks.")
        return
    try:
        secret = client("secretsmanager").describe_secret(SecretId=wanted)
    except (ClientError, BotoCoreError) as exc:
        _secret_unreadable(report, region, context, wanted, exc)
        return
    arn = secret["ARN"]
    report.notes.append(f"Webhook secret: {arn}")
    report.cdk_args += ["-c", f"webhookSecretArn={arn}"]
    if config is not None and secret.get("KmsKeyId"):
        _check_secret_key(report, client("kms"), secret["KmsKeyId"], config)


def _secret_unreadable(report: Report, region: str, context: Mapping[str, Any], wanted: str, exc: Exception) -> None:
    code = error_code(exc)
    if code in DENIED_CODES:
        if re.fullmatch(SECRET_ARN_PATTERN, wanted):  # a complete ARN: Batch can use it as is
            report.warnings.append(
                f"Your credentials may not describe the webhook secret {wanted} ({code}); deploying with the ARN "
                "as given. The stack grants the workers' execution role read access to it; if it is encrypted with "
                "a customer-managed KMS key, add that key to kmsKeyArns."
            )
            report.cdk_args += ["-c", f"webhookSecretArn={wanted}"]
            return
        report.problems.append(
            f"The webhook secret {wanted!r} may exist, but your credentials may not describe it ({code}): grant "
            "secretsmanager:DescribeSecret, or pass its complete ARN with -c webhookSecretArn=arn:aws:secretsmanager:"
            "…-AbCdEf (or WHISPER_WEBHOOK_SECRET_ARN)."
        )
        return
    if code in NOT_FOUND_CODES:
        report.problems.append(
            f"The webhook secret {wanted!r} does not exist in {region}; create it with:\n    "
            + CREATE_SECRET_HINT.format(name=context.get("webhookSecretName") or "whisper-batch/webhook")
        )
        return
    report.problems.append(f"Could not look up the webhook secret {wanted!r} in {region}: {code or exc}.")


def _check_secret_key(report: Report, kms: Any, key_id: str, config: InfraConfig) -> None:
    """ECS decrypts the secret with the execution role: a customer key must be in kmsKeyArns, or no worker starts."""
    key = _describe_key(kms, key_id)
    if isinstance(key, str):
        report.warnings.append(
            f"The webhook secret is encrypted with KMS key {key_id}, which your credentials may not describe ({key}). "
            "If it is a customer-managed key, add its ARN to kmsKeyArns."
        )
        return
    if key["KeyManager"] == "CUSTOMER" and key["Arn"] not in config.kms_key_arns:
        report.problems.append(
            f"The webhook secret is encrypted with the customer-managed KMS key {key['Arn']}, which is not in "
            "kmsKeyArns: ECS could not decrypt the secret and every worker would fail to start "
            f"(ResourceInitializationError). Deploy with -c kmsKeyArns={key['Arn']} (add it to cdk.json to keep it)."
        )


def _describe_key(kms: Any, key_id: str) -> dict[str, Any] | str:
    """The key's metadata, or the error code that kept us from reading it."""
    try:
        return dict(kms.describe_key(KeyId=key_id)["KeyMetadata"])
    except (ClientError, BotoCoreError) as exc:
        return error_code(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------------- capacity


def _check_instance_types(report: Report, ec2: Any, region: str, config: InfraConfig) -> None:
    """Each instance type exists in the region, and at least one holds a worker (vCPUs, memory, a GPU)."""
    key = "cpuInstanceTypes" if config.cpu_only else "gpuInstanceTypes"
    wanted = list(config.instance_types)
    try:
        offerings = ec2.describe_instance_type_offerings(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": wanted}]
        )["InstanceTypeOfferings"]
    except (ClientError, BotoCoreError) as exc:
        report.warnings.append(f"Could not list the instance types offered in {region} ({error_code(exc) or exc}).")
        return
    offered = [name for name in wanted if name in {o["InstanceType"] for o in offerings}]
    missing = [name for name in wanted if name not in offered]
    if missing:
        keep = f"-c {key}={','.join(offered)}" if offered else f"-c {key}=<types offered in {region}>"
        report.problems.append(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not offered in {region}: Batch would "
            f"refuse the compute environment. Deploy with {keep}, or in a region that offers them "
            f"(aws ec2 describe-instance-type-offerings --location-type region --region {region})."
        )
    if offered:
        _check_fit(report, ec2, key, offered, config)


def _check_fit(report: Report, ec2: Any, key: str, offered: list[str], config: InfraConfig) -> None:
    try:
        described = ec2.describe_instance_types(InstanceTypes=offered)["InstanceTypes"]
    except (ClientError, BotoCoreError) as exc:
        report.warnings.append(f"Could not describe {', '.join(offered)} ({error_code(exc) or exc}).")
        return
    unfit = {item["InstanceType"]: why for item in described if (why := _misfit(item, config))}
    if len(unfit) == len(described):
        report.problems.append(
            f"No instance type in {key} holds one worker (jobVcpus={config.job_vcpus}, "
            f"jobMemoryMiB={config.job_memory_mib}{', 1 GPU' if not config.cpu_only else ''}): "
            + "; ".join(f"{name} {why}" for name, why in unfit.items())
            + ". Jobs would wait RUNNABLE until cancelled: choose larger types or lower jobMemoryMiB/jobVcpus."
        )
    elif unfit:
        report.warnings.append(
            "Batch will never launch these for a worker: " + "; ".join(f"{n} {why}" for n, why in unfit.items())
        )


def _misfit(item: Mapping[str, Any], config: InfraConfig) -> str:
    """Why one instance type cannot hold a worker, or "" when it can."""
    vcpus = item["VCpuInfo"]["DefaultVCpus"]
    usable = int(item["MemoryInfo"]["SizeInMiB"] * (1 - ECS_MEMORY_OVERHEAD)) - ECS_RESERVED_MIB
    gpus = sum(gpu.get("Count", 0) for gpu in item.get("GpuInfo", {}).get("Gpus", []))
    if vcpus < config.job_vcpus:
        return f"has {vcpus} vCPUs"
    if usable < config.job_memory_mib:
        return f"leaves about {usable} MiB for jobs"
    if not config.cpu_only and gpus < 1:
        return "has no GPU"
    return ""


def quota_group(instance_type: str) -> str | None:
    """Which EC2 vCPU quota an instance type counts against ("G and VT", "Standard"), None where not known here."""
    letters = re.match(r"[a-z]+", instance_type)
    family = letters.group() if letters else ""
    if family in GPU_QUOTA_FAMILIES:
        return "G and VT"
    if family in STANDARD_QUOTA_FAMILIES:
        return "Standard"
    return None


def _check_vcpu_quotas(report: Report, quotas: Any, region: str, config: InfraConfig) -> None:
    """The account's spot (or on-demand) vCPU quota for each group of instance types, against maxvCpus."""
    groups = {quota_group(name) for name in config.instance_types}
    if None in groups:
        report.warnings.append(
            "Not checked: the vCPU quota for "
            + ", ".join(name for name in config.instance_types if quota_group(name) is None)
            + f"; make sure it allows maxvCpus={config.maxv_cpus}."
        )
    for group in sorted(g for g in groups if g is not None):
        quota = VCPU_QUOTAS[(group, config.spot)]
        value, why = _quota_value(quotas, "ec2", quota.code)
        if value is None:
            report.warnings.append(
                f"Could not read the EC2 quota {quota.name!r} ({quota.code}) in {region} ({why}); "
                f"make sure it is at least {config.maxv_cpus} vCPUs."
            )
        elif value < config.job_vcpus:
            report.problems.append(_quota_short(quota, region, value, config, none_fit=True))
        elif value < config.maxv_cpus:
            report.warnings.append(_quota_short(quota, region, value, config, none_fit=False))
        else:
            report.notes.append(f"EC2 quota {quota.name!r}: {value:g} vCPUs (maxvCpus {config.maxv_cpus}).")


def _quota_value(quotas: Any, service: str, code: str) -> tuple[float | None, str]:
    """The applied quota, else AWS's default (quotas never changed have no applied value); or None and why."""
    try:
        return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"]), ""
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) != "NoSuchResourceException":
            return None, error_code(exc) or str(exc)
    try:
        return float(quotas.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"]), ""
    except (ClientError, BotoCoreError) as exc:
        return None, error_code(exc) or str(exc)


def _quota_short(quota: VcpuQuota, region: str, value: float, config: InfraConfig, *, none_fit: bool) -> str:
    needed = config.maxv_cpus
    if none_fit:
        effect = f"not even one worker ({config.job_vcpus} vCPUs) can start: jobs would wait RUNNABLE until cancelled"
        instead = "New accounts start at 0 for GPU instances; the request is free, its approval can take a while."
    else:
        workers = f"{int(value) // config.job_vcpus} of the {needed // config.job_vcpus}"
        effect = f"only {workers} workers maxvCpus allows can run at once"
        instead = f"Or deploy with -c maxvCpus={int(value)} to match the quota."
    return (
        f"EC2 quota {quota.name!r} ({quota.code}) in {region} is {value:g} vCPUs and the compute environment "
        f"may use {needed} (maxvCpus): {effect}. Request {needed} in the Service Quotas console "
        f"({_console(region, 'ec2', quota.code)}) or with:\n    "
        + QUOTA_REQUEST.format(service="ec2", code=quota.code, value=needed, region=region)
        + f"\n{instead}"
    )


def _console(region: str, service: str, code: str) -> str:
    return QUOTAS_CONSOLE.format(region=region, service=service, code=code)


def _check_scaler_concurrency(report: Report, lambda_client: Any, region: str) -> None:
    """Reserving the scaler's concurrency needs LAMBDA_MIN_UNRESERVED left over, which new accounts lack."""
    try:
        limit = lambda_client.get_account_settings()["AccountLimit"]
    except (ClientError, BotoCoreError) as exc:
        report.warnings.append(f"Could not read Lambda's account concurrency ({error_code(exc) or exc}).")
        return
    total, unreserved = int(limit["ConcurrentExecutions"]), int(limit["UnreservedConcurrentExecutions"])
    floor = min(LAMBDA_MIN_UNRESERVED, total)
    if unreserved - SCALER_RESERVED_CONCURRENCY >= floor:
        return
    name, code = LAMBDA_CONCURRENCY_QUOTA
    report.problems.append(
        f"Lambda's concurrency in {region} is {total} with {unreserved} unreserved; reserving "
        f"{SCALER_RESERVED_CONCURRENCY} for the scaler would leave less than the {floor} Lambda keeps unreserved, so "
        f"CloudFormation would fail. Request {name!r} ({code}) = {LAMBDA_USUAL_LIMIT} in the console "
        f"({_console(region, 'lambda', code)}) or with:\n    "
        + QUOTA_REQUEST.format(service="lambda", code=code, value=LAMBDA_USUAL_LIMIT, region=region)
    )


# -------------------------------------------------------------------------------- encryption and access


def _check_kms_keys(report: Report, client: ClientFactory, account: str, config: InfraConfig) -> None:
    for arn in config.kms_key_arns:
        key = _describe_key(client("kms", region_name=arn.split(":")[3]), arn)
        if isinstance(key, str) and key in NOT_FOUND_CODES:
            report.problems.append(f"The KMS key {arn} in kmsKeyArns does not exist (check the region and id).")
        elif isinstance(key, str):
            report.warnings.append(
                f"Your credentials may not describe the KMS key {arn} ({key}). Workers can decrypt with it only if "
                f"its key policy lets IAM policies in account {account} grant its use (the default key policy does)."
            )
        elif key.get("KeyState") != "Enabled":
            report.problems.append(f"The KMS key {arn} in kmsKeyArns is {key.get('KeyState')}: nothing decrypts.")


def _check_buckets(report: Report, client: ClientFactory, config: InfraConfig) -> None:
    s3 = client("s3")
    for name in config.extra_audio_buckets:
        try:
            head = s3.head_bucket(Bucket=name)
        except (ClientError, BotoCoreError) as exc:
            _bucket_unreadable(report, name, error_code(exc) or str(exc))
            continue
        _check_bucket_key(report, s3, client, name, head.get("BucketRegion"), config)


def _bucket_unreadable(report: Report, name: str, code: str) -> None:
    if code in NOT_FOUND_CODES:
        report.problems.append(f"The extra audio bucket {name!r} does not exist: remove it from extraAudioBuckets.")
    elif code in DENIED_CODES:
        report.warnings.append(
            f"The extra audio bucket {name!r} exists, but your credentials may not read it ({code}). The stack "
            "grants the worker role s3:GetObject on it; if it belongs to another account, its bucket policy must "
            "allow that role too, and a customer-managed key on it must be in kmsKeyArns."
        )
    else:
        report.warnings.append(f"Could not check the extra audio bucket {name!r} ({code}).")


def _check_bucket_key(
    report: Report, s3: Any, client: ClientFactory, name: str, region: str | None, config: InfraConfig
) -> None:
    """A bucket whose default encryption is a customer key needs that key in kmsKeyArns for the worker to read."""
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    except (ClientError, BotoCoreError):
        return  # no default encryption we can see: nothing to say
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        key_id = default.get("KMSMasterKeyID")
        if not key_id or not default.get("SSEAlgorithm", "").startswith("aws:kms"):
            continue
        key = _describe_key(client("kms", region_name=region) if region else client("kms"), key_id)
        if isinstance(key, dict) and key["KeyManager"] == "CUSTOMER" and key["Arn"] not in config.kms_key_arns:
            report.warnings.append(
                f"The extra audio bucket {name!r} encrypts with the customer-managed KMS key {key['Arn']}: add it "
                f"with -c kmsKeyArns={key['Arn']}, or workers get AccessDenied reading its audio."
            )


def _check_s3_endpoint(report: Report, ec2: Any, region: str, config: InfraConfig) -> None:
    """An existing VPC: the stack adds no S3 gateway endpoint to it (its route tables are the owner's)."""
    try:
        endpoints = ec2.describe_vpc_endpoints(
            Filters=[
                {"Name": "vpc-id", "Values": [config.vpc_id]},
                {"Name": "service-name", "Values": [f"com.amazonaws.{region}.s3"]},
                {"Name": "vpc-endpoint-type", "Values": ["Gateway"]},
            ]
        )["VpcEndpoints"]
    except (ClientError, BotoCoreError) as exc:
        report.warnings.append(f"Could not list the VPC endpoints of {config.vpc_id} ({error_code(exc) or exc}).")
        return
    if endpoints:
        return
    create = (
        f"aws ec2 create-vpc-endpoint --vpc-id {config.vpc_id} --service-name com.amazonaws.{region}.s3 "
        "--route-table-ids <the worker subnets' route tables>"
    )
    if not config.workers_have_internet:
        report.problems.append(
            f"VPC {config.vpc_id} has no S3 gateway endpoint and workers have no NAT: they could not pull the "
            f"image (ECR serves layers from S3) nor read audio. Create one:\n    {create}"
        )
    else:
        report.warnings.append(
            f"VPC {config.vpc_id} has no S3 gateway endpoint: audio and results go through the NAT gateway, billed "
            f"per GB. The endpoint is free:\n    {create}"
        )


def format_outputs(path: Path) -> str:
    outputs = json.loads(path.read_text())
    lines = []
    for stack, values in outputs.items():
        lines.append(f"{stack} outputs:")
        lines += [f"  {key:<13} {value}" for key, value in sorted(values.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["outputs"]:
        print(format_outputs(Path(args[1])))
        return 0
    report = check(boto3.session.Session(), context_from(args), os.environ)
    for note in report.notes:
        print(f"ok: {note}", file=sys.stderr)
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"MISSING: {problem}", file=sys.stderr)
    if report.problems:
        print("Nothing was deployed. Fix the above and run `make deploy` again.", file=sys.stderr)
        return 1
    print(" ".join(report.cdk_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
