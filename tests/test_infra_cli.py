"""``cdk synth`` through the real CLI from ``cdk.json``, with no AWS credentials and no Docker.

Synthesis only stages the worker image's build context and describes it in the asset manifest; the image is
built and pushed by ``cdk deploy``. To prove synth never needs Docker, a ``docker`` stand-in that records any
call and fails comes first on PATH, and the test checks it was never called.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / ".cdk" / "node_modules" / ".bin" / "cdk"

pytestmark = pytest.mark.skipif(
    not CDK.exists() or shutil.which("node") is None,
    reason="the aws-cdk CLI is installed by `make synth` / `make test` into .cdk/",
)


def test_cdk_synth_from_cdk_json(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "docker-calls"
    docker = shims / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    docker.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key not in ("WHISPER_WEBHOOK_SECRET_ARN",)
    }
    env.update(
        PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path),  # no ~/.aws/credentials or config
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    out = tmp_path / "cdk.out"
    done = subprocess.run(
        [str(CDK), "synth", "--no-notices", "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "AWS::Batch::JobDefinition" in done.stdout  # the template, printed as YAML
    assert not calls.exists(), calls.read_text()
    assert "AwsSolutions-" not in done.stderr  # cdk-nag ran in the app and found nothing unsuppressed

    template = json.loads((out / "WhisperBatch.template.json").read_text())
    assert {"QueueUrl", "DlqUrl", "BucketName", "JobQueueArn", "DashboardUrl", "ApiUrl"} <= set(template["Outputs"])
    assets = json.loads((out / "WhisperBatch.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "Dockerfile"
    assert (out / image["source"]["directory"] / "Dockerfile").is_file()  # staged, not built
    (report,) = out.glob("AwsSolutions-*WhisperBatch-NagReport.csv")
    nag_report = report.read_text()
    assert ',"Non-Compliant"' not in nag_report


INFRA_VENV = ROOT / ".venv-infra"
SYNTH_PROBE = """
import json, sys
from aws_cdk import App
from infra.app import build
context = json.load(open("cdk.json"))["context"]  # what the CLI passes: feature flags and settings
app = App(outdir=sys.argv[1], context=context)
build(app, {})
assembly = app.synth()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "numpy", "whisper", "av", "moto"})
print(json.dumps({"stacks": [s.stack_name for s in assembly.stacks], "heavy": heavy}))
"""


def test_the_infra_install_synthesizes_without_the_worker(tmp_path: Path) -> None:
    """``make synth`` and ``make deploy`` run from ``.venv-infra``: the infra install only, never torch."""
    python = INFRA_VENV / "bin" / "python"
    assert python.exists(), "made by `make install-infra` (a prerequisite of `make test`)"
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"aws-cdk-lib", "cdk-nag", "pydantic", "boto3"} <= installed
    assert not installed & {"torch", "numpy", "openai-whisper", "av", "moto"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_", "WHISPER_"))}
    env.update(JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run(
        [str(python), "-c", SYNTH_PROBE, str(tmp_path / "cdk.out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"stacks": ["WhisperBatch"], "heavy": []}
