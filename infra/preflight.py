"""What ``make deploy`` checks before it deploys, in plain words.

    python -m infra.preflight [-c key=value ...]   # checks; prints the extra `cdk deploy` arguments on success
    python -m infra.preflight outputs FILE         # prints the stack outputs that `cdk deploy` wrote to FILE

It checks Node, Docker (the worker image is built at deploy time), AWS credentials and region, the CDK
bootstrap stack, and the webhook secret, which it resolves to the complete ARN that Batch needs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_NODE_MAJOR = 20
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_QUALIFIER = "hnb659fds"
CREATE_SECRET_HINT = 'aws secretsmanager create-secret --name {name} --secret-string "whsec_$(openssl rand -base64 32)"'

Runner = Callable[[Sequence[str]], tuple[int, str]]


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
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


def check(session: Any, context: Mapping[str, Any], env: Mapping[str, str], run: Runner = run_command) -> Report:
    report = Report()
    _check_node(report, run)
    _check_docker(report, run)
    account = _check_credentials(report, session)
    if account is None:
        return report
    _check_bootstrap(report, session, context)
    _check_secret(report, session, context, env)
    return report


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


def _check_credentials(report: Report, session: Any) -> str | None:
    if not session.region_name:
        report.problems.append("No AWS region: set AWS_REGION (or a region in your AWS profile).")
        return None
    try:
        identity = session.client("sts").get_caller_identity()
    except Exception as exc:  # botocore raises several unrelated types for "no credentials"
        report.problems.append(
            f"No usable AWS credentials ({type(exc).__name__}): run `aws configure` or set a profile."
        )
        return None
    report.notes.append(f"Deploying to account {identity['Account']} in {session.region_name} as {identity['Arn']}.")
    return identity["Account"]


def _check_bootstrap(report: Report, session: Any, context: Mapping[str, Any]) -> None:
    qualifier = context.get("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER
    name = f"/cdk-bootstrap/{qualifier}/version"
    try:
        version = int(session.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except Exception:
        report.problems.append(
            f"This account/region is not CDK-bootstrapped ({name} is missing): run "
            f"`.cdk/node_modules/.bin/cdk bootstrap aws://ACCOUNT/{session.region_name}` once."
        )
        return
    if version < MIN_BOOTSTRAP_VERSION:
        report.problems.append(f"CDK bootstrap version {version} is too old: run `cdk bootstrap` again.")


def _check_secret(report: Report, session: Any, context: Mapping[str, Any], env: Mapping[str, str]) -> None:
    wanted = (
        context.get("webhookSecretArn") or env.get("WHISPER_WEBHOOK_SECRET_ARN") or context.get("webhookSecretName")
    )
    if not wanted or wanted in ("null", "none"):
        report.notes.append("No webhook secret configured: workers will not send callbacks.")
        return
    try:
        arn = session.client("secretsmanager").describe_secret(SecretId=wanted)["ARN"]
    except Exception:
        report.problems.append(
            f"The webhook secret {wanted!r} does not exist in {session.region_name}; create it with:\n    "
            + CREATE_SECRET_HINT.format(name=context.get("webhookSecretName") or "whisper-batch/webhook")
        )
        return
    report.notes.append(f"Webhook secret: {arn}")
    report.cdk_args += ["-c", f"webhookSecretArn={arn}"]


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
    for problem in report.problems:
        print(f"MISSING: {problem}", file=sys.stderr)
    if report.problems:
        print("Nothing was deployed. Fix the above and run `make deploy` again.", file=sys.stderr)
        return 1
    print(" ".join(report.cdk_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
