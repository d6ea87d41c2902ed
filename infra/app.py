"""CDK entry point (``cdk.json``: ``python -m infra.app``): one WhisperBatch stack, checked by cdk-nag."""

from __future__ import annotations

import os
from collections.abc import Mapping

from aws_cdk import App, Aspects, Environment, Tags
from cdk_nag import AwsSolutionsChecks

from infra.config import ConfigError, InfraConfig
from infra.nag import suppress
from infra.stack import WhisperBatchStack


def environment(env: Mapping[str, str]) -> Environment | None:
    """The account and region the CLI resolved from the caller's credentials, if any (else env-agnostic)."""
    account, region = env.get("CDK_DEFAULT_ACCOUNT"), env.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region) if account and region else None


def build(app: App, env: Mapping[str, str] | None = None) -> WhisperBatchStack:
    """Add the stack (named by context ``stackName``) to ``app``, with cdk-nag's AwsSolutions checks."""
    env = os.environ if env is None else env
    config = InfraConfig.from_context(app.node.try_get_context, env)
    target = environment(env)
    if config.vpc_id and target is None:
        raise ConfigError("vpcId needs AWS credentials at synth time (CDK looks the VPC up in your account)")
    stack = WhisperBatchStack(app, config.stack_name, config=config, env=target)
    Tags.of(stack).add("project", "whisper-batch")
    suppress(stack)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack


def main() -> None:
    app = App()
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
