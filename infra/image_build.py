"""``imageBuild=codebuild``: the worker image built in the account, not on the deploying machine.

The repository's build context goes up as an S3 asset (the same files the local build would send to Docker); a
CodeBuild project builds the ``Dockerfile`` and pushes the image to a repository of the stack's own, tagged with the
asset's content hash, so an unchanged worker is not rebuilt. The deploy waits for the build (a Provider framework
custom resource), and the job definition names exactly that tag. The repository keeps the last ``keepImages``
images (an ECR lifecycle rule), tags are immutable, and images are scanned on push.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.functions_code import python_function

BUILD_TIMEOUT = Duration.hours(2)
POLL_INTERVAL = Duration.seconds(30)
# Build only when the tag is new; tags are immutable, so pushing one twice would fail.
BUILD_COMMAND = (
    'if aws ecr describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="$IMAGE_TAG" '
    '>/dev/null 2>&1; then echo "image $IMAGE_TAG exists"; else '
    'docker build --platform linux/amd64 --build-arg MODELS="$MODELS" -t "$REPOSITORY_URI:$IMAGE_TAG" . && '
    'docker push "$REPOSITORY_URI:$IMAGE_TAG"; fi'
)


class ImageBuild(Construct):
    """The repository, the build project and the deploy-time build; ``image`` is what the job definition runs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source_path: str,
        exclude: list[str],
        models: tuple[str, ...],
        keep_images: int,
        code: lambda_.Code,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            removal_policy=RemovalPolicy.DESTROY,
            empty_on_delete=True,
            lifecycle_rules=[
                ecr.LifecycleRule(description=f"keep the last {keep_images} worker images", max_image_count=keep_images)
            ],
        )
        # Docker's ignore rules, so the repository's .dockerignore allow-list applies here too (plus the Dockerfile).
        self.source = s3_assets.Asset(
            self, "Source", path=source_path, exclude=[*exclude, "!Dockerfile"], ignore_mode=IgnoreMode.DOCKER
        )
        self.tag = self.source.asset_hash
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.project = codebuild.Project(
            self,
            "Project",
            description="whisper-batch: build the worker image and push it to the stack's repository",
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.LARGE,
                privileged=True,  # docker build needs the Docker daemon
            ),
            environment_variables={
                "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(value=self.repository.repository_uri),
                "REPOSITORY_NAME": codebuild.BuildEnvironmentVariable(value=self.repository.repository_name),
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.tag),
                "MODELS": codebuild.BuildEnvironmentVariable(value=" ".join(models)),
            },
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "pre_build": {
                            "commands": [
                                'aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS '
                                '--password-stdin "${REPOSITORY_URI%%/*}"'
                            ]
                        },
                        "build": {"commands": [BUILD_COMMAND]},
                    },
                }
            ),
            encryption_key=kms.Key(
                self,
                "ArtifactKey",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.DESTROY,
                description="whisper-batch: encrypts the image build's artifacts",
            ),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)),
            timeout=BUILD_TIMEOUT,
        )
        self.repository.grant_pull_push(self.project)
        self.repository.grant_read(self.project)  # describe-images: is the tag there already?
        self.build = self._build(code, log_retention)

    def _build(self, code: lambda_.Code, log_retention: logs.RetentionDays) -> CustomResource:
        handlers = {}
        for name, handler in (
            ("Start", "functions.image_build.on_event"),
            ("Check", "functions.image_build.is_complete"),
        ):
            made = python_function(
                self,
                name,
                code=code,
                handler=handler,
                description=f"whisper-batch: {name.lower()} the worker image build",
                role_description=f"whisper-batch image build: {name.lower()} the CodeBuild build",
                environment={},
                log_retention=log_retention,
                timeout=Duration.seconds(30),
            )
            action = "codebuild:StartBuild" if name == "Start" else "codebuild:BatchGetBuilds"
            made.role.add_to_principal_policy(
                iam.PolicyStatement(actions=[action], resources=[self.project.project_arn])
            )
            handlers[name] = made.function
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=handlers["Start"],
            is_complete_handler=handlers["Check"],
            query_interval=POLL_INTERVAL,
            total_timeout=BUILD_TIMEOUT,
        )
        return CustomResource(
            self,
            "Build",
            service_token=provider.service_token,
            properties={"ProjectName": self.project.project_name, "ImageTag": self.tag},
        )
