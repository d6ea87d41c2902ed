"""``make deploy``'s preflight: it names what is missing, plainly.

moto plays STS, SSM, Secrets Manager, KMS, S3 and EC2 (its instance type data); moto has no Service Quotas for EC2
and no Lambda account settings, so small fakes answer those (and anything that must answer AccessDenied), handed
to ``check`` through its client factory as real clients would be.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra import preflight

REGION = "eu-west-1"
CONTEXT = {"webhookSecretName": "whisper-batch/webhook", "alarmEmail": "ops@example.com"}
GPU_TYPES = ("g4dn.xlarge", "g5.xlarge", "g6.xlarge")
# vCPUs, MiB, GPUs: as EC2 describes them
INSTANCE_TYPES = {
    "g4dn.xlarge": (4, 16384, 1),
    "g5.xlarge": (4, 16384, 1),
    "g6.xlarge": (4, 16384, 1),
    "g5.2xlarge": (8, 32768, 1),
    "m6i.xlarge": (4, 16384, 0),
    "m7i.xlarge": (4, 16384, 0),
    "c7i.2xlarge": (8, 16384, 0),
    "c6i.xlarge": (4, 8192, 0),
    "c7i.large": (2, 4096, 0),
    "p3.2xlarge": (8, 62464, 1),
}
SPOT_G, ON_DEMAND_G, SPOT_STANDARD, ON_DEMAND_STANDARD = "L-3819A6DF", "L-DB2E81BA", "L-34B43A08", "L-1216C47A"


def denied(operation: str, code: str = "AccessDeniedException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "not authorized"}}, operation)


@dataclass
class FakeEc2:
    offered: Sequence[str] = tuple(INSTANCE_TYPES)
    s3_endpoints: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def describe_instance_type_offerings(self, *, LocationType: str, Filters: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("offerings", (LocationType, Filters)))
        wanted = Filters[0]["Values"]
        return {
            "InstanceTypeOfferings": [
                {"InstanceType": t, "LocationType": LocationType} for t in wanted if t in self.offered
            ]
        }

    def describe_instance_types(self, *, InstanceTypes: list[str]) -> dict[str, Any]:
        described = []
        for name in InstanceTypes:
            vcpus, memory, gpus = INSTANCE_TYPES[name]
            item: dict[str, Any] = {
                "InstanceType": name,
                "VCpuInfo": {"DefaultVCpus": vcpus},
                "MemoryInfo": {"SizeInMiB": memory},
            }
            if gpus:
                item["GpuInfo"] = {"Gpus": [{"Count": gpus, "Manufacturer": "NVIDIA"}]}
            described.append(item)
        return {"InstanceTypes": described}

    def describe_vpc_endpoints(self, *, Filters: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("endpoints", Filters))
        return {"VpcEndpoints": self.s3_endpoints}


@dataclass
class FakeQuotas:
    """Service Quotas: applied values by code; a code absent from ``applied`` was never changed (AWS then
    answers NoSuchResourceException and the default applies)."""

    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    error: ClientError | None = None
    asked: list[tuple[str, str]] = field(default_factory=list)

    def get_service_quota(self, *, ServiceCode: str, QuotaCode: str) -> dict[str, Any]:
        self.asked.append((ServiceCode, QuotaCode))
        if self.error:
            raise self.error
        if QuotaCode not in self.applied:
            raise denied("GetServiceQuota", "NoSuchResourceException")
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.applied[QuotaCode]}}

    def get_aws_default_service_quota(self, *, ServiceCode: str, QuotaCode: str) -> dict[str, Any]:
        if QuotaCode not in self.defaults:
            raise denied("GetAWSDefaultServiceQuota", "NoSuchResourceException")
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.defaults[QuotaCode]}}


@dataclass
class FakeLambda:
    total: int = 1000
    unreserved: int = 1000

    def get_account_settings(self) -> dict[str, Any]:
        limit = {"ConcurrentExecutions": self.total, "UnreservedConcurrentExecutions": self.unreserved}
        return {"AccountLimit": limit}


class Refusing:
    """A client whose every call is refused (``code``): credentials that may not look."""

    def __init__(self, code: str = "AccessDeniedException") -> None:
        self.code = code

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            raise denied(name, self.code)

        return call


def ready_quotas() -> FakeQuotas:
    return FakeQuotas(applied={SPOT_G: 64, ON_DEMAND_G: 64, SPOT_STANDARD: 640, ON_DEMAND_STANDARD: 640})


def clients(session: Any, **fakes: Any) -> preflight.ClientFactory:
    """moto's clients, except the services given: ``ec2``, ``quotas`` (service-quotas), ``lambda_``, ...;
    a service given as None is moto's."""
    fakes = {"ec2": FakeEc2(), "quotas": ready_quotas(), "lambda_": FakeLambda(), **fakes}
    names = {"quotas": "service-quotas", "lambda_": "lambda"}
    by_service = {names.get(k, k): v for k, v in fakes.items() if v is not None}

    def client(name: str, **kwargs: Any) -> Any:
        return by_service[name] if name in by_service else session.client(name, **kwargs)

    return client


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


def ready(session: Any) -> str:
    bootstrap(session)
    return str(
        session.client("secretsmanager").create_secret(Name="whisper-batch/webhook", SecretString="whsec_x")["ARN"]
    )


def check(session: Any, context: dict[str, Any] | None = None, **fakes: Any) -> preflight.Report:
    return preflight.check(session, {**CONTEXT, **(context or {})}, {}, tools(), clients(session, **fakes))


def text(lines: list[str]) -> str:
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the basics


def test_ready_account_resolves_the_secret_arn(session: Any) -> None:
    arn = ready(session)
    report = check(session)
    assert report.problems == [] and report.warnings == []
    assert report.cdk_args == ["-c", f"webhookSecretArn={arn}"]
    assert any("123456789012" in note for note in report.notes)
    assert any("'All G and VT Spot Instance Requests': 64 vCPUs (maxvCpus 64)" in note for note in report.notes)


def test_everything_missing_is_named(session: Any) -> None:
    fresh = FakeQuotas(defaults={SPOT_G: 0, ON_DEMAND_G: 0})  # a new account: GPU quotas at 0, never changed
    report = preflight.check(
        session, CONTEXT, {}, tools(node="", docker=False), clients(session, quotas=fresh, lambda_=FakeLambda(10, 10))
    )
    said = text(report.problems)
    assert "Node.js is not installed" in said
    assert "Docker is not running" in said
    assert "not CDK-bootstrapped" in said and "cdk bootstrap" in said
    assert "webhook secret 'whisper-batch/webhook' does not exist" in said
    assert "aws secretsmanager create-secret --name whisper-batch/webhook" in said
    assert "'All G and VT Spot Instance Requests' (L-3819A6DF) in eu-west-1 is 0 vCPUs" in said
    assert "Lambda's concurrency in eu-west-1 is 10" in said
    assert report.cdk_args == []


def test_old_node_and_old_bootstrap(session: Any) -> None:
    bootstrap(session, "3")
    report = preflight.check(session, {"webhookSecretName": None}, {}, tools(node="v18.19.0"), clients(session))
    said = text(report.problems)
    assert "Node.js v18.19.0 is too old" in said
    assert "bootstrap version 3 is too old" in said


def test_no_region_stops_before_calling_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    report = preflight.check(boto3.session.Session(), CONTEXT, {}, tools())
    assert report.problems == ["No AWS region: set AWS_REGION (or a region in your AWS profile)."]


def test_secret_arn_from_the_environment_is_checked(session: Any) -> None:
    bootstrap(session)
    arn = session.client("secretsmanager").create_secret(Name="other", SecretString="whsec_y")["ARN"]
    report = preflight.check(session, CONTEXT, {"WHISPER_WEBHOOK_SECRET_ARN": arn}, tools(), clients(session))
    assert report.problems == [] and report.cdk_args == ["-c", f"webhookSecretArn={arn}"]


def test_a_bad_context_value_is_a_problem_not_a_traceback(session: Any) -> None:
    ready(session)
    said = text(check(session, {"gpuInstanceClasses": "g5,g6"}).problems)
    assert "Context: context gpuInstanceClasses was replaced by gpuInstanceTypes" in said
    assert "-c gpuInstanceTypes=g4dn.xlarge,g5.xlarge,g6.xlarge" in said


def test_context_reads_cdk_json_and_command_line_overrides(tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"context": {"webhookSecretName": "a", "stackName": "WhisperBatch"}}))
    context = preflight.context_from(["-c", "webhookSecretName=b", "--context", "x=1", "--force"], cdk_json)
    assert context == {"webhookSecretName": "b", "stackName": "WhisperBatch", "x": "1"}


def test_the_repository_cdk_json_passes_with_a_ready_account(session: Any) -> None:
    ready(session)
    context = preflight.context_from(["-c", "alarmEmail=ops@example.com"])
    report = preflight.check(session, context, {}, tools(), clients(session))
    assert report.problems == [] and report.warnings == []


def test_codebuild_image_builds_need_no_local_docker(session: Any) -> None:
    ready(session)
    no_docker = tools(docker=False)
    report = preflight.check(session, {**CONTEXT, "imageBuild": "codebuild"}, {}, no_docker, clients(session))
    assert report.problems == []
    assert any("built by CodeBuild" in note for note in report.notes)
    local = preflight.check(session, CONTEXT, {}, no_docker, clients(session))
    assert "Docker is not running" in text(local.problems)


def test_alarms_that_reach_no_one_stop_the_deploy(session: Any) -> None:
    ready(session)
    said = text(check(session, {"alarmEmail": None}).problems)
    assert "No one would hear the alarms" in said
    assert "-c alarmEmail=" in said and "-c alarmTopicArn=" in said and "-c alarms=none" in said
    # the repository's cdk.json names no destination: it is refused as it stands
    assert "No one would hear the alarms" in text(check(session, preflight.context_from([])).problems)


def test_an_alarm_topic_or_an_explicit_none_lets_the_deploy_go(session: Any) -> None:
    ready(session)
    topic = {"alarmEmail": None, "alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:pager"}
    report = check(session, topic)
    assert report.problems == [] and report.warnings == []
    report = check(session, {"alarmEmail": None, "alarms": "none"})
    assert report.problems == []
    assert any("alarms=none" in warning and "notify no one" in warning for warning in report.warnings)


def test_outputs_are_printed_by_key(tmp_path: Path) -> None:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps({"WhisperBatch": {"QueueUrl": "https://sqs/q", "BucketName": "b"}}))
    assert preflight.format_outputs(path).splitlines() == [
        "WhisperBatch outputs:",
        "  BucketName    b",
        "  QueueUrl      https://sqs/q",
    ]


# ---------------------------------------------------------------------------------------- instance types


def test_instance_types_are_looked_up_in_the_region(session: Any) -> None:
    ready(session)
    ec2 = FakeEc2()
    assert check(session, ec2=ec2).problems == []
    (offerings,) = [args for name, args in ec2.calls if name == "offerings"]
    assert offerings == ("region", [{"Name": "instance-type", "Values": list(GPU_TYPES)}])


def test_a_type_the_region_lacks_is_named_with_the_fix(session: Any) -> None:
    ready(session)
    said = text(check(session, ec2=FakeEc2(offered=("g4dn.xlarge", "g5.xlarge"))).problems)
    assert "g6.xlarge is not offered in eu-west-1" in said
    assert "-c gpuInstanceTypes=g4dn.xlarge,g5.xlarge" in said


def test_offerings_from_moto(session: Any) -> None:
    """moto's own offering data: a type that exists nowhere is refused, a real one passes the fit check."""
    ready(session)
    report = check(session, {"gpuInstanceTypes": "g4dn.xlarge,g9.xlarge"}, ec2=None)
    said = text(report.problems)
    assert "g9.xlarge is not offered in eu-west-1" in said and "-c gpuInstanceTypes=g4dn.xlarge" in said
    assert "holds one worker" not in said and report.warnings == []


def test_no_type_that_holds_a_worker_is_a_problem(session: Any) -> None:
    ready(session)
    said = text(check(session, {"jobMemoryMiB": "15872"}).problems)  # 16 GiB instances leave about 15,368 MiB
    assert "No instance type in gpuInstanceTypes holds one worker (jobVcpus=4, jobMemoryMiB=15872, 1 GPU)" in said
    assert "g4dn.xlarge leaves about 15368 MiB for jobs" in said


def test_the_cpu_trial_on_an_8_gib_type_is_refused(session: Any) -> None:
    ready(session)
    context = {"cpuOnly": "true", "models": "base", "cpuInstanceTypes": "c6i.xlarge"}
    said = text(check(session, context).problems)
    assert "c6i.xlarge leaves about 7668 MiB for jobs" in said


def test_some_types_that_cannot_hold_a_worker_are_a_warning(session: Any) -> None:
    ready(session)
    context = {"cpuOnly": "true", "models": "base", "cpuInstanceTypes": "m6i.xlarge,c7i.large,g4dn.xlarge"}
    report = check(session, context)
    assert report.problems == []
    assert "Batch will never launch these for a worker: c7i.large has 2 vCPUs" in text(report.warnings)


def test_a_gpu_deployment_needs_gpus(session: Any) -> None:
    ready(session)
    said = text(check(session, {"gpuInstanceTypes": "m6i.xlarge"}).problems)
    assert "m6i.xlarge has no GPU" in said


# ------------------------------------------------------------------------------------------------ quotas


def test_quota_group_by_family() -> None:
    assert [preflight.quota_group(t) for t in ("g4dn.xlarge", "g6e.xlarge", "gr6.4xlarge", "vt1.3xlarge")] == [
        "G and VT"
    ] * 4
    assert [preflight.quota_group(t) for t in ("m6i.xlarge", "c7i.2xlarge", "r7iz.large", "i4i.xlarge")] == [
        "Standard"
    ] * 4
    assert [preflight.quota_group(t) for t in ("p4d.24xlarge", "inf2.xlarge", "trn1.2xlarge", "x2idn.16xlarge")] == [
        None
    ] * 4


def test_a_fresh_account_is_told_what_to_request(session: Any) -> None:
    ready(session)
    fresh = FakeQuotas(defaults={SPOT_G: 0})
    (problem,) = check(session, quotas=fresh).problems
    assert problem.startswith("EC2 quota 'All G and VT Spot Instance Requests' (L-3819A6DF) in eu-west-1 is 0 vCPUs")
    assert "the compute environment may use 64 (maxvCpus)" in problem
    assert "not even one worker (4 vCPUs) can start" in problem
    assert "https://eu-west-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-3819A6DF" in problem
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-3819A6DF "
        "--desired-value 64 --region eu-west-1"
    ) in problem
    assert "New accounts start at 0 for GPU instances" in problem


def test_on_demand_checks_its_own_quota(session: Any) -> None:
    ready(session)
    quotas = FakeQuotas(applied={ON_DEMAND_G: 8})
    report = check(session, {"spot": "false", "maxvCpus": "16"}, quotas=quotas)
    assert quotas.asked == [("ec2", ON_DEMAND_G)]
    assert report.problems == []
    (warning,) = report.warnings  # one worker fits, not all that maxvCpus allows: deploy, but say so
    assert "'Running On-Demand G and VT instances' (L-DB2E81BA) in eu-west-1 is 8 vCPUs" in warning
    assert "only 2 of the 4 workers maxvCpus allows can run at once" in warning
    assert "--quota-code L-DB2E81BA --desired-value 16" in warning and "-c maxvCpus=8 to match" in warning


@pytest.mark.parametrize(("spot", "code"), [("true", SPOT_STANDARD), ("false", ON_DEMAND_STANDARD)])
def test_the_cpu_trial_checks_the_standard_quotas(session: Any, spot: str, code: str) -> None:
    ready(session)
    quotas = FakeQuotas(defaults={code: 5})
    context = {"cpuOnly": "true", "models": "base", "spot": spot, "maxvCpus": "4"}
    assert check(session, context, quotas=quotas).problems == []
    assert quotas.asked == [("ec2", code)]


def test_a_quota_that_cannot_be_read_is_a_warning(session: Any) -> None:
    ready(session)
    report = check(session, quotas=FakeQuotas(error=denied("GetServiceQuota")))
    assert report.problems == []
    assert "Could not read the EC2 quota 'All G and VT Spot Instance Requests' (L-3819A6DF)" in text(report.warnings)


def test_types_outside_the_known_quota_groups_are_said_to_be_unchecked(session: Any) -> None:
    ready(session)
    report = check(session, {"gpuInstanceTypes": "g5.xlarge,p3.2xlarge"})
    assert report.problems == []
    assert "Not checked: the vCPU quota for p3.2xlarge" in text(report.warnings)


@pytest.mark.parametrize(("total", "unreserved", "fits"), [(1000, 1000, True), (1000, 100, False), (10, 10, False)])
def test_the_scaler_needs_room_to_reserve_its_concurrency(
    session: Any, total: int, unreserved: int, fits: bool
) -> None:
    ready(session)
    said = text(check(session, lambda_=FakeLambda(total, unreserved)).problems)
    if fits:
        assert said == ""
    else:
        assert f"Lambda's concurrency in eu-west-1 is {total} with {unreserved} unreserved" in said
        assert "--service-code lambda --quota-code L-B99A9384 --desired-value 1000 --region eu-west-1" in said


# ---------------------------------------------------------------------------------- encryption and access


def test_a_secret_we_may_not_describe_is_not_called_missing(session: Any) -> None:
    bootstrap(session)
    said = text(check(session, secretsmanager=Refusing()).problems)
    assert "may exist, but your credentials may not describe it (AccessDeniedException)" in said
    assert "does not exist" not in said


def test_a_complete_secret_arn_we_may_not_describe_is_used_as_given(session: Any) -> None:
    bootstrap(session)
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:whisper-batch/webhook-AbC123"
    report = check(session, {"webhookSecretArn": arn}, secretsmanager=Refusing())
    assert report.problems == [] and report.cdk_args == ["-c", f"webhookSecretArn={arn}"]
    assert "may not describe the webhook secret" in text(report.warnings)


def test_a_secret_under_a_customer_key_needs_that_key_in_kms_key_arns(session: Any) -> None:
    bootstrap(session)
    key = session.client("kms").create_key(Description="webhook")["KeyMetadata"]["Arn"]
    session.client("secretsmanager").create_secret(Name="whisper-batch/webhook", SecretString="whsec_x", KmsKeyId=key)
    said = text(check(session).problems)
    assert f"encrypted with the customer-managed KMS key {key}, which is not in kmsKeyArns" in said
    assert f"-c kmsKeyArns={key}" in said
    assert check(session, {"kmsKeyArns": key}).problems == []


def test_kms_keys_that_are_missing_disabled_or_unreadable(session: Any) -> None:
    ready(session)
    kms = session.client("kms")
    good = kms.create_key()["KeyMetadata"]["Arn"]
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    missing = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    report = check(session, {"kmsKeyArns": json.dumps([good, disabled["Arn"], missing])})
    said = text(report.problems)
    assert f"The KMS key {missing} in kmsKeyArns does not exist" in said
    assert f"The KMS key {disabled['Arn']} in kmsKeyArns is Disabled" in said
    assert good not in said and report.warnings == []
    refused = check(session, {"kmsKeyArns": good}, kms=Refusing())
    assert refused.problems == []
    assert f"may not describe the KMS key {good} (AccessDeniedException)" in text(refused.warnings)
    assert "account 123456789012" in text(refused.warnings)


def test_extra_audio_buckets_missing_forbidden_or_under_a_customer_key(session: Any) -> None:
    ready(session)
    s3 = session.client("s3")
    s3.create_bucket(Bucket="partner-audio", CreateBucketConfiguration={"LocationConstraint": REGION})
    key = session.client("kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(
        Bucket="partner-audio",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]
        },
    )
    report = check(session, {"extraAudioBuckets": "partner-audio,no-such-audio"})
    assert "The extra audio bucket 'no-such-audio' does not exist" in text(report.problems)
    assert f"'partner-audio' encrypts with the customer-managed KMS key {key}" in text(report.warnings)
    assert check(session, {"extraAudioBuckets": "partner-audio", "kmsKeyArns": key}).warnings == []
    forbidden = check(session, {"extraAudioBuckets": "partner-audio"}, s3=Refusing("403"))
    assert forbidden.problems == []
    assert "'partner-audio' exists, but your credentials may not read it (403)" in text(forbidden.warnings)


def test_an_existing_vpc_without_an_s3_endpoint(session: Any) -> None:
    ready(session)
    vpc = {"vpcId": "vpc-0123456789abcdef0"}
    ec2 = FakeEc2()
    report = check(session, vpc, ec2=ec2)
    assert report.problems == []
    assert "VPC vpc-0123456789abcdef0 has no S3 gateway endpoint: audio and results go through the NAT" in text(
        report.warnings
    )
    (filters,) = [args for name, args in ec2.calls if name == "endpoints"]
    assert {"Name": "service-name", "Values": ["com.amazonaws.eu-west-1.s3"]} in filters
    isolated = check(session, {**vpc, "privateEndpoints": "true", "natGateways": "0"})
    assert "could not pull the image (ECR serves layers from S3)" in text(isolated.problems)
    assert check(session, vpc, ec2=FakeEc2(s3_endpoints=[{"VpcEndpointId": "vpce-1"}])).warnings == []
