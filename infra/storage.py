"""The bucket for ``audio/`` uploads and ``results/``, plus the bucket its access logs go to."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import LifecycleRule

ABORT_MULTIPART_AFTER_DAYS = 7
ACCESS_LOG_EXPIRY_DAYS = 90


class Storage(Construct):
    """Private, encrypted, SSL-only; lifecycle rules per key prefix; retained on stack deletion by default."""

    def __init__(self, scope: Construct, id: str, *, lifecycle: tuple[LifecycleRule, ...], retain: bool = True) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        common = {
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "enforce_ssl": True,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": removal,
        }
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(ACCESS_LOG_EXPIRY_DAYS))],
            **common,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(ABORT_MULTIPART_AFTER_DAYS),
                ),
                *(_rule(rule) for rule in lifecycle),
            ],
            **common,
        )


def _rule(rule: LifecycleRule) -> s3.LifecycleRule:
    transitions = []
    if rule.infrequent_access_after_days is not None:
        transitions.append(
            s3.Transition(
                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                transition_after=Duration.days(rule.infrequent_access_after_days),
            )
        )
    return s3.LifecycleRule(
        id=f"prefix-{rule.prefix.strip('/') or 'all'}",
        prefix=rule.prefix,
        expiration=Duration.days(rule.expire_after_days) if rule.expire_after_days else None,
        transitions=transitions or None,
    )
