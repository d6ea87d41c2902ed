"""CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout, built with powertools ``Metrics``.

CloudWatch Logs turns each EMF line into metric data points, so the worker needs no ``PutMetricData``
permission and no extra network call. One flush per settled message:

* every message: ``QueueWaitSeconds`` (from SQS's ``SentTimestamp`` to the start of work);
* completed: ``JobsCompleted`` = 1, ``AudioSeconds``, ``ProcessingSeconds``, ``RealtimeFactor``
  (processing seconds per second of audio: below 1 is faster than real time);
* failed for good (permanent error, or transient on the last allowed receive): ``JobsFailed`` = 1;
  a transient failure that will be retried: ``JobsRetried`` = 1. Both are published twice, by
  ``[service, error_code]`` (the breakdown) and by ``[service]`` (the total an alarm can watch), which is why
  they go out as a separate EMF document: every metric in one document shares its dimension sets.

``ModelLoadSeconds`` goes out once per model load, when it happens. All metrics carry the ``service``
dimension; message id, verdict and model ride along as EMF metadata (searchable in Logs Insights, not dimensions:
they would make a metric per job).

Each document is its own ``Metrics`` with a private provider rather than the class-level shared state
powertools uses by default, so a model loading in a background thread never mixes its data points into a
job's flush. The line is written with one ``write`` call: ``print`` (what ``flush_metrics`` uses) writes
the text and the newline separately, and a log line from another thread could land between them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE = "whisper-batch"

JOBS_COMPLETED = "JobsCompleted"
JOBS_FAILED = "JobsFailed"
JOBS_RETRIED = "JobsRetried"
AUDIO_SECONDS = "AudioSeconds"
PROCESSING_SECONDS = "ProcessingSeconds"
REALTIME_FACTOR = "RealtimeFactor"
QUEUE_WAIT_SECONDS = "QueueWaitSeconds"
MODEL_LOAD_SECONDS = "ModelLoadSeconds"
ERROR_CODE_DIMENSION = "error_code"


@dataclass(frozen=True)
class JobReport:
    """What the runner knows once a message is settled; the input of one flush."""

    verdict: str  # completed | duplicate | failed | retry | busy
    job_id: str | None
    message_id: str
    model: str | None = None
    error_code: str | None = None
    final: bool = False  # the job's last word: its failure was reported to the backend
    queue_wait_seconds: float | None = None
    audio_seconds: float | None = None
    processing_seconds: float | None = None


def queue_wait_seconds(sent_timestamp_ms: int | None, now: float | None = None) -> float | None:
    """Seconds from the backend's SendMessage to ``now``; None when SQS gave no timestamp."""
    if sent_timestamp_ms is None:
        return None
    return max(0.0, (time.time() if now is None else now) - sent_timestamp_ms / 1000)


def _stdout(line: str) -> None:
    stream = sys.stdout
    stream.write(line + "\n")
    stream.flush()


class JobMetrics:
    """Builds and writes the worker's EMF documents; never raises into the job loop."""

    def __init__(self, namespace: str, *, service: str = SERVICE, write: Callable[[str], None] | None = None) -> None:
        self.namespace = namespace
        self.service = service
        self._write = write or _stdout
        self._lock = threading.Lock()

    def _new(self) -> Metrics:
        provider = AmazonCloudWatchEMFProvider(
            namespace=self.namespace,
            service=self.service,
            metric_set={},
            dimension_set={},
            metadata_set={},
            default_dimensions={"service": self.service},  # first, so failure documents read [service, error_code]
        )
        return Metrics(provider=provider)

    def _flush(self, metrics: Metrics) -> None:
        if is_metrics_disabled():  # POWERTOOLS_METRICS_DISABLED, as powertools' own flush honours it
            return
        line = json.dumps(metrics.serialize_metric_set(), separators=(",", ":"))
        with self._lock:
            self._write(line)

    @staticmethod
    def _metadata(metrics: Metrics, report: JobReport) -> None:
        # No ``job_id`` key: log readers pick a job's lines by it and expect a ``message`` on each.
        metrics.add_metadata("message_id", report.message_id)
        metrics.add_metadata("verdict", report.verdict)
        if report.model:
            metrics.add_metadata("model", report.model)

    def job_settled(self, report: JobReport) -> None:
        main = self._new()
        if report.queue_wait_seconds is not None:
            main.add_metric(QUEUE_WAIT_SECONDS, MetricUnit.Seconds, report.queue_wait_seconds)
        if report.verdict == "completed":
            main.add_metric(JOBS_COMPLETED, MetricUnit.Count, 1)
            if report.audio_seconds is not None:
                main.add_metric(AUDIO_SECONDS, MetricUnit.Seconds, report.audio_seconds)
            if report.processing_seconds is not None:
                main.add_metric(PROCESSING_SECONDS, MetricUnit.Seconds, report.processing_seconds)
            if report.audio_seconds and report.processing_seconds is not None:
                factor = report.processing_seconds / report.audio_seconds
                main.add_metric(REALTIME_FACTOR, MetricUnit.NoUnit, round(factor, 4))
        if main.provider.metric_set:  # type: ignore[attr-defined]
            self._metadata(main, report)
            self._flush(main)
        if report.verdict in ("failed", "retry"):
            name = JOBS_FAILED if report.verdict == "failed" or report.final else JOBS_RETRIED
            failure = self._new()
            failure.add_dimension(ERROR_CODE_DIMENSION, report.error_code or "internal_error")
            failure.add_dimensions(service=self.service)  # the total too: an alarm cannot SEARCH across codes
            failure.add_metric(name, MetricUnit.Count, 1)
            self._metadata(failure, report)
            self._flush(failure)

    def model_loaded(self, model: str, seconds: float, device: str) -> None:
        metrics = self._new()
        metrics.add_metric(MODEL_LOAD_SECONDS, MetricUnit.Seconds, round(seconds, 3))
        metrics.add_metadata("model", model)
        metrics.add_metadata("device", device)
        self._flush(metrics)
