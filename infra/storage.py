"""The bucket for ``audio/`` uploads and ``results/``, plus the bucket its access logs go to.

Nothing is kept by default for ever: uploads and results expire by prefix (``audioExpireDays``,
``resultsExpireDays``), and the bucket is versioned, so an object overwritten or deleted by mistake can be
restored for ``noncurrentVersionExpireDays`` and then goes too. No Standard-IA transition for results: transcripts
are mostly under 128 KB, which S3 neither transitions by default nor bills below in Standard-IA.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import LifecycleRule

ABORT_MULTIPART_AFTER_DAYS = 7
ACCESS_LOG_EXPIRY_DAYS = 90


class Storage(Construct):
    """Private, encrypted, SSL-only; lifecycle rules per key prefix; retained on stack deletion by default."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        lifecycle: tuple[LifecycleRule, ...],
        noncurrent_expire_days: int,
        retain: bool = True,
    ) -> None:
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
            versioned=True,
            lifecycle_rules=[
                # Old versions (overwritten result.json, the scaler's lease each minute, deleted claims) and the
                # delete markers left once they are gone.
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(noncurrent_expire_days),
                    expired_object_delete_marker=True,
                ),
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
