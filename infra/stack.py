"""One stack: the units from ``infra/*.py`` wired together, every permission granted here, explicitly."""

from __future__ import annotations

from aws_cdk import Annotations, Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.api import SubmitApi
from infra.compute import BUILD_CONTEXT_EXCLUDES, REPO_ROOT, Compute
from infra.config import (
    AUDIO_PREFIX,
    BATCH_STOP_GRACE_SECONDS,
    CLOUDWATCH_RETENTION,
    INTERRUPTION_NOTICE_FILE,
    RESULTS_PREFIX,
    SERVICE_NAME,
    WORKER_MAX_AUDIO_SECONDS,
    InfraConfig,
)
from infra.functions_code import functions_code
from infra.image_build import ImageBuild
from infra.monitoring import Monitoring
from infra.queues import JobQueues
from infra.scaler import LEASE_KEY, LEASE_SECONDS, Scaler
from infra.schema import restrict_callback_hosts, to_draft4
from infra.settle import DLQ_VISIBILITY, DeadLetterSettler
from infra.storage import Storage

# The image's build context is the .dockerignore allow-list; the CodeBuild source asset follows it too.
DOCKERIGNORE = tuple(
    line.strip()
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
SHUTDOWN_GRACE_SECONDS = BATCH_STOP_GRACE_SECONDS - 20  # finish or release the jobs in hand before SIGKILL
STATUS_DOCUMENTS = ("result.json", "status.json")
# kms:Decrypt on the customer keys in kmsKeyArns, only as used through these services: the worker reads SSE-KMS
# audio from S3 (any region: extraAudioBuckets may live elsewhere); ECS injects the webhook secret with the
# execution role, so that role decrypts through Secrets Manager.
S3_VIA_SERVICE = "s3.*.amazonaws.com"


class WhisperBatchStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: InfraConfig, **kwargs: object) -> None:
        super().__init__(
            scope, id, description="whisper-batch: SQS in, Whisper on AWS Batch, transcripts in S3", **kwargs
        )
        self.config = config
        retention = logs.RetentionDays[CLOUDWATCH_RETENTION[config.log_retention_days]]
        self.storage = Storage(
            self,
            "Storage",
            lifecycle=config.bucket_lifecycle,
            noncurrent_expire_days=config.noncurrent_expire_days,
            retain=config.retain_data,
        )
        self.queues = JobQueues(
            self,
            "Queues",
            visibility_timeout=Duration.seconds(config.visibility_timeout_seconds),
            max_receive_count=config.max_receive_count,
            retention=Duration.days(config.queue_retention_days),
            dead_letter_visibility=DLQ_VISIBILITY,
        )
        webhook_secret = self._webhook_secret()
        code = functions_code()
        self.image_build = (
            ImageBuild(
                self,
                "ImageBuild",
                source_path=str(REPO_ROOT),
                exclude=[*BUILD_CONTEXT_EXCLUDES, *DOCKERIGNORE],
                models=config.models,
                keep_images=config.keep_images,
                code=code,
                log_retention=retention,
            )
            if config.image_build == "codebuild"
            else None
        )
        self.compute = Compute(
            self,
            "Compute",
            config=config,
            environment=self._worker_environment(),
            webhook_secret=webhook_secret,
            log_retention=retention,
            image=(
                ecs.ContainerImage.from_ecr_repository(self.image_build.repository, self.image_build.tag)
                if self.image_build
                else None
            ),
        )
        if self.image_build:  # the deploy finishes only once the image the job definition names exists
            self.compute.job_definition.node.add_dependency(self.image_build.build)
        self.scaler = Scaler(
            self,
            "Scaler",
            code=code,
            environment={
                "QUEUE_URL": self.queues.jobs.queue_url,
                "JOB_QUEUE": self.compute.job_queue.job_queue_arn,
                "JOB_DEFINITION": self.compute.job_definition.job_definition_arn,
                "MAX_WORKERS": str(config.max_workers),
                "MESSAGES_PER_WORKER": str(config.messages_per_worker),
                "JOB_NAME_PREFIX": "whisper-worker",
                "LEASE_BUCKET": self.storage.bucket.bucket_name,
                "LEASE_KEY": LEASE_KEY,
                "LEASE_SECONDS": str(LEASE_SECONDS),
                "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            },
            log_retention=retention,
        )
        self.settler = DeadLetterSettler(
            self,
            "Settle",
            code=code,
            dead_letters=self.queues.dlq,
            environment={
                "WHISPER_RESULTS_BUCKET": self.storage.bucket.bucket_name,
                "WHISPER_RESULTS_PREFIX": RESULTS_PREFIX,
                "WHISPER_SETTLED_URL": self.queues.settled.queue_url,
                **({"WHISPER_WEBHOOK_SECRET_ARN": webhook_secret.secret_arn} if webhook_secret else {}),
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            },
            log_retention=retention,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            jobs_queue=self.queues.jobs,
            dlq=self.queues.dlq,
            settled_letters=self.queues.settled,
            scaler=self.scaler.function,
            settler=self.settler.function,
            job_queue_arn=self.compute.job_queue.job_queue_arn,
            namespace=config.metrics_namespace,
            oldest_message_threshold=Duration.minutes(config.oldest_message_alarm_minutes),
            worker_log_group=self.compute.log_group,
            worker_hours_alarm=config.worker_hours_alarm,
            alarm_email=config.alarm_email,
            alarm_topic_arn=config.alarm_topic_arn,
        )
        self.api = self._api(code, retention) if config.api else None
        if self.api:
            self.monitoring.watch_api(self.api.api, self.api.status_function)
        self._grant(webhook_secret)
        self._grant_keys(webhook_secret is not None)
        self._warn_about_long_audio()
        self._outputs()

    # -- wiring ------------------------------------------------------------------------------------------

    def _webhook_secret(self) -> secretsmanager.ISecret | None:
        if not self.config.webhook_secret_arn:
            Annotations.of(self).add_warning_v2(
                "whisper-batch:no-webhook-secret",
                "No webhookSecretArn: workers get no WHISPER_WEBHOOK_SECRET and send no callbacks.",
            )
            return None
        return secretsmanager.Secret.from_secret_complete_arn(self, "WebhookSecret", self.config.webhook_secret_arn)

    def _worker_environment(self) -> dict[str, str]:
        config = self.config
        return {
            "WHISPER_QUEUE_URL": self.queues.jobs.queue_url,
            "WHISPER_DLQ_URL": self.queues.dlq.queue_url,
            "WHISPER_RESULTS_BUCKET": self.storage.bucket.bucket_name,
            "WHISPER_RESULTS_PREFIX": RESULTS_PREFIX,
            "WHISPER_DEFAULT_MODEL": config.default_model,
            "WHISPER_MODEL_DOWNLOAD": str(config.model_download).lower(),
            "WHISPER_DEVICE": "cpu" if config.cpu_only else "cuda",
            # Messages in progress per worker (their audio is fetched while others are on the GPU, and their windows
            # share forward passes) and the decoded audio they may hold together, both from jobMemoryMiB, so that
            # long files wait for room instead of pushing the job past its memory limit (infra/config.py).
            "WHISPER_CONCURRENCY": str(config.worker_concurrency),
            "WHISPER_MAX_DECODED_SECONDS": str(config.worker_max_decoded_seconds),
            "WHISPER_MAX_IDLE_SECONDS": str(config.max_idle_seconds),
            "WHISPER_VISIBILITY_TIMEOUT": str(config.visibility_timeout_seconds),
            "WHISPER_SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
            "WHISPER_INTERRUPTION_FILE": INTERRUPTION_NOTICE_FILE,
            # Stop receiving this long into the job, then finish, release and exit 0 before Batch's timeout.
            "WHISPER_MAX_RUNTIME_SECONDS": str(config.worker_max_runtime_seconds),
            "AWS_REGION": Aws.REGION,
            "WHISPER_METRICS_NAMESPACE": config.metrics_namespace,
        }

    def _api(self, code: lambda_.Code, retention: logs.RetentionDays) -> SubmitApi:
        from worker.contract import JOB_ID_PATTERN, json_schema  # pure pydantic: safe to import at synth time

        config = self.config
        return SubmitApi(
            self,
            "Api",
            queue=self.queues.jobs,
            message_schema=restrict_callback_hosts(to_draft4(json_schema()), config.api_callback_hosts),
            code=code,
            status_environment={
                "RESULTS_BUCKET": self.storage.bucket.bucket_name,
                "RESULTS_PREFIX": RESULTS_PREFIX,
                "JOB_ID_PATTERN": JOB_ID_PATTERN,  # the contract's, so the API and the worker agree
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            },
            auth=config.api_auth,
            rate_limit=config.api_rate_limit,
            burst_limit=config.api_burst_limit,
            quota_per_day=config.api_quota_per_day,
            log_retention=retention,
        )

    def _grant(self, webhook_secret: secretsmanager.ISecret | None) -> None:
        bucket, jobs, dlq = self.storage.bucket, self.queues.jobs, self.queues.dlq
        worker = self.compute.job_role
        jobs.grant_consume_messages(worker)
        _allow(worker, ["sqs:SendMessage"], dlq.queue_arn)  # permanent failures; WHISPER_DLQ_URL names it
        _allow(worker, ["s3:GetObject"], bucket.arn_for_objects(f"{AUDIO_PREFIX}*"))
        # results/<job_id>/...: transcripts, result.json, and the lease results/<job_id>/.claim (put, CAS, delete)
        _allow(
            worker, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], bucket.arn_for_objects(f"{RESULTS_PREFIX}*")
        )
        _allow_list(worker, bucket.bucket_arn)
        for name in self.config.extra_audio_buckets:
            _allow(worker, ["s3:GetObject"], f"arn:{Aws.PARTITION}:s3:::{name}/*")

        scaler = self.scaler.role
        _allow(scaler, ["sqs:GetQueueAttributes"], jobs.queue_arn)
        _allow(scaler, ["s3:GetObject", "s3:PutObject"], bucket.arn_for_objects(LEASE_KEY))  # its lease only
        job_queue, job_definition = self.compute.job_queue, self.compute.job_definition
        _allow(scaler, ["batch:SubmitJob"], job_queue.job_queue_arn, job_definition.job_definition_arn)
        _allow(scaler, ["batch:ListJobs"], "*")  # ListJobs supports no resource-level permissions

        settler = self.settler.role  # consumes the DLQ, writes results/<job>/result.json, sends to settled letters
        dlq.grant_consume_messages(settler)
        _allow(settler, ["sqs:SendMessage"], self.queues.settled.queue_arn)
        _allow(settler, ["s3:GetObject", "s3:PutObject"], bucket.arn_for_objects(f"{RESULTS_PREFIX}*"))
        _allow_list(settler, bucket.bucket_arn)
        if webhook_secret is not None:
            _allow(settler, ["secretsmanager:GetSecretValue"], webhook_secret.secret_arn)

        if self.api:
            jobs.grant_send_messages(self.api.send_role)
            status = self.api.status_role
            _allow(
                status, ["s3:GetObject"], *(bucket.arn_for_objects(f"{RESULTS_PREFIX}*/{n}") for n in STATUS_DOCUMENTS)
            )
            _allow_list(status, bucket.bucket_arn)

    def _grant_keys(self, with_secret: bool) -> None:
        """kms:Decrypt on the customer-managed keys named in kmsKeyArns, through S3 and Secrets Manager only."""
        keys = list(self.config.kms_key_arns)
        if not keys:
            return
        self.compute.job_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=keys,
                conditions={"StringLike": {"kms:ViaService": S3_VIA_SERVICE}},
            )
        )
        if with_secret:
            for role in (self.compute.container.execution_role, self.settler.role):
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=["kms:Decrypt"],
                        resources=keys,
                        conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
                    )
                )

    def _warn_about_long_audio(self) -> None:
        held = self.config.worker_max_decoded_seconds
        if held < WORKER_MAX_AUDIO_SECONDS:
            Annotations.of(self).add_warning_v2(
                "whisper-batch:short-audio-budget",
                f"jobMemoryMiB={self.config.job_memory_mib} holds {held} s of decoded audio: files longer than that "
                f"fail as too long, although workers accept up to {WORKER_MAX_AUDIO_SECONDS} s. Raise jobMemoryMiB.",
            )

    def _outputs(self) -> None:
        CfnOutput(self, "QueueUrl", value=self.queues.jobs.queue_url, description="Send job messages here")
        CfnOutput(self, "DlqUrl", value=self.queues.dlq.queue_url, description="Dead letters, with error_code")
        CfnOutput(
            self,
            "SettledLettersUrl",
            value=self.queues.settled.queue_url,
            description="Settled dead letters (final result.json written, callback sent), kept for redrive",
        )
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="audio/ and results/")
        CfnOutput(self, "JobQueueArn", value=self.compute.job_queue.job_queue_arn, description="Batch job queue")
        CfnOutput(self, "DashboardUrl", value=self.monitoring.dashboard_url, description="CloudWatch dashboard")
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Every alarm goes here")
        log_groups = {
            "WorkerLogGroup": (self.compute.log_group, "Workers' JSON logs (one stream per worker job)"),
            "ScalerLogGroup": (self.scaler.log_group, "The scaler's decisions and back-off"),
            "SettleLogGroup": (self.settler.log_group, "The settle Lambda (dead letters)"),
        }
        if self.api:
            CfnOutput(self, "ApiUrl", value=self.api.url, description="POST jobs, GET jobs/{job_id}")
            log_groups["StatusLogGroup"] = (self.api.status_log_group, "GET /jobs/{job_id}")
            log_groups["ApiAccessLogGroup"] = (self.api.access_logs, "The HTTPS API's access log")
        for key, (group, description) in log_groups.items():
            CfnOutput(self, key, value=group.log_group_name, description=description)


def _allow(role: iam.IRole, actions: list[str], *resources: str) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=list(resources)))


def _allow_list(role: iam.IRole, bucket_arn: str) -> None:
    """Without s3:ListBucket a missing key answers 403, which reads as an outage, not as "no result yet".

    Unconditioned on purpose: a GetObject request carries no ``s3:prefix``, so a prefix-conditioned grant would
    not count when S3 decides between 404 and 403."""
    role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket_arn]))
