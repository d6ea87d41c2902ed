"""The backend client without AWS: it stays light, prices audio as documented, and the docs cannot drift from it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support.docs import (
    DEPLOY_GUIDE,
    RAW_SQS_GUIDE,
    README,
    ROOT,
    cli,
    code_blocks,
    doc_section,
)
from worker.cli import build_parser, main
from worker.client import TranscriptionClient, pricing
from worker.client.deadletters import parse
from worker.client.errors import EstimateError, JobValidationError, TranscriptionError
from worker.contract import parse_message

HEAVY_MODULES = (
    "torch",
    "whisper",
    "numpy",
    "av",
    "worker.service.app",
    "worker.engine.reference",
    "worker.models.cache",
    "worker.service.pipeline",
)


def test_importing_the_client_loads_no_torch_whisper_or_numpy() -> None:
    code = (
        "import sys, worker.client, worker.client.cli, worker.client.pricing, worker.client.deadletters, worker.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'whisper', 'numpy', 'av')"
        " or m.startswith(('worker.service', 'worker.engine', 'worker.models', 'worker.audio', 'worker.local'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", f"heavy modules imported: {done.stdout}"


# ------------------------------------------------------------------------------------------- pricing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("45m", 2700),
        ("1h30m", 5400),
        ("01:30:00", 5400),
        ("1.5h", 5400),
        ("2h15m30s", 8130),
        ("30:00", 1800),
        ("5400", 5400),
    ],
)
def test_durations_read_the_usual_shapes(text: str, seconds: float) -> None:
    assert pricing.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "h", "1h1h", "-5m", "0s", "00:00:00", "01:75:00", "1:2:3:4"])
def test_bad_durations_say_what_would_be_read(text: str) -> None:
    with pytest.raises(EstimateError, match=r"duration"):
        pricing.parse_duration(text)


def test_estimate_divides_the_audio_by_throughput_and_prices_the_instance_time() -> None:
    estimate = pricing.estimate_cost(5400, "base", "g5.xlarge", spot=False)
    # base on an A10G: 5.45x (large-v2, RTX 3070 Ti) x 600/608 GB/s x 7 (base's speed relative to large).
    assert estimate.throughput.times_realtime == pytest.approx(780 / 143 * 600 / 608 * 7)
    assert estimate.throughput.basis == "estimate"
    assert estimate.gpu_seconds == pytest.approx(5400 / estimate.throughput.times_realtime)
    assert estimate.cost_usd == pytest.approx(estimate.gpu_seconds / 3600 * 1.006)
    managed = {m.name: m.cost_usd for m in estimate.managed}
    assert managed["OpenAI whisper-1"] == pytest.approx(90 * 0.006)
    assert managed["Amazon Transcribe"] == pytest.approx(90 * 0.024)


def test_measured_figures_win_and_cpu_instances_use_no_gpu_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # No priced instance has been measured: c6a.large's figure is the development machine's, so an estimate.
    assert pricing.throughput("tiny.en", "c6a.large").basis == "estimate"
    monkeypatch.setitem(pricing.MEASURED, ("c6a.large", "tiny"), (14.6, "measured: on a c6a.large"))
    estimate = pricing.estimate_cost(730, "tiny.en", "c6a.large", spot=True)
    assert estimate.throughput.basis == "measured"
    assert estimate.throughput.times_realtime == 14.6
    assert estimate.gpu_seconds == 0
    assert estimate.instance_seconds == pytest.approx(50)
    assert estimate.cost_usd == pytest.approx(50 / 3600 * 0.035)


def test_unknown_models_and_instances_are_named_with_the_known_ones() -> None:
    with pytest.raises(EstimateError, match=r"unknown instance type 'm5\.large'.*g5\.xlarge"):
        pricing.estimate_cost(60, "base", "m5.large")
    with pytest.raises(EstimateError, match=r"no throughput figure for model 'huge'"):
        pricing.estimate_cost(60, "huge", "g5.xlarge")
    with pytest.raises(TranscriptionError):  # one tree for backends to catch
        pricing.estimate_cost(0, "base", "g5.xlarge")


# ------------------------------------------------------------------------------------- estimate CLI


def test_estimate_cli_prints_exactly_the_documented_example() -> None:
    console = code_blocks("console", doc_section(DEPLOY_GUIDE, "What it costs"))[0]
    command, *expected = console.strip().splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "whisper-worker"
    done = cli(*argv[1:])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def test_estimate_cli_json_carries_cost_gpu_seconds_and_the_comparison() -> None:
    done = cli("estimate", "--duration", "01:30:00", "--model", "large-v3", "--instance", "g4dn.xlarge", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected = pricing.estimate_cost(5400, "large-v3", "g4dn.xlarge")
    assert data["cost_usd"] == pytest.approx(expected.cost_usd)
    assert data["gpu_seconds"] == pytest.approx(expected.gpu_seconds)
    assert [m["name"] for m in data["managed"]] == ["OpenAI whisper-1", "Amazon Transcribe"]


def test_estimate_cli_rejects_bad_durations_and_unknown_instances_with_exit_2() -> None:
    bad_duration = cli("estimate", "--duration", "1h30x")
    assert bad_duration.returncode == 2
    assert "cannot read duration '1h30x'" in bad_duration.stderr
    unknown = cli("estimate", "--duration", "1h", "--instance", "m5.large")
    assert unknown.returncode == 2
    assert "unknown instance type 'm5.large'" in unknown.stderr
    assert "g5.xlarge" in unknown.stderr


# ------------------------------------------------------------------------------------------ the docs


def test_the_docs_throughput_table_matches_the_pricing_module() -> None:
    costs = doc_section(DEPLOY_GUIDE, "What it costs")
    # instance rows: a first cell like g5.xlarge (the section's other tables name prefixes and files)
    rows = [
        line
        for line in costs.splitlines()
        if line.startswith("| ") and re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", line.split("|")[1].strip())
    ]
    header = next(line for line in costs.splitlines() if line.startswith("| instance |"))
    models = [cell.strip() for cell in header.strip("|").split("|")][4:]
    assert {row.split("|")[1].strip() for row in rows} == set(pricing.INSTANCES)
    for row in rows:
        name, _, on_demand, spot, *figures = [cell.strip() for cell in row.strip("|").split("|")]
        instance = pricing.INSTANCES[name]
        assert (float(on_demand), float(spot)) == (instance.on_demand_hourly, instance.spot_hourly)
        for model, cell in zip(models, figures, strict=True):
            figure = pricing.throughput(model, name)
            assert cell.strip("*") == f"{figure.times_realtime:.1f}", (name, model)
            assert cell.startswith("**") == (figure.basis == "measured"), (name, model)


def test_every_cli_example_in_the_python_guide_parses() -> None:
    lines = [line for block in code_blocks("bash") for line in block.splitlines() if line.startswith("whisper-")]
    assert {shlex.split(line)[1] for line in lines} >= {"submit", "status", "fetch", "estimate", "dlq"}
    for line in lines:
        build_parser().parse_args(shlex.split(line)[1:])


def test_the_readme_and_raw_sqs_messages_follow_the_contract() -> None:
    """The job messages shown for any language (raw SQS) are ones the worker accepts as they are written."""
    guide = RAW_SQS_GUIDE.read_text()
    messages = [json.loads(block) for block in code_blocks("json", guide)]
    sent = [line for block in code_blocks("bash", guide) for line in block.splitlines() if "--message-body" in line]
    readme = [line for block in code_blocks("bash", README.read_text()) for line in block.splitlines()]
    shell = [line for line in readme if "--message-body" in line]
    assert messages and sent and shell
    for line in sent:  # in double quotes, with the bucket from the deploy's outputs
        body = shlex.split(line.replace("$BUCKET", "my-bucket"))[-1]
        messages.append(json.loads(body))
    messages += [json.loads(shlex.split(line)[-1]) for line in shell]  # README's, in single quotes
    for message in messages:
        job = parse_message(json.dumps(message))
        assert (job.job_id, job.audio) == (message["job_id"], message["audio"])


# ------------------------------------------------------------------------------------- dead letters


def _raw(attributes: dict[str, str], system: dict[str, str]) -> dict:
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": '{"job_id": "j-1", "audio": "s3://b/k"}',
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        "Attributes": system,
    }


def test_dead_letters_say_why_they_are_there() -> None:
    by_worker = parse(_raw({"error_code": "empty_audio", "error_message": "zero bytes", "receive_count": "1"}, {}))
    assert (by_worker.job_id, by_worker.reason, by_worker.receive_count) == ("j-1", "empty_audio: zero bytes", 1)
    by_sqs = parse(_raw({}, {"ApproximateReceiveCount": "4", "SentTimestamp": "1767225600000"}))
    assert by_sqs.moved_by_sqs
    assert by_sqs.reason == "(moved by SQS after 3 receives)"  # our own listing was the fourth
    assert by_sqs.sent_at == "2026-01-01T00:00:00+00:00"
    assert parse(_raw({}, {})).reason == "(moved by SQS)"


# ---------------------------------------------------------------------------- submit: what is sent
# In-process moto: what the SDK and ``whisper-worker submit`` put on the queue, and that a job the contract refuses
# leaves the queue and the bucket untouched.

REGION = "us-east-1"
BUCKET = "results"


@dataclass
class Queue:
    url: str
    client: TranscriptionClient

    def bodies(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    def uploads(self) -> list[str]:
        listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
        return [item["Key"] for item in listing.get("Contents", [])]

    def submit_cli(self, *args: str) -> int:
        return main(["submit", *args, "--queue-url", self.url, "--bucket", BUCKET, "--region", REGION])


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "WHISPER_QUEUE_URL", "WHISPER_RESULTS_BUCKET", "WHISPER_DLQ_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="jobs")["QueueUrl"]
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield Queue(url, TranscriptionClient(url, BUCKET, region=REGION))


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "meeting.flac"
    path.write_bytes(b"fLaC not really")
    return path


SPEAKER_FIELDS = ("diarize", "speakers", "min_speakers", "max_speakers")


def test_sdk_sends_the_speaker_fields(queue: Queue, audio: Path) -> None:
    queue.client.submit(job_id="exact", audio="s3://results/a.flac", diarize=True, speakers=2)
    queue.client.submit(
        {"job_id": "range", "audio": "s3://results/a.flac", "diarize": True, "min_speakers": 2}, max_speakers=5
    )
    queue.client.upload_and_submit(audio, job_id="uploaded", diarize=True, max_speakers=3)
    queue.client.submit(job_id="plain", audio="s3://results/a.flac")
    sent = {body["job_id"]: {k: body[k] for k in SPEAKER_FIELDS if k in body} for body in queue.bodies()}
    assert sent == {
        "exact": {"diarize": True, "speakers": 2},
        "range": {"diarize": True, "min_speakers": 2, "max_speakers": 5},
        "uploaded": {"diarize": True, "max_speakers": 3},
        "plain": {"diarize": False},  # null counts are left out; a bare job is not diarized
    }


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"speakers": 2}, "speakers", "only applies with diarize: true"),
        ({"diarize": False, "min_speakers": 2}, "min_speakers", "only applies with diarize: true"),
        ({"diarize": True, "speakers": 2, "max_speakers": 3}, "max_speakers", "give either speakers or"),
        ({"diarize": True, "min_speakers": 4, "max_speakers": 3}, "max_speakers", "3 is below min_speakers 4"),
        ({"diarize": True, "speakers": 33}, "speakers", "less than or equal to 32"),
    ],
)
def test_sdk_refuses_bad_speaker_options_before_sending_or_uploading(
    queue: Queue, audio: Path, options: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(JobValidationError, match=rf"^invalid job: {field}: .*{message}") as info:
        queue.client.submit(audio="s3://results/a.flac", **options)
    assert [error["field"] for error in info.value.errors] == [field]
    with pytest.raises(JobValidationError, match=rf"{field}: .*{message}"):
        queue.client.upload_and_submit(audio, **options)
    assert queue.bodies() == []
    assert queue.uploads() == []


def test_submit_cli_sends_the_speaker_flags(queue: Queue, audio: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert queue.submit_cli("s3://results/a.flac", "--job-id", "exact", "--diarize", "--speakers", "2") == 0
    assert capsys.readouterr().out == "exact\n"
    assert (
        queue.submit_cli(str(audio), "--job-id", "range", "--diarize", "--min-speakers", "2", "--max-speakers", "4")
        == 0
    )
    assert queue.submit_cli("s3://results/a.flac", "--job-id", "plain") == 0
    sent = {body["job_id"]: body for body in queue.bodies()}
    assert {k: sent["exact"][k] for k in SPEAKER_FIELDS if k in sent["exact"]} == {"diarize": True, "speakers": 2}
    assert {k: sent["range"][k] for k in SPEAKER_FIELDS if k in sent["range"]} == {
        "diarize": True,
        "min_speakers": 2,
        "max_speakers": 4,
    }
    assert sent["range"]["audio"] == "s3://results/audio/range/meeting.flac"
    assert {k: sent["plain"][k] for k in SPEAKER_FIELDS if k in sent["plain"]} == {"diarize": False}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--speakers", "2"], "error: invalid job: speakers: only applies with diarize: true"),
        (["--min-speakers", "2"], "error: invalid job: min_speakers: only applies with diarize: true"),
        (
            ["--diarize", "--speakers", "2", "--max-speakers", "3"],
            "error: invalid job: max_speakers: give either speakers or min_speakers/max_speakers",
        ),
        (
            ["--diarize", "--min-speakers", "4", "--max-speakers", "3"],
            "error: invalid job: max_speakers: max_speakers 3 is below min_speakers 4",
        ),
        (["--diarize", "--speakers", "0"], "error: invalid job: speakers: Input should be greater than or equal to 1"),
    ],
)
def test_submit_cli_refuses_bad_speaker_flags_before_uploading(
    queue: Queue, audio: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    assert queue.submit_cli(str(audio), *flags) == 2
    captured = capsys.readouterr()
    assert f"whisper-worker: {expected}" in captured.err
    assert captured.out == ""
    assert queue.bodies() == []
    assert queue.uploads() == []


def test_submit_cli_speaker_counts_are_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["submit", "s3://b/k", "--diarize", "--speakers", "two"])
    assert info.value.code == 2
    assert "--speakers: invalid int value: 'two'" in capsys.readouterr().err
