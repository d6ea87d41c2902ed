"""EMF documents as CloudWatch will read them: names, units, dimension sets, one flush per settled message."""

from __future__ import annotations

import json

import pytest

from worker.ops.metrics import JobMetrics, JobReport, queue_wait_seconds


def _emit(report: JobReport, namespace: str = "WhisperBatch") -> list[dict]:
    lines: list[str] = []
    JobMetrics(namespace, write=lines.append).job_settled(report)
    return [json.loads(line) for line in lines]


def _directive(doc: dict) -> dict:
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    return directive


def _names(doc: dict) -> set[str]:
    return {m["Name"] for m in _directive(doc)["Metrics"]}


def test_completed_job_is_one_document_with_the_dashboard_names() -> None:
    [doc] = _emit(
        JobReport(
            verdict="completed",
            job_id="j1",
            message_id="m1",
            model="base",
            queue_wait_seconds=2.5,
            audio_seconds=60.0,
            processing_seconds=6.0,
        ),
        namespace="Custom",
    )
    directive = _directive(doc)
    assert directive["Namespace"] == "Custom"
    assert directive["Dimensions"] == [["service"]] and doc["service"] == "whisper-batch"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "QueueWaitSeconds": "Seconds",
        "JobsCompleted": "Count",
        "AudioSeconds": "Seconds",
        "ProcessingSeconds": "Seconds",
        "RealtimeFactor": "None",
    }
    assert doc["JobsCompleted"] == [1.0] and doc["AudioSeconds"] == [60.0] and doc["ProcessingSeconds"] == [6.0]
    assert doc["RealtimeFactor"] == [0.1] and doc["QueueWaitSeconds"] == [2.5]
    assert doc["model"] == "base" and doc["message_id"] == "m1" and "job_id" not in doc
    assert isinstance(doc["_aws"]["Timestamp"], int)


@pytest.mark.parametrize(
    ("verdict", "final", "name"),
    [("failed", True, "JobsFailed"), ("retry", True, "JobsFailed"), ("retry", False, "JobsRetried")],
)
def test_failures_go_out_in_their_own_document_with_the_error_code(verdict: str, final: bool, name: str) -> None:
    code = "audio_not_found" if verdict == "failed" else "fetch_unavailable"
    main, failure = _emit(
        JobReport(verdict=verdict, job_id="j", message_id="m", error_code=code, final=final, queue_wait_seconds=1.0)
    )
    assert _names(main) == {"QueueWaitSeconds"} and _directive(main)["Dimensions"] == [["service"]]
    assert _names(failure) == {name}
    assert _directive(failure)["Dimensions"] == [["service", "error_code"], ["service"]]
    assert failure["error_code"] == code and failure[name] == [1.0] and failure["service"] == "whisper-batch"


def test_duplicate_without_timestamp_emits_nothing() -> None:
    assert _emit(JobReport(verdict="duplicate", job_id="j", message_id="m")) == []


def test_model_load_is_its_own_document() -> None:
    lines: list[str] = []
    JobMetrics("WhisperBatch", write=lines.append).model_loaded("large-v3", 12.34567, "cuda")
    [doc] = [json.loads(line) for line in lines]
    assert _names(doc) == {"ModelLoadSeconds"} and doc["ModelLoadSeconds"] == [12.346]
    assert _directive(doc)["Dimensions"] == [["service"]]
    assert doc["model"] == "large-v3" and doc["device"] == "cuda"


def test_powertools_switch_disables_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert _emit(JobReport(verdict="completed", job_id="j", message_id="m", queue_wait_seconds=1.0)) == []


def test_queue_wait_from_sent_timestamp() -> None:
    assert queue_wait_seconds(None) is None
    assert queue_wait_seconds(1_000_000, now=1_005.5) == pytest.approx(5.5)
    assert queue_wait_seconds(2_000_000, now=1_000.0) == 0.0  # clock skew never goes negative
