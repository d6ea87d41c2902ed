"""The synthesized WhisperBatch stack: every resource and its security properties, and cdk-nag's verdict.

The stack is synthesized once per variant for the whole module (jsii synthesis is slow): the defaults from
``cdk.json`` (with a webhook secret), a cheap-trial variant (CPU only, on-demand, no NAT, API key, ...), and a
private variant (isolated subnets behind VPC endpoints, customer KMS keys, less memory per worker).
"""

from __future__ import annotations

import email
import email.message
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template
from cdk_nag import AwsSolutionsChecks

from infra.app import build
from infra.nag import API_KEY_IS_NOT_AUTHORIZATION
from infra.schema import to_draft4
from infra.stack import WhisperBatchStack
from worker.contract import json_schema

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:whisper-batch/webhook-AbC123"
KEY_ARNS = [
    "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "arn:aws:kms:us-east-1:210987654321:key/mrk-0123456789abcdef0123456789abcdef",
]
PAGER_TOPIC = "arn:aws:sns:eu-west-1:123456789012:pager"
PRIVATE_MEMORY_MIB = 6144  # 3.5 GiB past the runtime: 14,680 s of decoded audio, under the 6 h the worker accepts
OUTPUT_KEYS = {
    "QueueUrl",
    "DlqUrl",
    "SettledLettersUrl",
    "BucketName",
    "JobQueueArn",
    "DashboardUrl",
    "ApiUrl",
    "AlarmTopicArn",
    "WorkerLogGroup",
    "ScalerLogGroup",
    "SettleLogGroup",
    "StatusLogGroup",
    "ApiAccessLogGroup",
}
WORKER_METRICS = (
    "JobsCompleted",
    "JobsFailed",
    "AudioSeconds",
    "ProcessingSeconds",
    "RealtimeFactor",
    "QueueWaitSeconds",
    "ModelLoadSeconds",
)


@dataclass
class Synth:
    stack: WhisperBatchStack
    template: Template
    outdir: Path

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.to_json()["Resources"]

    def of_type(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def one(self, kind: str) -> dict[str, Any]:
        (resource,) = self.of_type(kind).values()
        return resource

    def logical_id(self, construct: Any) -> str:
        return self.stack.resolve(self.stack.get_logical_id(construct.node.default_child))

    def policy_statements(self, role: Any) -> list[dict[str, Any]]:
        role_id = self.stack.resolve(self.stack.get_logical_id(role.node.default_child))
        statements = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"]["Roles"]:
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
        return statements

    def assets(self) -> dict[str, Any]:
        return json.loads((self.outdir / f"{self.stack.artifact_id}.assets.json").read_text())


def synthesize(outdir: Path, **overrides: Any) -> Synth:
    app = App(context={**CONTEXT, **overrides}, outdir=str(outdir))
    stack = build(app, env={})
    return Synth(stack, Template.from_stack(stack), outdir)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-default"), webhookSecretArn=SECRET_ARN)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(
        tmp_path_factory.mktemp("cdk-trial"),
        stackName="WhisperTrial",
        cpuOnly="true",
        models="tiny.en,base",
        defaultModel="tiny.en",
        spot="false",
        natGateways="0",
        removalPolicy="destroy",
        apiAuth="apiKey",
        apiKeyAcknowledged="true",
        apiCallbackHosts="hooks.example.com,api.partner.example",
        apiQuotaPerDay="1000",
        alarmEmail="ops@example.com",
        amiId="ami-0123456789abcdef0",
        extraAudioBuckets="legacy-audio",
        metricsNamespace="WhisperTrial",
        jobTimeoutHours="2",
        alarmTopicArn=PAGER_TOPIC,
        workerHoursAlarm="4",
    )


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(
        tmp_path_factory.mktemp("cdk-private"),
        webhookSecretArn=SECRET_ARN,
        privateEndpoints="true",
        natGateways="0",
        kmsKeyArns=json.dumps(KEY_ARNS),
        extraAudioBuckets="partner-audio",
        jobMemoryMiB=str(PRIVATE_MEMORY_MIB),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The worker image built by CodeBuild in the account (imageBuild=codebuild)."""
    return synthesize(
        tmp_path_factory.mktemp("cdk-codebuild"),
        webhookSecretArn=SECRET_ARN,
        imageBuild="codebuild",
        keepImages="3",
        models="base,turbo",
    )


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def env_of(job_definition: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in job_definition["Properties"]["ContainerProperties"]["Environment"]}


# --------------------------------------------------------------------------------------------- the stack


def test_stack_name_and_outputs(default: Synth, trial: Synth) -> None:
    assert default.stack.stack_name == "WhisperBatch"
    assert trial.stack.stack_name == "WhisperTrial"  # context stackName
    assert set(default.template.to_json()["Outputs"]) == OUTPUT_KEYS
    outputs = default.template.to_json()["Outputs"]
    assert outputs["QueueUrl"]["Value"] == ref(default.logical_id(default.stack.queues.jobs))
    assert outputs["DlqUrl"]["Value"] == ref(default.logical_id(default.stack.queues.dlq))
    assert outputs["SettledLettersUrl"]["Value"] == ref(default.logical_id(default.stack.queues.settled))
    assert outputs["BucketName"]["Value"] == ref(default.logical_id(default.stack.storage.bucket))
    assert "#dashboards:name=" in json.dumps(outputs["DashboardUrl"]["Value"])
    assert ".execute-api." in json.dumps(outputs["ApiUrl"]["Value"])
    assert outputs["AlarmTopicArn"]["Value"] == ref(default.logical_id(default.stack.monitoring.topic))
    stack, api = default.stack, default.stack.api
    assert api is not None
    for key, group in (
        ("WorkerLogGroup", stack.compute.log_group),
        ("ScalerLogGroup", stack.scaler.log_group),
        ("SettleLogGroup", stack.settler.log_group),
        ("StatusLogGroup", api.status_log_group),
        ("ApiAccessLogGroup", api.access_logs),
    ):
        assert outputs[key]["Value"] == ref(default.logical_id(group)), key


def test_resource_inventory(default: Synth) -> None:
    counts = {kind: len(default.of_type(kind)) for kind in {r["Type"] for r in default.resources.values()}}
    assert counts["AWS::S3::Bucket"] == 2  # data + access logs
    assert counts["AWS::SQS::Queue"] == 3  # jobs, dead letters, settled letters
    assert counts["AWS::Batch::ComputeEnvironment"] == 1
    assert counts["AWS::Batch::JobQueue"] == 1
    assert counts["AWS::Batch::JobDefinition"] == 1
    assert counts["AWS::CloudWatch::Alarm"] == 12  # 10, and two on the HTTPS API
    assert counts["AWS::Lambda::EventSourceMapping"] == 1
    assert counts["AWS::CloudWatch::Dashboard"] == 1
    assert counts["AWS::ApiGateway::Method"] == 2
    assert counts["AWS::EC2::NatGateway"] == 1
    assert counts["AWS::Events::Rule"] == 2  # the scaler's schedule, failed worker jobs


# ---------------------------------------------------------------------------------------------- storage


def test_bucket_is_private_encrypted_logged_and_retained(default: Synth) -> None:
    bucket_id = default.logical_id(default.stack.storage.bucket)
    bucket = default.resources[bucket_id]
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert props["LoggingConfiguration"]["DestinationBucketName"] == ref(
        default.logical_id(default.stack.storage.access_logs)
    )
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def lifecycle_rules(synth: Synth) -> dict[str, dict[str, Any]]:
    props = synth.resources[synth.logical_id(synth.stack.storage.bucket)]["Properties"]
    return {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}


def test_uploads_results_and_old_versions_expire_by_default(default: Synth) -> None:
    props = default.resources[default.logical_id(default.stack.storage.bucket)]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = lifecycle_rules(default)
    assert (rules["prefix-audio"]["Prefix"], rules["prefix-audio"]["ExpirationInDays"]) == ("audio/", 7)
    assert (rules["prefix-results"]["Prefix"], rules["prefix-results"]["ExpirationInDays"]) == ("results/", 30)
    assert not any("Transitions" in rule for rule in rules.values())  # no Standard-IA: results are under 128 KB
    old = rules["noncurrent-versions"]
    assert old["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7} and old["ExpiredObjectDeleteMarker"] is True
    assert all(rule["Status"] == "Enabled" for rule in rules.values())


def test_results_can_be_kept_and_expiry_set_from_context(tmp_path: Path) -> None:
    synth = synthesize(
        tmp_path,
        resultsExpireDays="0",
        audioExpireDays="2",
        noncurrentVersionExpireDays="1",
        lifecycle='{"exports/": {"expireAfterDays": 90}}',
    )
    rules = lifecycle_rules(synth)
    assert "prefix-results" not in rules
    assert rules["prefix-audio"]["ExpirationInDays"] == 2
    assert rules["noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert (rules["prefix-exports"]["Prefix"], rules["prefix-exports"]["ExpirationInDays"]) == ("exports/", 90)


def test_buckets_refuse_plain_http(default: Synth) -> None:
    for policy in default.of_type("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )


def test_trial_bucket_is_destroyed_with_the_stack(trial: Synth) -> None:
    bucket = trial.resources[trial.logical_id(trial.stack.storage.bucket)]
    assert bucket["DeletionPolicy"] == "Delete"


# ----------------------------------------------------------------------------------------------- queues


def test_jobs_queue_and_dlq(default: Synth) -> None:
    jobs = default.resources[default.logical_id(default.stack.queues.jobs)]["Properties"]
    dlq_id = default.logical_id(default.stack.queues.dlq)
    dlq = default.resources[dlq_id]["Properties"]
    assert jobs["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert jobs["VisibilityTimeout"] == 300
    assert jobs["MessageRetentionPeriod"] == 4 * 86400
    assert jobs["ReceiveMessageWaitTimeSeconds"] == 20
    assert jobs["RedrivePolicy"] == {"deadLetterTargetArn": arn(dlq_id), "maxReceiveCount": 8}
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    settled = default.resources[default.logical_id(default.stack.queues.settled)]["Properties"]
    assert settled["SqsManagedSseEnabled"] is True and settled["MessageRetentionPeriod"] == 14 * 86400
    assert "RedrivePolicy" not in settled  # the letters' resting place: nothing consumes it automatically
    policies = default.of_type("AWS::SQS::QueuePolicy").values()
    queues = (default.stack.queues.settled, default.stack.queues.dlq)
    assert {json.dumps(p["Properties"]["Queues"]) for p in policies} >= {
        json.dumps([ref(default.logical_id(queue))]) for queue in queues
    }
    for policy in policies:
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queue_knobs_come_from_context(tmp_path: Path) -> None:
    from infra.config import InfraConfig

    config = InfraConfig.from_context({"visibilityTimeoutSeconds": "900", "maxReceiveCount": "3"}.get, {})
    assert (config.visibility_timeout_seconds, config.max_receive_count) == (900, 3)


# ---------------------------------------------------------------------------------------------- compute


def test_gpu_compute_environment(default: Synth) -> None:
    environment = default.one("AWS::Batch::ComputeEnvironment")["Properties"]
    resources = environment["ComputeResources"]
    assert environment["Type"] == "managed"
    assert resources["Type"] == "SPOT"
    assert resources["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert resources["InstanceTypes"] == ["g4dn.xlarge", "g5.xlarge", "g6.xlarge"]  # sizes, no family, no "optimal"
    assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    assert resources["MinvCpus"] == 0 and resources["MaxvCpus"] == 64
    assert resources["UpdateToLatestImageVersion"] is True
    private = [
        ref(default.stack.resolve(default.stack.get_logical_id(subnet.node.default_child)))
        for subnet in default.stack.compute.vpc.private_subnets
    ]
    assert resources["Subnets"] == private


def test_workers_launch_with_imdsv2_and_encrypted_disks(default: Synth) -> None:
    data = default.one("AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 100, "VolumeType": "gp3"},
        }
    ]


def user_data(synth: Synth) -> email.message.Message:
    text = synth.one("AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    return email.message_from_string(text)


@pytest.mark.parametrize("name", ["default", "trial", "private"])
def test_spot_reclaims_drain_the_instance(name: str, request: pytest.FixtureRequest) -> None:
    """Batch takes launch template user data only as MIME multipart (it adds its own parts); ours turns on the ECS
    agent's spot draining, so no worker is placed on a host that got its two-minute notice."""
    message = user_data(request.getfixturevalue(name))
    assert message.is_multipart() and message.get_content_type() == "multipart/mixed"
    assert message["MIME-Version"] == "1.0"
    (part,) = message.get_payload()
    assert part.get_content_type() == "text/x-shellscript"
    script = part.get_payload()
    assert script.startswith("#!/bin/bash\n")
    assert "echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config" in script


@pytest.mark.parametrize("name", ["default", "trial"])
def test_instances_give_the_worker_its_stop_grace_and_the_spot_notice(
    name: str, request: pytest.FixtureRequest
) -> None:
    """The agent's SIGTERM-to-SIGKILL time is set explicitly and outlasts the worker's own grace; the instance runs
    the notice watcher, and the worker's container mounts its notice directory read-only and is told the file."""
    synth = request.getfixturevalue(name)
    (part,) = user_data(synth).get_payload()
    script = part.get_payload()
    stop = re.search(r"^echo ECS_CONTAINER_STOP_TIMEOUT=(\d+)s >> /etc/ecs/ecs.config$", script, re.MULTILINE)
    assert stop is not None
    env = env_of(synth.one("AWS::Batch::JobDefinition"))
    assert int(env["WHISPER_SHUTDOWN_GRACE_SECONDS"]) + 15 <= int(stop.group(1))
    assert (ROOT / "infra" / "host" / "interruption-watch.sh").read_text().rstrip() in script
    assert "systemctl enable --now --no-block whisper-batch-interruption-watch.service" in script
    container = synth.one("AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    (volume,) = container["Volumes"]
    (mount,) = container["MountPoints"]
    assert volume["Host"]["SourcePath"] == mount["ContainerPath"] == "/run/whisper-batch"
    assert mount["ReadOnly"] is True and mount["SourceVolume"] == volume["Name"]
    assert env["WHISPER_INTERRUPTION_FILE"] == "/run/whisper-batch/interruption.json"


@pytest.mark.parametrize("name", ["default", "trial", "private"])
def test_containers_cannot_reach_the_instance_metadata_service(name: str, request: pytest.FixtureRequest) -> None:
    """The worker container's traffic to IMDS is dropped in DOCKER-USER (bridged traffic only); the host's own
    traffic (OUTPUT: the ECS agent, the spot notice watcher) is left alone. The rule is set at boot and again
    whenever Docker starts."""
    (script,) = [p.get_payload() for p in user_data(request.getfixturevalue(name)).get_payload()]
    block = (ROOT / "infra" / "host" / "block-imds.sh").read_text()
    assert block.rstrip() in script
    assert 'iptables -w -I DOCKER-USER 1 -d "$IMDS" -j DROP' in block and "IMDS=169.254.169.254/32" in block
    assert "OUTPUT" not in block.replace("through OUTPUT", "")  # only the comment names it
    assert "ExecStartPost=/usr/local/bin/whisper-batch-block-imds" in script
    assert "/etc/systemd/system/docker.service.d/whisper-batch-block-imds.conf" in script
    assert "\n/usr/local/bin/whisper-batch-block-imds\n" in script  # and once now, at boot
    assert "ECS_AWSVPC_BLOCK_IMDS=true" in script
    # the watcher still polls IMDS from the host
    assert "http://169.254.169.254" in (ROOT / "infra" / "host" / "interruption-watch.sh").read_text()


def test_launch_template_changes_reach_the_compute_environment(default: Synth) -> None:
    """The compute environment names the template's version number (not $Latest/$Default, nor the id alone), so a
    new version changes the compute environment, and CloudFormation updates it in place (infrastructure update)."""
    environment = default.one("AWS::Batch::ComputeEnvironment")["Properties"]
    template_id = default.logical_id(default.stack.compute.launch_template)
    assert environment["ComputeResources"]["LaunchTemplate"] == {
        "LaunchTemplateId": ref(template_id),
        "Version": {"Fn::GetAtt": [template_id, "LatestVersionNumber"]},
    }
    assert environment["ReplaceComputeEnvironment"] is False  # updated in place, never replaced
    # in-place infrastructure updates need Batch's service-linked role (no ServiceRole given) and this strategy
    assert "ServiceRole" not in environment
    assert environment["ComputeResources"]["AllocationStrategy"] in (
        "BEST_FIT_PROGRESSIVE",
        "SPOT_CAPACITY_OPTIMIZED",
        "SPOT_PRICE_CAPACITY_OPTIMIZED",
    )
    # running workers are not killed by an update; after 6 h (the API's cap) they get SIGTERM and release
    assert environment["UpdatePolicy"] == {"JobExecutionTimeoutMinutes": 360, "TerminateJobsOnUpdate": False}


def test_trial_update_timeout_is_its_job_timeout(trial: Synth) -> None:
    environment = trial.one("AWS::Batch::ComputeEnvironment")["Properties"]
    assert environment["UpdatePolicy"]["JobExecutionTimeoutMinutes"] == 120
    assert environment["ComputeResources"]["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"


def test_worker_security_group_has_no_inbound_rules(default: Synth) -> None:
    group = default.resources[default.logical_id(default.stack.compute.security_group)]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert not default.of_type("AWS::EC2::SecurityGroupIngress")


@pytest.mark.parametrize("name", ["default", "trial", "private"])
def test_workers_send_only_https(name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(name)
    group = synth.resources[synth.logical_id(synth.stack.compute.security_group)]["Properties"]
    (egress,) = group["SecurityGroupEgress"]  # no all-traffic rule: CDK's default was IpProtocol -1
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"], egress["CidrIp"]) == (
        "tcp",
        443,
        443,
        "0.0.0.0/0",
    )
    assert not synth.of_type("AWS::EC2::SecurityGroupEgress")


def test_vpc_has_flow_logs_and_an_s3_endpoint(default: Synth) -> None:
    flow_log = default.one("AWS::EC2::FlowLog")["Properties"]
    assert flow_log["ResourceType"] == "VPC" and flow_log["TrafficType"] == "ALL"
    endpoint = default.one("AWS::EC2::VPCEndpoint")["Properties"]  # the only one: no interface endpoints by default
    assert default.stack.compute.endpoints == {} and default.stack.compute.endpoint_security_group is None
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert "s3" in json.dumps(endpoint["ServiceName"])
    # the workers' route tables carry the S3 prefix list: audio and image layers never cross the NAT
    subnets = default.stack.compute.vpc.private_subnets
    assert subnets and all(
        default.stack.resolve(s.route_table.route_table_id) in endpoint["RouteTableIds"] for s in subnets
    )


def test_private_endpoints_replace_the_nat(private: Synth) -> None:
    endpoints = {
        json.dumps(e["Properties"]["ServiceName"]).split(".")[-1].strip('"]}'): e["Properties"]
        for e in private.of_type("AWS::EC2::VPCEndpoint").values()
    }
    assert set(endpoints) == {
        "s3", "sqs", "api", "dkr", "logs", "ecs", "ecs-agent", "ecs-telemetry", "secretsmanager"
    }  # fmt: skip
    assert endpoints["s3"]["VpcEndpointType"] == "Gateway"
    isolated = [ref(private.logical_id(subnet)) for subnet in private.stack.compute.vpc.isolated_subnets]
    assert isolated and not private.stack.compute.vpc.private_subnets and not private.of_type("AWS::EC2::NatGateway")
    endpoint_group = private.logical_id(private.stack.compute.endpoint_security_group)
    for name, endpoint in endpoints.items():
        if name == "s3":
            continue
        assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True, name
        assert endpoint["SubnetIds"] == isolated, name
        assert endpoint["SecurityGroupIds"] == [{"Fn::GetAtt": [endpoint_group, "GroupId"]}], name
    resources = private.one("AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    assert resources["Subnets"] == isolated
    # the endpoints take HTTPS from the workers' security group, nothing else
    (ingress,) = private.of_type("AWS::EC2::SecurityGroupIngress").values()
    worker_group = private.logical_id(private.stack.compute.security_group)
    assert ingress["Properties"]["GroupId"] == {"Fn::GetAtt": [endpoint_group, "GroupId"]}
    assert ingress["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [worker_group, "GroupId"]}
    assert (ingress["Properties"]["FromPort"], ingress["Properties"]["ToPort"]) == (443, 443)
    group = private.resources[endpoint_group]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert group["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"  # CDK's "no egress" marker


def test_job_queue_feeds_the_compute_environment(default: Synth) -> None:
    queue = default.one("AWS::Batch::JobQueue")["Properties"]
    environment_id = default.logical_id(default.stack.compute.compute_environment)
    assert queue["ComputeEnvironmentOrder"] == [
        {"ComputeEnvironment": {"Fn::GetAtt": [environment_id, "ComputeEnvironmentArn"]}, "Order": 1}
    ]
    reasons = {action["Reason"]: action for action in queue["JobStateTimeLimitActions"]}
    assert reasons["CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"]["MaxTimeSeconds"] == 3600
    assert all(action["Action"] == "CANCEL" and action["State"] == "RUNNABLE" for action in reasons.values())


def test_worker_job_definition(default: Synth) -> None:
    definition = default.one("AWS::Batch::JobDefinition")
    container = definition["Properties"]["ContainerProperties"]
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements == {"GPU": "1", "VCPU": "4", "MEMORY": "14336"}
    assert "Command" not in container  # the image's ENTRYPOINT is `whisper-worker run`
    assert "cdk-hnb659fds-container-assets" in json.dumps(container["Image"])  # built from our Dockerfile
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["JobRoleArn"] == arn(default.logical_id(default.stack.compute.job_role))
    assert container["Secrets"] == [{"Name": "WHISPER_WEBHOOK_SECRET", "ValueFrom": SECRET_ARN}]
    retry = definition["Properties"]["RetryStrategy"]
    assert retry["Attempts"] == 3
    assert retry["EvaluateOnExit"][0] == {"Action": "RETRY", "OnStatusReason": "Host EC2*"}  # spot reclaimed
    assert retry["EvaluateOnExit"][-1] == {"Action": "EXIT", "OnReason": "*"}
    assert definition["Properties"]["Timeout"] == {"AttemptDurationSeconds": 12 * 3600}
    assert definition["Properties"]["PropagateTags"] is True


def test_worker_environment_matches_the_readme(default: Synth) -> None:
    env = env_of(default.one("AWS::Batch::JobDefinition"))
    stack = default.stack
    assert env["WHISPER_QUEUE_URL"] == ref(default.logical_id(stack.queues.jobs))
    assert env["WHISPER_DLQ_URL"] == ref(default.logical_id(stack.queues.dlq))
    assert env["WHISPER_RESULTS_BUCKET"] == ref(default.logical_id(stack.storage.bucket))
    assert env["WHISPER_RESULTS_PREFIX"] == "results/"
    assert env["WHISPER_DEFAULT_MODEL"] == "base"
    assert env["WHISPER_MODEL_DOWNLOAD"] == "false"
    assert env["WHISPER_DEVICE"] == "cuda"
    assert env["WHISPER_CONCURRENCY"] == "16"  # from jobMemoryMiB=14336: the budget holds 26 half-hour files
    assert env["WHISPER_MAX_DECODED_SECONDS"] == "48234"  # (14 GiB - 2.5 GiB) / 2 at 128 kB a second
    assert env["WHISPER_MAX_IDLE_SECONDS"] == "300"
    assert env["WHISPER_VISIBILITY_TIMEOUT"] == "300"  # the queue's own timeout
    assert int(env["WHISPER_SHUTDOWN_GRACE_SECONDS"]) == 100  # the agent SIGKILLs 120 s after SIGTERM
    assert env["WHISPER_METRICS_NAMESPACE"] == "WhisperBatch"  # the dashboard's namespace
    assert "WHISPER_WEBHOOK_SECRET" not in env  # injected from Secrets Manager, never in plain text


def test_codebuild_builds_the_image_into_a_repository_that_keeps_the_last_images(built: Synth, default: Synth) -> None:
    image_build = built.stack.image_build
    assert image_build is not None and default.stack.image_build is None
    assert not default.of_type("AWS::CodeBuild::Project") and not default.of_type("AWS::ECR::Repository")
    repository = built.one("AWS::ECR::Repository")["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    (rule,) = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}
    assert rule["action"] == {"type": "expire"}
    # the repository's files, uploaded as an S3 asset whose content hash is the image tag
    project = built.one("AWS::CodeBuild::Project")["Properties"]
    assert project["Source"]["Type"] == "S3" and project["Environment"]["PrivilegedMode"] is True
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    tag = image_build.tag
    assert variables["IMAGE_TAG"] == tag and re.fullmatch(r"[0-9a-f]{64}", tag)
    assert variables["MODELS"] == "base turbo"
    (spec,) = json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    assert 'docker build --platform linux/amd64 --build-arg MODELS="$MODELS"' in spec
    assert 'docker push "$REPOSITORY_URI:$IMAGE_TAG"' in spec and "describe-images" in spec
    # the deploy waits for the build, and the job definition runs exactly that tag
    (build,) = [r for r in built.resources.values() if r["Type"] == "AWS::CloudFormation::CustomResource"]
    assert build["Properties"]["ImageTag"] == tag
    build_id = built.logical_id(image_build.build)
    definition = built.one("AWS::Batch::JobDefinition")
    assert build_id in definition["DependsOn"]
    image = json.dumps(definition["Properties"]["ContainerProperties"]["Image"])
    assert built.logical_id(image_build.repository) in image and tag in image
    assert not [a for a in built.assets().get("dockerImages", {})]  # nothing for the local Docker to build
    # the source asset holds the Docker build context (.dockerignore's allow-list) and the Dockerfile, nothing else
    source = built.assets()["files"][tag]["source"]["path"]
    names = {p.name for p in (built.outdir / source).iterdir()}
    assert names == {"Dockerfile", "pyproject.toml", "README.md", "worker"}


def test_worker_image_is_built_from_the_repository_dockerfile(default: Synth) -> None:
    (image,) = default.assets()["dockerImages"].values()
    assert image["source"]["dockerFile"] == "Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"
    assert image["source"]["dockerBuildArgs"] == {"MODELS": "base"}
    context = default.outdir / image["source"]["directory"]
    assert (context / "Dockerfile").is_file() and (context / "worker" / "contract" / "__init__.py").is_file()
    for excluded in (".venv", ".git", ".cdk", "cdk.out", "infra", "cdk.json"):
        assert not (context / excluded).exists(), excluded


def test_cpu_only_trial(trial: Synth) -> None:
    resources = trial.one("AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    assert resources["Type"] == "EC2" and resources["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    assert resources["InstanceTypes"] == ["m7i.xlarge", "c7i.2xlarge"]  # AMX: bf16 in hardware
    assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2023", "ImageIdOverride": "ami-0123456789abcdef0"}]
    assert resources["UpdateToLatestImageVersion"] is False  # the AMI is pinned
    public = [
        ref(trial.stack.resolve(trial.stack.get_logical_id(subnet.node.default_child)))
        for subnet in trial.stack.compute.vpc.public_subnets
    ]
    assert resources["Subnets"] == public and not trial.of_type("AWS::EC2::NatGateway")
    definition = trial.one("AWS::Batch::JobDefinition")["Properties"]["ContainerProperties"]
    assert {r["Type"] for r in definition["ResourceRequirements"]} == {"VCPU", "MEMORY"}  # no GPU
    env = env_of(trial.one("AWS::Batch::JobDefinition"))
    assert env["WHISPER_DEVICE"] == "cpu" and env["WHISPER_DEFAULT_MODEL"] == "tiny.en"
    # as many messages at once as on a GPU: with fewer, the engine's passes run half empty on CPUs too
    assert (env["WHISPER_CONCURRENCY"], env["WHISPER_MAX_DECODED_SECONDS"]) == ("16", "48234")
    assert env["WHISPER_METRICS_NAMESPACE"] == "WhisperTrial"
    assert "Secrets" not in definition  # no webhook secret configured


def test_no_nat_leaves_no_idle_network_bill(trial: Synth, default: Synth) -> None:
    """natGateways=0: workers in public subnets with public addresses (their security group still sends only HTTPS
    and takes nothing in); nothing in the network is billed by the hour: no NAT, no Elastic IP, no interface
    endpoint; S3 goes through the free gateway endpoint."""
    resources = trial.one("AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    subnets = [ref(trial.logical_id(subnet)) for subnet in trial.stack.compute.vpc.public_subnets]
    assert resources["Subnets"] == subnets
    for subnet in trial.stack.compute.vpc.public_subnets:
        assert trial.resources[trial.logical_id(subnet)]["Properties"]["MapPublicIpOnLaunch"] is True
    assert not trial.of_type("AWS::EC2::NatGateway") and not trial.of_type("AWS::EC2::EIP")
    endpoints = [e["Properties"] for e in trial.of_type("AWS::EC2::VPCEndpoint").values()]
    assert [e["VpcEndpointType"] for e in endpoints] == ["Gateway"]
    # the default: one NAT gateway (and its Elastic IP), workers in private subnets
    assert len(default.of_type("AWS::EC2::NatGateway")) == 1 and len(default.of_type("AWS::EC2::EIP")) == 1


@pytest.mark.parametrize(("name", "timeout_hours"), [("default", 12), ("trial", 2)])
def test_worker_leaves_before_the_job_timeout(name: str, timeout_hours: int, request: pytest.FixtureRequest) -> None:
    definition = request.getfixturevalue(name).one("AWS::Batch::JobDefinition")
    timeout = definition["Properties"]["Timeout"]["AttemptDurationSeconds"]
    runtime = int(env_of(definition)["WHISPER_MAX_RUNTIME_SECONDS"])
    assert timeout == timeout_hours * 3600
    assert runtime == timeout - 15 * 60  # 600 s to finish the jobs in progress + 300 s to release and exit
    assert 0 < runtime < timeout


def test_worker_limits_follow_a_custom_job_memory(private: Synth) -> None:
    definition = private.one("AWS::Batch::JobDefinition")
    requirements = {
        r["Type"]: r["Value"] for r in definition["Properties"]["ContainerProperties"]["ResourceRequirements"]
    }
    env = env_of(definition)
    assert requirements["MEMORY"] == str(PRIVATE_MEMORY_MIB)
    assert env["WHISPER_MAX_DECODED_SECONDS"] == "14680"  # (6 GiB - 2.5 GiB) / 2 at 128 kB a second: 4 h
    assert env["WHISPER_CONCURRENCY"] == "8"  # eight half-hour files fit that budget at once


def test_a_budget_below_the_longest_accepted_file_is_flagged(private: Synth, default: Synth) -> None:
    said = Annotations.from_stack(private.stack).find_warning("*", Match.string_like_regexp(".*decoded audio.*"))
    (warning,) = [w.entry.data for w in said]
    assert "jobMemoryMiB=6144 holds 14680 s of decoded audio" in warning and "21600" in warning
    assert not Annotations.from_stack(default.stack).find_warning("*", Match.string_like_regexp(".*decoded audio.*"))


# ------------------------------------------------------------------------------------------ permissions


def statements_by_action(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            out.setdefault(action, []).extend(resources)
    return out


def bucket_objects(synth: Synth, suffix: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [arn(synth.logical_id(synth.stack.storage.bucket)), f"/{suffix}"]]}


def test_worker_role_is_least_privilege(default: Synth) -> None:
    stack = default.stack
    statements = default.policy_statements(stack.compute.job_role)
    granted = statements_by_action(statements)
    jobs, dlq = arn(default.logical_id(stack.queues.jobs)), arn(default.logical_id(stack.queues.dlq))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"):
        assert granted[action] == [jobs], action
    assert granted["sqs:SendMessage"] == [dlq]
    assert bucket_objects(default, "audio/*") in granted["s3:GetObject"]
    assert granted["s3:PutObject"] == [bucket_objects(default, "results/*")]
    assert granted["s3:DeleteObject"] == [bucket_objects(default, "results/*")]
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert "Condition" not in listing  # GetObject of a missing key must answer 404, not 403
    assert listing["Resource"] == arn(default.logical_id(stack.storage.bucket))
    assert set(granted) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    }


def test_extra_audio_buckets_are_read_only(trial: Synth) -> None:
    granted = statements_by_action(trial.policy_statements(trial.stack.compute.job_role))
    assert {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::legacy-audio/*"]]} in granted["s3:GetObject"]


def test_only_the_execution_role_and_the_settler_read_the_webhook_secret(default: Synth) -> None:
    execution_role = default.stack.compute.container.execution_role
    granted = statements_by_action(default.policy_statements(execution_role))
    assert granted["secretsmanager:GetSecretValue"] == [SECRET_ARN]
    settler = statements_by_action(default.policy_statements(default.stack.settler.role))
    assert settler["secretsmanager:GetSecretValue"] == [SECRET_ARN]
    for role in (default.stack.compute.job_role, default.stack.scaler.role):
        assert "secretsmanager:GetSecretValue" not in statements_by_action(default.policy_statements(role))


def test_scaler_role_reads_depth_and_submits_to_our_queue_only(default: Synth) -> None:
    stack = default.stack
    granted = statements_by_action(default.policy_statements(stack.scaler.role))
    assert granted["sqs:GetQueueAttributes"] == [arn(default.logical_id(stack.queues.jobs))]
    job_queue = {"Fn::GetAtt": [default.logical_id(stack.compute.job_queue), "JobQueueArn"]}
    assert granted["batch:SubmitJob"] == [job_queue, ref(default.logical_id(stack.compute.job_definition))]
    assert granted["batch:ListJobs"] == ["*"]  # no resource-level permissions exist for ListJobs
    lease = bucket_objects(default, "scaler/lease.json")
    assert granted["s3:GetObject"] == [lease] and granted["s3:PutObject"] == [lease]  # its lease, nothing else
    assert set(granted) == {
        "sqs:GetQueueAttributes",
        "batch:SubmitJob",
        "batch:ListJobs",
        "s3:GetObject",
        "s3:PutObject",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_customer_keys_decrypt_through_s3_and_secrets_manager_only(private: Synth, default: Synth) -> None:
    compute = private.stack.compute
    (worker,) = [s for s in private.policy_statements(compute.job_role) if s["Action"] == "kms:Decrypt"]
    assert worker["Resource"] == KEY_ARNS  # SSE-KMS audio in extraAudioBuckets
    assert worker["Condition"] == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}
    (execution,) = [
        s for s in private.policy_statements(compute.container.execution_role) if s["Action"] == "kms:Decrypt"
    ]
    assert execution["Resource"] == KEY_ARNS  # ECS injects the webhook secret with the execution role
    assert execution["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }
    for role in (default.stack.compute.job_role, default.stack.compute.container.execution_role):
        assert "kms:Decrypt" not in statements_by_action(default.policy_statements(role))  # no kmsKeyArns, no grant


def test_api_roles_send_to_the_queue_and_read_two_documents(default: Synth) -> None:
    api = default.stack.api
    assert api is not None
    send = statements_by_action(default.policy_statements(api.send_role))
    assert send["sqs:SendMessage"] == [arn(default.logical_id(default.stack.queues.jobs))]
    status = statements_by_action(default.policy_statements(api.status_role))
    assert status["s3:GetObject"] == [
        bucket_objects(default, "results/*/result.json"),
        bucket_objects(default, "results/*/status.json"),
    ]
    assert "s3:PutObject" not in status


def test_no_policy_grants_service_wide_wildcards(default: Synth) -> None:
    for policy in default.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if a == "*" or a.endswith(":*")], actions


# ------------------------------------------------------------------------------------------------ scaler


def test_scaler_lambda_runs_every_minute(default: Synth) -> None:
    function_id = default.logical_id(default.stack.scaler.function)
    function = default.resources[function_id]["Properties"]
    assert function["Handler"] == "functions.scaler.handler"
    assert function["Runtime"] == "python3.14" and function["Architectures"] == ["arm64"]
    assert function["Timeout"] < 60  # done before the next tick
    env = function["Environment"]["Variables"]
    assert env["QUEUE_URL"] == ref(default.logical_id(default.stack.queues.jobs))
    assert env["MAX_WORKERS"] == "8" and env["MESSAGES_PER_WORKER"] == "10"
    assert env["JOB_DEFINITION"] == ref(default.logical_id(default.stack.compute.job_definition))
    rule = default.resources[default.logical_id(default.stack.scaler.rule)]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    assert rule["Targets"][0]["Arn"] == arn(function_id)
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_scaler_runs_once_at_a_time_and_never_reruns_an_event(default: Synth) -> None:
    function_id = default.logical_id(default.stack.scaler.function)
    function = default.resources[function_id]["Properties"]
    assert function["ReservedConcurrentExecutions"] == 1
    invoke = default.one("AWS::Lambda::EventInvokeConfig")["Properties"]
    assert invoke["FunctionName"] == ref(function_id) and invoke["Qualifier"] == "$LATEST"
    assert invoke["MaximumRetryAttempts"] == 0 and invoke["MaximumEventAgeInSeconds"] == 60
    env = function["Environment"]["Variables"]  # the lease the code takes (functions/lease.py)
    assert env["LEASE_BUCKET"] == ref(default.logical_id(default.stack.storage.bucket))
    assert env["LEASE_KEY"] == "scaler/lease.json"
    assert function["Timeout"] < float(env["LEASE_SECONDS"]) < 60  # outlives a run, free by the next tick


def test_lambda_bundle_holds_handlers_and_powertools(default: Synth) -> None:
    function = default.resources[default.logical_id(default.stack.scaler.function)]["Properties"]
    key = function["Code"]["S3Key"].removesuffix(".zip")
    bundle = default.outdir / f"asset.{key}"
    assert (bundle / "functions" / "scaler.py").is_file()
    assert (bundle / "functions" / "scaler_logic.py").is_file()
    assert (bundle / "functions" / "lease.py").is_file()
    assert (bundle / "aws_lambda_powertools" / "__init__.py").is_file()
    assert (bundle / "typing_extensions.py").is_file()
    assert not list(bundle.rglob("__pycache__"))


def test_log_groups_expire(default: Synth) -> None:
    groups = default.of_type("AWS::Logs::LogGroup").values()
    assert groups and all(group["Properties"]["RetentionInDays"] == 30 for group in groups)


# ------------------------------------------------------------------------------------------------ settle


def test_settle_lambda_consumes_the_dlq_and_reports_batch_item_failures(default: Synth) -> None:
    stack = default.stack
    function_id = default.logical_id(stack.settler.function)
    function = default.resources[function_id]["Properties"]
    assert function["Handler"] == "functions.settle.handler"
    assert function["Runtime"] == "python3.14" and function["Architectures"] == ["arm64"]
    mapping = default.one("AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["EventSourceArn"] == arn(default.logical_id(stack.queues.dlq))
    assert mapping["FunctionName"] == ref(function_id)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] <= 10 and 0 < mapping["MaximumBatchingWindowInSeconds"] <= 60
    dlq = default.resources[default.logical_id(stack.queues.dlq)]["Properties"]
    assert dlq["VisibilityTimeout"] >= 6 * function["Timeout"]  # AWS's advice for SQS event sources
    env = function["Environment"]["Variables"]
    assert env["WHISPER_RESULTS_BUCKET"] == ref(default.logical_id(stack.storage.bucket))
    assert env["WHISPER_RESULTS_PREFIX"] == "results/"
    assert env["WHISPER_SETTLED_URL"] == ref(default.logical_id(stack.queues.settled))
    assert env["WHISPER_WEBHOOK_SECRET_ARN"] == SECRET_ARN  # the ARN, never the secret itself
    assert "WHISPER_ALLOW_HTTP" not in env and "WHISPER_ALLOW_PRIVATE_URLS" not in env


def test_settle_role_is_least_privilege(default: Synth, trial: Synth) -> None:
    stack = default.stack
    statements = default.policy_statements(stack.settler.role)
    granted = statements_by_action(statements)
    dlq, settled = arn(default.logical_id(stack.queues.dlq)), arn(default.logical_id(stack.queues.settled))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"):
        assert granted[action] == [dlq], action
    assert granted["sqs:SendMessage"] == [settled]
    assert granted["s3:GetObject"] == [bucket_objects(default, "results/*")]
    assert granted["s3:PutObject"] == [bucket_objects(default, "results/*")]
    assert granted["s3:ListBucket"] == [arn(default.logical_id(stack.storage.bucket))]  # a missing key reads 404
    assert granted["secretsmanager:GetSecretValue"] == [SECRET_ARN]
    assert set(granted) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "secretsmanager:GetSecretValue",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    untrusted = statements_by_action(trial.policy_statements(trial.stack.settler.role))
    assert "secretsmanager:GetSecretValue" not in untrusted  # no webhook secret, no grant (and no callbacks)
    trial_env = trial.resources[trial.logical_id(trial.stack.settler.function)]["Properties"]["Environment"]
    assert "WHISPER_WEBHOOK_SECRET_ARN" not in trial_env["Variables"]


def test_settle_role_decrypts_the_secret_through_secrets_manager_only(private: Synth) -> None:
    (statement,) = [s for s in private.policy_statements(private.stack.settler.role) if s["Action"] == "kms:Decrypt"]
    assert statement["Resource"] == KEY_ARNS
    assert "secretsmanager." in json.dumps(statement["Condition"]["StringEquals"]["kms:ViaService"])


def test_settle_errors_alarm(default: Synth) -> None:
    function_id = default.logical_id(default.stack.settler.function)
    alarm = default.resources[default.stack.resolve(default.stack.get_logical_id(
        default.stack.monitoring.settle_alarm.node.default_child))]["Properties"]  # fmt: skip
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": ref(function_id)}]
    assert alarm["AlarmActions"] == [ref(default.logical_id(default.stack.monitoring.topic))]


def test_lambda_bundle_carries_the_settle_modules(default: Synth) -> None:
    function = default.resources[default.logical_id(default.stack.settler.function)]["Properties"]
    bundle = default.outdir / f"asset.{function['Code']['S3Key'].removesuffix('.zip')}"
    assert (bundle / "functions" / "settle.py").is_file()
    for name in ("client/settle.py", "client/deadletters.py", "contract/result.py", "contract/salvage.py"):
        assert (bundle / "worker" / name).is_file(), name
    assert not (bundle / "worker" / "contract" / "message.py").exists()  # pydantic: not in the Lambda runtime
    assert "import" not in (bundle / "worker" / "client" / "__init__.py").read_text()  # a stub, not lazy exports


# -------------------------------------------------------------------------------------------- monitoring


def test_alarms_on_dead_letters_unsettled_letters_oldest_message_and_lambdas(default: Synth) -> None:
    stack = default.stack
    topic = ref(default.logical_id(stack.monitoring.topic))
    monitoring = stack.monitoring

    def alarm(construct: object) -> dict:
        return default.resources[default.logical_id(construct)]["Properties"]

    def queue_name(queue: object) -> dict:
        return {"Fn::GetAtt": [default.logical_id(queue), "QueueName"]}

    # Dead letters: the DLQ and the settled-letters queue together, since settled ones move on within seconds.
    dead = alarm(monitoring.dlq_alarm)
    assert dead["Threshold"] == 0 and dead["ComparisonOperator"] == "GreaterThanThreshold"
    (expression,) = [m for m in dead["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "dlq + settled"
    watched = {m["Id"]: m["MetricStat"]["Metric"] for m in dead["Metrics"] if "MetricStat" in m}
    assert watched["dlq"]["Dimensions"] == [{"Name": "QueueName", "Value": queue_name(stack.queues.dlq)}]
    assert watched["settled"]["Dimensions"] == [{"Name": "QueueName", "Value": queue_name(stack.queues.settled)}]
    assert {m["MetricName"] for m in watched.values()} == {"ApproximateNumberOfMessagesVisible"}
    # A letter left in the DLQ means the settle Lambda is not keeping its promise.
    unsettled = alarm(monitoring.unsettled_alarm)
    assert unsettled["MetricName"] == "ApproximateAgeOfOldestMessage" and unsettled["Threshold"] == 900
    assert unsettled["Dimensions"] == [{"Name": "QueueName", "Value": queue_name(stack.queues.dlq)}]
    oldest = alarm(monitoring.oldest_alarm)
    assert oldest["Threshold"] == 30 * 60
    assert oldest["Dimensions"] == [{"Name": "QueueName", "Value": queue_name(stack.queues.jobs)}]
    for lambda_alarm in (monitoring.scaler_alarm, monitoring.settle_alarm):
        assert alarm(lambda_alarm)["Namespace"] == "AWS/Lambda" and alarm(lambda_alarm)["MetricName"] == "Errors"
    alarms = default.of_type("AWS::CloudWatch::Alarm").values()
    assert len(alarms) == 12
    for each in alarms:
        assert each["Properties"]["AlarmActions"] == [topic] and each["Properties"]["OKActions"] == [topic]


def alarm_props(synth: Synth, construct: object) -> dict[str, Any]:
    return synth.resources[synth.logical_id(construct)]["Properties"]


def lambda_dimension(synth: Synth, function: Any) -> list[dict[str, Any]]:
    return [{"Name": "FunctionName", "Value": ref(synth.logical_id(function))}]


def test_the_scaler_is_watched_for_throttles_missing_runs_and_a_long_hold(default: Synth) -> None:
    monitoring, scaler = default.stack.monitoring, default.stack.scaler.function
    throttled = alarm_props(default, monitoring.scaler_throttled_alarm)
    assert (throttled["Namespace"], throttled["MetricName"], throttled["Threshold"]) == ("AWS/Lambda", "Throttles", 1)
    assert throttled["Dimensions"] == lambda_dimension(default, scaler)
    # Every minute it runs; under 3 runs in each of three 5-minute periods, or none at all (missing data), is an outage.
    missing = alarm_props(default, monitoring.scaler_missing_alarm)
    assert (missing["MetricName"], missing["Period"], missing["Statistic"]) == ("Invocations", 300, "Sum")
    assert (missing["ComparisonOperator"], missing["Threshold"], missing["EvaluationPeriods"]) == (
        "LessThanThreshold",
        3,
        3,
    )
    assert missing["TreatMissingData"] == "breaching"
    # The back-off's flag held for a whole half hour: its minimum over 30 minutes is 1.
    held = alarm_props(default, monitoring.held_back_alarm)
    assert (held["Namespace"], held["MetricName"], held["Statistic"]) == ("WhisperBatch", "ScalerHeldBack", "Minimum")
    assert (held["Period"], held["Threshold"], held["EvaluationPeriods"]) == (1800, 1, 1)
    assert held["Dimensions"] == [{"Name": "service", "Value": "whisper-batch"}]


def test_callbacks_not_delivered_are_counted_from_the_worker_log(default: Synth) -> None:
    (metric_filter,) = default.of_type("AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == ref(default.logical_id(default.stack.compute.log_group))
    assert props["FilterPattern"] == '{ $.message = "callback not delivered" }'
    (transform,) = props["MetricTransformations"]
    assert transform == {
        "MetricNamespace": "WhisperBatch",
        "MetricName": "CallbacksNotDelivered",
        "MetricValue": "1",
        "DefaultValue": 0,
    }
    alarm = alarm_props(default, default.stack.monitoring.callbacks_alarm)
    assert (alarm["MetricName"], alarm["Namespace"], alarm["Period"], alarm["Threshold"]) == (
        "CallbacksNotDelivered",
        "WhisperBatch",
        900,
        4,
    )


def test_workers_running_for_hours_raise_the_cost_guard(default: Synth, trial: Synth) -> None:
    for synth, hours in ((default, 12), (trial, 4)):
        alarm = alarm_props(synth, synth.stack.monitoring.worker_hours_alarm)
        assert (alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == ("ActiveWorkers", "Minimum", 3600)
        assert (alarm["EvaluationPeriods"], alarm["Threshold"]) == (hours, 1)


def test_api_5xx_and_status_errors_alarm_when_the_api_exists(default: Synth) -> None:
    api = default.stack.api
    assert api is not None
    errors = alarm_props(default, default.stack.monitoring.api_5xx_alarm)
    assert (errors["Namespace"], errors["MetricName"], errors["Threshold"]) == ("AWS/ApiGateway", "5XXError", 5)
    assert errors["Dimensions"] == [{"Name": "ApiName", "Value": "Api"}]  # the RestApi's name
    status = alarm_props(default, default.stack.monitoring.status_alarm)
    assert (status["MetricName"], status["Dimensions"]) == ("Errors", lambda_dimension(default, api.status_function))


def test_an_existing_topic_gets_every_alarm_and_failed_job(trial: Synth) -> None:
    own = ref(trial.logical_id(trial.stack.monitoring.topic))
    alarms = trial.of_type("AWS::CloudWatch::Alarm").values()
    assert len(alarms) == 12
    for each in alarms:
        assert each["Properties"]["AlarmActions"] == [own, PAGER_TOPIC]
        assert each["Properties"]["OKActions"] == [own, PAGER_TOPIC]
    rule = alarm_props(trial, trial.stack.monitoring.failed_jobs)
    assert [target["Arn"] for target in rule["Targets"]] == [own, PAGER_TOPIC]


def test_failed_worker_jobs_reach_the_alarm_topic(default: Synth) -> None:
    stack = default.stack
    rule = default.resources[default.logical_id(stack.monitoring.failed_jobs)]["Properties"]
    job_queue = {"Fn::GetAtt": [default.logical_id(stack.compute.job_queue), "JobQueueArn"]}
    assert rule["EventPattern"] == {
        "source": ["aws.batch"],
        "detail-type": ["Batch Job State Change"],
        "detail": {"status": ["FAILED"], "jobQueue": [job_queue]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == ref(default.logical_id(stack.monitoring.topic))
    assert "<detail-statusReason>" in target["InputTransformer"]["InputTemplate"]
    # EventBridge may publish to the topic, and use its key
    policy = json.dumps(default.one("AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"])
    assert "events.amazonaws.com" in policy and "sns:Publish" in policy
    key_policy = default.one("AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    (publishers,) = [s for s in key_policy if "Service" in s["Principal"]]
    assert set(publishers["Principal"]["Service"]) == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    assert set(publishers["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_alarm_topic_is_encrypted_and_ssl_only(default: Synth, trial: Synth) -> None:
    topic = default.one("AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == arn(default.logical_id(default.stack.monitoring.topic.master_key))
    assert default.one("AWS::KMS::Key")["Properties"]["EnableKeyRotation"] is True
    key_policy = json.dumps(default.one("AWS::KMS::Key")["Properties"]["KeyPolicy"])
    assert "cloudwatch.amazonaws.com" in key_policy
    statements = default.one("AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)
    assert not default.of_type("AWS::SNS::Subscription")
    subscription = trial.one("AWS::SNS::Subscription")["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")


def dashboard(synth: Synth) -> list[dict[str, Any]]:
    """The dashboard's widgets, with CloudFormation references replaced by a placeholder."""
    parts = synth.one("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "REF" for part in parts))["widgets"]


def graphed(synth: Synth) -> list[Any]:
    return [metric for widget in dashboard(synth) for metric in widget["properties"]["metrics"]]


def test_dashboard_shows_queue_and_worker_metrics(default: Synth, trial: Synth) -> None:
    titles = {widget["properties"]["title"] for widget in dashboard(default)}
    assert {"Queue depth", "Oldest waiting message (s)", "Dead letters", "Jobs completed / failed / retried"} <= titles
    assert {"Audio seconds transcribed", "Realtime factor"} <= titles
    metrics = graphed(default)
    worker = {m[1] for m in metrics if m[0] == "WhisperBatch" and m[2:4] == ["service", "whisper-batch"]}
    assert worker >= {
        *WORKER_METRICS,
        "JobsRetried",
        "ActiveWorkers",
        "WorkersSubmitted",
        "ScalerHeldBack",
    }  # JobsFailed: the total by service; by code below
    sqs = {m[1] for m in metrics if m[0] == "AWS/SQS"}
    assert sqs >= {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}
    (search,) = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    assert search.startswith('SEARCH(\'{WhisperBatch,error_code,service} MetricName="JobsFailed"')
    trial_metrics = graphed(trial)
    assert any(m[0] == "WhisperTrial" and m[1] == "RealtimeFactor" for m in trial_metrics)  # namespace from context


# --------------------------------------------------------------------------------------------------- api


def test_post_jobs_validates_and_sends_to_sqs(default: Synth) -> None:
    api = default.stack.api
    assert api is not None
    post = next(
        m for m in default.of_type("AWS::ApiGateway::Method").values() if m["Properties"]["HttpMethod"] == "POST"
    )
    props = post["Properties"]
    assert props["AuthorizationType"] == "AWS_IAM"
    integration = props["Integration"]
    assert integration["Type"] == "AWS" and integration["PassthroughBehavior"] == "NEVER"
    assert ":sqs:path/" in json.dumps(integration["Uri"])
    assert integration["Credentials"] == arn(default.logical_id(api.send_role))
    assert integration["RequestTemplates"] == {
        "application/json": "Action=SendMessage&MessageBody=$util.urlEncode($input.body)"
    }
    validator = default.one("AWS::ApiGateway::RequestValidator")["Properties"]
    assert validator["ValidateRequestBody"] is True
    assert props["RequestValidatorId"] == ref(default.stack.resolve(default.stack.get_logical_id(
        api.node.find_child("Validator").node.default_child)))  # fmt: skip
    model = default.one("AWS::ApiGateway::Model")
    assert props["RequestModels"] == {"application/json": ref(next(iter(default.of_type("AWS::ApiGateway::Model"))))}
    assert model["Properties"]["Schema"] == to_draft4(json_schema())
    assert model["Properties"]["Schema"]["$schema"] == "http://json-schema.org/draft-04/schema#"


def test_get_job_reads_results_through_lambda(default: Synth) -> None:
    get = next(m for m in default.of_type("AWS::ApiGateway::Method").values() if m["Properties"]["HttpMethod"] == "GET")
    assert get["Properties"]["AuthorizationType"] == "AWS_IAM"
    assert get["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    assert get["Properties"]["RequestParameters"] == {"method.request.path.job_id": True}
    paths = {r["Properties"]["PathPart"] for r in default.of_type("AWS::ApiGateway::Resource").values()}
    assert paths == {"jobs", "{job_id}"}


def test_stage_is_throttled_and_logged(default: Synth) -> None:
    stage = default.one("AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "v1"
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 10 and settings["ThrottlingBurstLimit"] == 20
    assert settings["LoggingLevel"] == "ERROR" and settings["MetricsEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    api = default.one("AWS::ApiGateway::RestApi")["Properties"]
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_api_can_be_left_out() -> None:
    app = App(context={**CONTEXT, "api": "false"})  # constructed, not synthesized: enough to see what exists
    stack = build(app, env={})
    assert stack.api is None
    assert stack.node.try_find_child("ApiUrl") is None and stack.node.try_find_child("QueueUrl") is not None
    assert stack.node.try_find_child("StatusLogGroup") is None and stack.node.try_find_child("WorkerLogGroup")


def test_api_key_mode(trial: Synth) -> None:
    for method in trial.of_type("AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
        assert method["Properties"]["AuthorizationType"] == "NONE"
    plan = trial.one("AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Throttle"] == {"BurstLimit": 20, "RateLimit": 10}
    assert plan["Quota"] == {"Limit": 1000, "Period": "DAY"}
    assert trial.one("AWS::ApiGateway::UsagePlanKey")


def api_model_schema(synth: Synth) -> dict[str, Any]:
    (model,) = synth.of_type("AWS::ApiGateway::Model").values()
    return model["Properties"]["Schema"]


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://hooks.example.com/whisper", True),
        ("https://api.partner.example:8443/cb?tenant=1", True),
        ("https://hooks.example.com", True),
        ("https://elsewhere.example/hook", False),
        ("https://hooks.example.com.evil.example/hook", False),
        ("https://hooks.example.com@evil.example/hook", False),
        ("http://hooks.example.com/hook", False),
        ("https://hooksXexample.com/hook", False),
    ],
)
def test_api_key_mode_limits_callbacks_to_the_allowed_hosts(trial: Synth, url: str, accepted: bool) -> None:
    """The API's request model refuses (400, before the queue) a callback_url on any other host."""
    import jsonschema

    schema = api_model_schema(trial)
    message = {"job_id": "j1", "audio": "s3://bucket/audio/a.flac", "callback_url": url}
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(message))
    assert (not errors) is accepted, errors
    assert not list(jsonschema.Draft4Validator(schema).iter_errors({"job_id": "j2", "audio": "s3://b/k"}))


def test_without_an_allowlist_the_api_takes_any_callback_the_contract_does(default: Synth) -> None:
    callback = api_model_schema(default)["properties"]["callback_url"]
    assert all("pattern" not in branch for branch in callback["anyOf"])


# ------------------------------------------------------------------------------------------------ cdk-nag


# W3005: CDK adds an explicit DependsOn from each Lambda function to its role (and the role's policy) although a
# GetAtt already orders them; the duplicate is harmless and not ours to remove.
CFN_LINT_IGNORED = ("W3005",)


@pytest.mark.parametrize("name", ["default", "trial", "private", "built"])
def test_cfn_lint_finds_nothing_in_the_synthesized_template(name: str, request: pytest.FixtureRequest) -> None:
    from cfnlint.api import ManualArgs, lint

    synth = request.getfixturevalue(name)
    template = (synth.outdir / f"{synth.stack.artifact_id}.template.json").read_text()
    config = ManualArgs(regions=["eu-west-1", "us-east-1"], ignore_checks=list(CFN_LINT_IGNORED))
    findings = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in lint(template, config=config)]
    assert findings == []
    assert "Resources" in json.loads(template)  # the template that was linted is the stack's


@pytest.mark.parametrize("name", ["default", "trial", "private", "built"])
def test_cdk_nag_has_no_unsuppressed_findings(name: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(name)
    annotations = Annotations.from_stack(synth.stack)
    assert annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []
    assert annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*")) == []


def test_every_suppression_says_why(default: Synth) -> None:
    suppressions = [
        rule
        for resource in default.resources.values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert {rule["id"] for rule in suppressions} == {
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-COG4",
        "AwsSolutions-APIG3",
        "AwsSolutions-SQS3",  # the settled-letters queue, which nothing consumes automatically
    }
    for rule in suppressions:
        assert len(rule["reason"]) >= 60, rule
        if rule["id"].startswith("AwsSolutions-IAM"):
            assert rule["applies_to"], rule  # granular: only the named policy or resource


def test_api_key_suppression_says_a_key_does_not_authorize(trial: Synth, default: Synth) -> None:
    def reasons(synth: Synth, rule: str) -> list[str]:
        return [
            suppression["reason"]
            for resource in synth.resources.values()
            for suppression in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
            if suppression["id"] == rule
        ]

    (reason,) = set(reasons(trial, "AwsSolutions-APIG4"))
    assert reason.startswith(API_KEY_IS_NOT_AUTHORIZATION) and "IAM (SigV4) remains the default" in reason
    assert API_KEY_IS_NOT_AUTHORIZATION == "An API key identifies a caller but does not authorize it."
    assert reasons(default, "AwsSolutions-APIG4") == []  # IAM: nothing to excuse


def test_cdk_nag_is_live(tmp_path: Path) -> None:
    """The same aspect flags a careless bucket, so a clean report above means something."""
    app = App(outdir=str(tmp_path), context={"@aws-cdk/core:annotationsInValidationReport": False})
    canary = Stack(app, "Canary")
    s3.Bucket(canary, "Careless")
    from aws_cdk import Aspects

    Aspects.of(app).add(AwsSolutionsChecks())
    app.synth()
    errors = Annotations.from_stack(canary).find_error("*", Match.string_like_regexp("AwsSolutions-S.*"))
    assert {e.entry.data.split(":")[0] for e in errors} >= {"AwsSolutions-S1", "AwsSolutions-S10"}
