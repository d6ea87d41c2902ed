"""cdk-nag (AwsSolutions) suppressions: each names the rule, the resource, what it applies to, and why.

Everything else the pack checks is met in the constructs themselves (encryption, SSL-only policies, access logs,
flow logs, IMDSv2, request validation, DLQs, key rotation, log retention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

from infra.config import AUDIO_PREFIX, RESULTS_PREFIX

if TYPE_CHECKING:
    from infra.stack import WhisperBatchStack

# Said wherever apiAuth=apiKey is chosen (here and in README "Deploy").
API_KEY_IS_NOT_AUTHORIZATION = "An API key identifies a caller but does not authorize it."
ECS_INSTANCE_POLICY = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
APIGW_LOGS_POLICY = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


def suppress(stack: WhisperBatchStack) -> None:
    compute = stack.compute
    bucket = _bucket_ref(stack, stack.storage.bucket)
    _add(
        compute.compute_environment,
        "AwsSolutions-IAM4",
        "Batch's ECS container instances need the AWS-maintained ECS instance policy (register with the cluster, "
        "pull images, ship logs); AWS updates it with the ECS agent. Jobs get their own narrow WorkerRole.",
        [ECS_INSTANCE_POLICY],
    )
    _add(
        compute.job_role,
        "AwsSolutions-IAM5",
        "Object keys are per upload and per job (audio/<file>, results/<job_id>/...): the worker may read audio/ "
        "and read, write and delete only under results/; the keys cannot be known when deploying.",
        [f"Resource::{bucket}/{AUDIO_PREFIX}*", f"Resource::{bucket}/{RESULTS_PREFIX}*"]
        + [f"Resource::arn:<AWS::Partition>:s3:::{name}/*" for name in stack.config.extra_audio_buckets],
    )
    _add(
        compute.container,
        "AwsSolutions-IAM5",
        "The execution role's ecr:GetAuthorizationToken has no resource-level permissions (it must be '*'); "
        "image pulls and the secret are scoped to the asset repository and the webhook secret.",
        ["Resource::*"],
    )
    _add(
        stack.scaler.role,
        "AwsSolutions-IAM5",
        "batch:ListJobs supports no resource-level permissions; SubmitJob is limited to our job queue and "
        "job definition.",
        ["Resource::*"],
    )
    _add(
        stack.settler.role,
        "AwsSolutions-IAM5",
        "The settle Lambda reads and writes results/<job_id>/result.json for whichever job a dead letter names; "
        "job ids are not known when deploying, so the grant covers results/ and nothing else in the bucket.",
        [f"Resource::{bucket}/{RESULTS_PREFIX}*"],
    )
    _add(
        stack.queues.settled,
        "AwsSolutions-SQS3",
        "The settled-letters queue is where dead letters rest once settled: nothing consumes it automatically "
        "(operators list and redrive it), so there is no failed consumption to catch in a queue of its own.",
    )
    if stack.api:
        _suppress_api(stack, bucket)
    if stack.image_build:
        _suppress_image_build(stack)


LAMBDA_BASIC_POLICY = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def _suppress_image_build(stack: WhisperBatchStack) -> None:
    build = stack.image_build
    assert build is not None
    project = stack.resolve(stack.get_logical_id(build.project.node.default_child))
    _add(
        build.project,
        "AwsSolutions-IAM5",
        "What CodeBuild's own grants need: reading the source asset (s3:GetObject*, GetBucket*, List* on the CDK "
        "asset bucket), its log streams and report groups (named by the project, suffixes unknown at deploy), the "
        "artifact key's data-key actions, and ecr:GetAuthorizationToken, which has no resource-level permissions.",
        [
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
            "Resource::*",
            RegexAppliesTo(regex="/^Resource::arn:<AWS::Partition>:s3:::.*$/g"),
            f"Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group/<{project}>-*",
            f"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/<{project}>:*",
        ],
    )
    provider = build.node.find_child("Provider")
    _add(
        provider,
        "AwsSolutions-IAM4",
        "CDK's custom-resource Provider framework gives its own short-lived Lambdas the AWS-maintained basic "
        "execution policy (their logs only); our start and check handlers have their own roles.",
        [LAMBDA_BASIC_POLICY],
    )
    _add(
        provider,
        "AwsSolutions-IAM5",
        "The Provider framework invokes the start and check handlers and its own functions by ARN with any "
        "version or alias (<arn>:*), as CDK generates it.",
        [RegexAppliesTo(regex="/^Resource::<ImageBuild.*\\.Arn>:\\*$/g")],
    )
    for rule in ("AwsSolutions-SF1", "AwsSolutions-SF2"):
        _add(
            provider,
            rule,
            "The Provider framework's waiter state machine only polls the image build's check handler during a "
            "deploy; that handler logs each poll, and the build logs to its own log group.",
        )


def _suppress_api(stack: WhisperBatchStack, bucket: str) -> None:
    api = stack.api
    assert api is not None
    _add(
        api.status_role,
        "AwsSolutions-IAM5",
        "GET /jobs/{job_id} reads exactly results/<job_id>/result.json or status.json; job ids are not known "
        "when deploying, and the path wildcard matches only those two file names.",
        [f"Resource::{bucket}/{RESULTS_PREFIX}*/result.json", f"Resource::{bucket}/{RESULTS_PREFIX}*/status.json"],
    )
    _add(
        api.api,
        "AwsSolutions-IAM4",
        "API Gateway's account-wide logging role uses the AWS-maintained push-to-CloudWatch-Logs policy, "
        "as API Gateway documents; it is needed for the access and error logs this stage writes.",
        [APIGW_LOGS_POLICY],
    )
    _add(
        api.api,
        "AwsSolutions-COG4",
        "Callers are backends, not end users: they sign requests with IAM (SigV4) or send an API key "
        "(context apiAuth), so there is no Cognito user pool.",
    )
    _add(
        api.api,
        "AwsSolutions-APIG3",
        "Backend-to-backend API: authenticated, throttled per stage and schema-validated before anything is "
        "queued; a WAFv2 web ACL can be associated with the stage where a deployment wants one.",
    )
    if stack.config.api_auth == "apiKey":
        _add(
            api.api,
            "AwsSolutions-APIG4",
            f"{API_KEY_IS_NOT_AUTHORIZATION} apiAuth=apiKey was chosen in context: anyone holding the key may "
            "submit jobs and read results, so every method requires the key, bound to a throttled usage plan, "
            "and IAM (SigV4) remains the default for callers that need authorization.",
        )


def _add(construct: IConstruct, rule: str, reason: str, applies_to: list[str] | None = None) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)],
        apply_to_children=True,
    )


def _bucket_ref(stack: Stack, bucket: s3.Bucket) -> str:
    """How cdk-nag renders the bucket's ARN in a finding: ``<LogicalId.Arn>``."""
    return f"<{stack.resolve(stack.get_logical_id(bucket.node.default_child))}.Arn>"
