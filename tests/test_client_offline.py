"""The backend client without AWS: it stays light, prices audio as documented, and README cannot drift from it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli import build_parser
from worker.client import pricing
from worker.client.deadletters import parse
from worker.client.errors import EstimateError, TranscriptionError

README = Path(__file__).parent.parent / "README.md"
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


def readme_section(title: str = "Integrating a backend") -> str:
    """The text of one ``## `` section of README.md, subsections included."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(language: str, section: str | None = None) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section or readme_section(), flags=re.DOTALL)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_importing_the_client_loads_no_torch_whisper_or_numpy() -> None:
    code = (
        "import sys, worker.client, worker.client.cli, worker.client.pricing, worker.client.deadletters, worker.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'whisper', 'numpy', 'av')"
        " or m.startswith(('worker.service', 'worker.engine', 'worker.models', 'worker.audio', 'worker.local'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=README.parent
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


def test_measured_figures_win_and_cpu_instances_use_no_gpu_seconds() -> None:
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


def test_estimate_cli_prints_exactly_the_readme_example() -> None:
    console = code_blocks("console")[0]
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


# ---------------------------------------------------------------------------------------- README


def test_readme_throughput_table_matches_the_pricing_module() -> None:
    rows = [line for line in readme_section().splitlines() if line.startswith("| ") and "." in line.split("|")[1]]
    header = next(line for line in readme_section().splitlines() if line.startswith("| instance |"))
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


def test_every_readme_cli_example_parses() -> None:
    lines = [line for block in code_blocks("bash") for line in block.splitlines() if line.startswith("whisper-")]
    assert {shlex.split(line)[1] for line in lines} >= {"submit", "status", "fetch", "estimate", "dlq"}
    for line in lines:
        build_parser().parse_args(shlex.split(line)[1:])


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
