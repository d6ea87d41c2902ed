"""Where workers run: the VPC, a managed EC2 Batch compute environment on GPU (or CPU) instances, a job queue
and the worker's job definition, built from the repository's ``Dockerfile``.

Network: workers take no inbound traffic and send only HTTPS (AWS APIs, ECR, audio URLs, callbacks); S3 traffic
stays on the VPC's gateway endpoint. ``privateEndpoints`` adds interface endpoints for everything else a worker
calls, so isolated subnets without a NAT gateway work (then only ``s3://`` audio and no callbacks to the internet).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jsii
from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import BATCH_STOP_GRACE_SECONDS, INTERRUPTION_NOTICE_DIR, InfraConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# Kept out of the image's build context (and out of the asset hash): local tooling, caches, the infra itself.
BUILD_CONTEXT_EXCLUDES = (
    ".git",
    ".venv",
    ".cdk",
    "cdk.out",
    "cdk.json",
    "cdk.context.json",
    "cdk-outputs.json",
    "infra",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "node_modules",
)
ROOT_DEVICE = "/dev/xvda"  # the ECS-optimized AL2023 AMIs' root volume
SPOT_RECLAIM_REASON = batch.Reason.SPOT_INSTANCE_RECLAIMED  # statusReason "Host EC2*"
HTTPS = ec2.Port.tcp(443)
# Batch accepts launch template user data only as MIME multipart; it adds its own parts (cluster name, GPU setup).
# On the two-minute spot interruption notice the ECS agent drains the instance, so Batch places no new worker on a
# host about to go. Draining does not stop a running Batch job, so the host's watcher (host/interruption-watch.sh,
# a systemd service) hands the notice to the worker, which finishes what ends in time and releases the rest. The
# agent's stop timeout is what Batch allows between SIGTERM and SIGKILL; the worker's grace stays inside it.
INTERRUPTION_WATCH = Path(__file__).resolve().parent / "host" / "interruption-watch.sh"
WATCH_SERVICE = "whisper-batch-interruption-watch"
# Containers may not reach the instance metadata service (host/block-imds.sh): the rule goes in at boot and again
# whenever Docker (re)starts, through a drop-in on docker.service.
BLOCK_IMDS = Path(__file__).resolve().parent / "host" / "block-imds.sh"
BLOCK_IMDS_COMMAND = "whisper-batch-block-imds"


def instance_setup_script() -> str:
    """The user data part that configures the ECS agent, keeps containers off the instance metadata service and
    installs the interruption watcher."""
    watcher = INTERRUPTION_WATCH.read_text()
    block_imds = BLOCK_IMDS.read_text()
    return f"""#!/bin/bash
echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config
echo ECS_CONTAINER_STOP_TIMEOUT={BATCH_STOP_GRACE_SECONDS}s >> /etc/ecs/ecs.config
echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config
cat > /usr/local/bin/{BLOCK_IMDS_COMMAND} <<'BLOCKIMDS'
{block_imds.rstrip()}
BLOCKIMDS
chmod 755 /usr/local/bin/{BLOCK_IMDS_COMMAND}
mkdir -p /etc/systemd/system/docker.service.d
cat > /etc/systemd/system/docker.service.d/{BLOCK_IMDS_COMMAND}.conf <<'DROPIN'
[Service]
ExecStartPost=/usr/local/bin/{BLOCK_IMDS_COMMAND}
DROPIN
/usr/local/bin/{BLOCK_IMDS_COMMAND}
cat > /usr/local/bin/{WATCH_SERVICE} <<'WATCHER'
{watcher.rstrip()}
WATCHER
chmod 755 /usr/local/bin/{WATCH_SERVICE}
cat > /etc/systemd/system/{WATCH_SERVICE}.service <<'UNIT'
[Unit]
Description=whisper-batch: hand EC2 spot interruption notices to the worker
After=network-online.target
[Service]
Environment=NOTICE_DIR={INTERRUPTION_NOTICE_DIR}
ExecStart=/usr/local/bin/{WATCH_SERVICE}
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now --no-block {WATCH_SERVICE}.service
"""


SHELL_SCRIPT_PART = 'text/x-shellscript; charset="us-ascii"'
# How long jobs on old instances may run during an infrastructure update (a new launch template version, instance
# types, AMI) before Batch stops them; the API has accepted up to 360 minutes everywhere (newer regions 7,200).
BATCH_MAX_UPDATE_JOB_MINUTES = 360
# What a worker without a NAT gateway must reach through interface endpoints (S3 goes through the gateway
# endpoint, which also serves ECR's image layers): the queue, image pulls, logs and metrics (EMF), and the ECS
# agent's own services, without which the instance never joins the cluster and jobs wait RUNNABLE.
PRIVATE_ENDPOINT_SERVICES = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
}


class Compute(Construct):
    """GPU Batch workers that scale from zero; the Stack grants ``job_role`` what the worker may touch."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: InfraConfig,
        environment: Mapping[str, str],
        webhook_secret: secretsmanager.ISecret | None,
        log_retention: logs.RetentionDays,
        image: ecs.ContainerImage | None = None,
    ) -> None:
        """``image``: the worker image built elsewhere (infra/image_build.py); None builds it here as a CDK asset."""
        super().__init__(scope, id)
        self.vpc = self._vpc(config, log_retention)
        subnets = ec2.SubnetSelection(subnet_type=_worker_subnet_type(config))
        self.security_group = ec2.SecurityGroup(
            self,
            "WorkerSecurityGroup",
            vpc=self.vpc,
            description="whisper-batch workers: no inbound, HTTPS out",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), HTTPS, "AWS APIs, ECR, audio URLs and callbacks; DNS is not filtered"
        )
        self.endpoint_security_group: ec2.SecurityGroup | None = None  # set with privateEndpoints
        self.endpoints = (
            self._private_endpoints(subnets, with_secrets=webhook_secret is not None)
            if config.private_endpoints
            else {}
        )
        self.launch_template = self._launch_template(config)
        self.compute_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "ComputeEnvironment",
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            instance_types=[ec2.InstanceType(name) for name in config.instance_types],
            use_optimal_instance_classes=False,
            images=[_machine_image(config)],
            spot=config.spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if config.spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            minv_cpus=0,
            maxv_cpus=config.maxv_cpus,
            launch_template=self.launch_template,
            update_to_latest_image_version=config.ami_id is None,
            # Updated in place (an infrastructure update: Batch's service-linked role and a BEST_FIT_PROGRESSIVE or
            # SPOT_*_OPTIMIZED strategy, both true here), never replaced: a replacement would need a new name and
            # drop the job queue's link for the length of the update.
            replace_compute_environment=False,
            terminate_on_update=False,  # running workers finish (or are stopped after update_timeout, with SIGTERM)
            update_timeout=Duration.minutes(min(config.job_timeout_seconds // 60, BATCH_MAX_UPDATE_JOB_MINUTES)),
        )
        _pin_launch_template_version(self.compute_environment, self.launch_template)
        self.job_queue = batch.JobQueue(
            self,
            "JobQueue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.compute_environment, order=1)
            ],
            priority=1,
            job_state_time_limit_actions=_stuck_job_actions(config),
        )
        self.log_group = logs.LogGroup(
            self, "WorkerLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.job_role = iam.Role(
            self,
            "WorkerRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="whisper-batch worker: jobs queue, DLQ, audio and results in S3",
        )
        self.container = batch.EcsEc2ContainerDefinition(
            self,
            "WorkerContainer",
            image=image or _asset_image(config),
            cpu=config.job_vcpus,
            memory=Size.mebibytes(config.job_memory_mib),
            gpu=None if config.cpu_only else 1,
            environment=dict(environment),
            secrets=(
                {"WHISPER_WEBHOOK_SECRET": batch.Secret.from_secrets_manager(webhook_secret)}
                if webhook_secret
                else None
            ),
            job_role=self.job_role,
            volumes=[
                batch.EcsVolume.host(
                    name="interruption-notice",
                    host_path=INTERRUPTION_NOTICE_DIR,
                    container_path=INTERRUPTION_NOTICE_DIR,
                    readonly=True,
                )
            ],
            logging=ecs.LogDriver.aws_logs(stream_prefix="worker", log_group=self.log_group),
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "WorkerJob",
            container=self.container,
            retry_attempts=config.job_retry_attempts,
            retry_strategies=[
                batch.RetryStrategy.of(batch.Action.RETRY, SPOT_RECLAIM_REASON),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),  # anything else
            ],
            timeout=Duration.seconds(config.job_timeout_seconds),  # the worker leaves before it: stack.py
            propagate_tags=True,
        )

    def _vpc(self, config: InfraConfig, log_retention: logs.RetentionDays) -> ec2.IVpc:
        if config.vpc_id:
            return ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.vpc_id)
        subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)]
        worker_subnets = _worker_subnet_type(config)
        if worker_subnets != ec2.SubnetType.PUBLIC:
            subnets.append(ec2.SubnetConfiguration(name="workers", subnet_type=worker_subnets, cidr_mask=20))
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        return ec2.Vpc(
            self,
            "Vpc",
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=subnets,
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            flow_logs={"All": ec2.FlowLogOptions(destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))},
        )

    def _private_endpoints(
        self, subnets: ec2.SubnetSelection, *, with_secrets: bool
    ) -> dict[str, ec2.InterfaceVpcEndpoint]:
        """Interface endpoints in the workers' subnets, reachable on 443 from the workers' security group only."""
        group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="whisper-batch VPC endpoints: HTTPS from workers",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(self.security_group, HTTPS, "whisper-batch workers")
        self.endpoint_security_group = group
        services = dict(PRIVATE_ENDPOINT_SERVICES)
        if with_secrets:  # ECS fetches the webhook secret for the container before it starts
            services["SecretsManager"] = ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER
        return {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=subnets,
                security_groups=[group],
                open=False,
                private_dns_enabled=True,
            )
            for name, service in services.items()
        }

    def _launch_template(self, config: InfraConfig) -> ec2.LaunchTemplate:
        user_data = ec2.MultipartUserData()
        setup = ec2.MultipartBody.from_raw_body(content_type=SHELL_SCRIPT_PART, body=instance_setup_script())
        user_data.add_part(setup)
        return ec2.LaunchTemplate(
            self,
            "WorkerLaunchTemplate",
            user_data=user_data,
            require_imdsv2=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )


def _asset_image(config: InfraConfig) -> ecs.ContainerImage:
    """Built by the deploying machine's Docker and pushed to the CDK bootstrap repository."""
    return ecs.ContainerImage.from_asset(
        str(REPO_ROOT),
        file="Dockerfile",  # its ENTRYPOINT is `whisper-worker run`: the job adds no command
        platform=ecr_assets.Platform.LINUX_AMD64,
        build_args={"MODELS": " ".join(config.models)},  # official checkpoints baked into the image
        exclude=list(BUILD_CONTEXT_EXCLUDES),
    )


def _worker_subnet_type(config: InfraConfig) -> ec2.SubnetType:
    """Isolated behind VPC endpoints, private behind NAT (a new VPC with NAT, or an existing VPC), else public."""
    if not config.workers_have_internet:
        return ec2.SubnetType.PRIVATE_ISOLATED
    if config.vpc_id or config.nat_gateways:
        return ec2.SubnetType.PRIVATE_WITH_EGRESS
    return ec2.SubnetType.PUBLIC


def _pin_launch_template_version(
    environment: batch.ManagedEc2EcsComputeEnvironment, template: ec2.LaunchTemplate
) -> None:
    """Name the launch template's version number, not just its id (CDK renders only the id, i.e. ``$Default``).

    A changed template gets a new version number, so the compute environment's properties change and
    CloudFormation runs an infrastructure update that rolls the new user data out; with the id alone (or
    ``$Latest``/``$Default``) the template changes but the compute environment never hears of it."""
    resource = environment.node.default_child
    assert isinstance(resource, batch.CfnComputeEnvironment)
    resource.add_property_override("ComputeResources.LaunchTemplate.Version", template.latest_version_number)


def _machine_image(config: InfraConfig) -> batch.EcsMachineImage:
    """The ECS-optimized AL2023 image (NVIDIA variant for GPUs), named explicitly rather than Batch's default."""
    image_type = (
        batch.EcsMachineImageType.ECS_AL2023 if config.cpu_only else batch.EcsMachineImageType.ECS_AL2023_NVIDIA
    )
    return batch.EcsMachineImage(image_type=image_type, image=PinnedImage(config.ami_id) if config.ami_id else None)


@jsii.implements(ec2.IMachineImage)
class PinnedImage:
    """One AMI id in the stack's region (``amiId`` context), for deployments that pin the exact image."""

    def __init__(self, ami_id: str) -> None:
        self.ami_id = ami_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self.ami_id, os_type=ec2.OperatingSystemType.LINUX, user_data=ec2.UserData.for_linux()
        )


def _stuck_job_actions(config: InfraConfig) -> list[batch.JobStateTimeLimitAction]:
    """Cancel worker jobs stuck RUNNABLE: the scaler submits fresh ones while messages wait."""
    return [
        batch.JobStateTimeLimitAction(
            max_time=Duration.minutes(config.runnable_timeout_minutes),
            reason=batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
        ),
        batch.JobStateTimeLimitAction(
            max_time=Duration.minutes(10),
            reason=batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
        ),
    ]
