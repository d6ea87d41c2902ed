"""The Lambda asset: ``infra/functions`` plus aws-lambda-powertools, bundled locally (no Docker).

The Python Lambda runtime ships boto3 but not Powertools, so the bundle copies the installed (pinned)
``aws_lambda_powertools`` and its one non-runtime dependency, ``typing_extensions``, next to our handlers.
The settle handler runs ``worker.client.settle``: the bundle carries it and the standard-library modules it imports
(``WORKER_MODULES``; not pydantic, httpx or standardwebhooks, which the runtime lacks), under ``worker/`` with
empty package files, so ``worker/__init__.py`` and ``worker/client/__init__.py`` (the client's lazy exports) never
run there.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

FUNCTIONS_DIR: Final = Path(__file__).resolve().parent / "functions"
BUNDLED_MODULES: Final = ("aws_lambda_powertools", "typing_extensions")
RUNTIME: Final = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE: Final = lambda_.Architecture.ARM_64
_IGNORE: Final = shutil.ignore_patterns("__pycache__", "*.pyc")
WORKER_DIR: Final = Path(__file__).resolve().parent.parent / "worker"
WORKER_MODULES: Final = (
    "aws.py",
    "addresses.py",
    "webhooks.py",
    "contract/result.py",
    "contract/salvage.py",
    "client/deadletters.py",
    "client/settle.py",
)
_STUB: Final = '"""Lambda bundle: the standard-library modules the settle handler needs (see functions_code.py)."""\n'


def module_path(name: str) -> Path:
    """The installed package directory (or single-file module) of ``name``."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{name} is not installed; run `make install` (the infra extra) first")
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def bundle(output_dir: Path) -> None:
    """Write the Lambda package into ``output_dir``: ``functions/`` and the bundled modules at its root."""
    shutil.copytree(FUNCTIONS_DIR, output_dir / "functions", ignore=_IGNORE, dirs_exist_ok=True)
    for name in WORKER_MODULES:
        target = output_dir / "worker" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(WORKER_DIR / name, target)
    for package in {output_dir / "worker", *(p.parent for p in (output_dir / "worker").rglob("*.py"))}:
        stub = package / "__init__.py"
        if not stub.exists():
            stub.write_text(_STUB)
    for name in BUNDLED_MODULES:
        source = module_path(name)
        if source.is_dir():
            shutil.copytree(source, output_dir / source.name, ignore=_IGNORE, dirs_exist_ok=True)
        else:
            shutil.copy2(source, output_dir / source.name)


@jsii.implements(ILocalBundling)
class LocalBundler:
    """CDK calls ``try_bundle`` before it would fall back to Docker; copying pure-Python files always succeeds."""

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        bundle(Path(output_dir))
        return True


def functions_code() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        asset_hash_type=AssetHashType.OUTPUT,  # a Powertools upgrade changes the code, so it must change the hash
        bundling=BundlingOptions(
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),  # never used: local wins
            local=LocalBundler(),
        ),
    )


@dataclass(frozen=True)
class PythonFunction:
    role: iam.Role
    log_group: logs.LogGroup
    function: lambda_.Function


def python_function(
    scope: Construct,
    prefix: str,
    *,
    code: lambda_.Code,
    handler: str,
    description: str,
    role_description: str,
    environment: Mapping[str, str],
    log_retention: logs.RetentionDays,
    timeout: Duration,
    **options: Any,
) -> PythonFunction:
    """One of our Lambdas: its own role (the Stack grants it what it touches), a log group it alone writes, JSON
    logs, the shared runtime and architecture. Construct ids are ``{prefix}Role``, ``{prefix}Logs`` and
    ``{prefix}Function``."""
    role = iam.Role(
        scope, f"{prefix}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=role_description
    )
    log_group = logs.LogGroup(scope, f"{prefix}Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        f"{prefix}Function",
        code=code,
        handler=handler,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        memory_size=256,
        timeout=timeout,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        environment=dict(environment),
        description=description,
        **options,
    )
    return PythonFunction(role, log_group, function)
