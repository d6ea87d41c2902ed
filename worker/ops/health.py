"""Can this worker do its job here? Device, model, results bucket, jobs queue and DLQ, each checked for real.

Each check returns a ``Check`` instead of raising, so one run reports every problem at once. The AWS calls use
a client with few retries and short timeouts: a health check must answer in seconds, not after the adaptive
backoff the worker itself uses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker import aws
from worker.service.settings import Settings

_NOT_FOUND = {"NoSuchBucket", "404", "NotFound", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_DENIED = {"403", "AccessDenied", "AccessDeniedException", "AWS.SimpleQueueService.AccessDenied"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "seconds": self.seconds, **self.data}


def _client(service: str, settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10)
    kwargs: dict[str, Any] = {"config": config}
    if settings.region:
        kwargs["region_name"] = settings.region
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    return boto3.session.Session().client(service, **kwargs)


def _aws_error(exc: Exception, what: str) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = aws.error_code(exc)
        if code in _NOT_FOUND:
            return f"{what} does not exist ({code})"
        if code in _DENIED:
            return f"{what}: access denied ({code}); check the worker's IAM role"
        return f"{what}: {code or exc}"
    return f"{what} unreachable: {exc}"


def _timed(name: str, probe: Callable[[], tuple[bool, str, dict[str, Any]]]) -> Check:
    started = time.monotonic()
    try:
        ok, detail, data = probe()
    except Exception as exc:  # a check that crashes is a failed check, with the reason
        ok, detail, data = False, f"{type(exc).__name__}: {exc}", {}
    return Check(name, ok, detail, round(time.monotonic() - started, 3), data)


def check_device(settings: Settings) -> Check:
    def probe() -> tuple[bool, str, dict[str, Any]]:
        import torch

        cuda = torch.cuda.is_available()
        data: dict[str, Any] = {"torch": torch.__version__, "cuda_available": cuda, "preference": settings.device}
        if cuda:
            props = torch.cuda.get_device_properties(0)
            gib = props.total_memory / 1024**3
            data.update(
                device="cuda",
                gpu_name=props.name,
                gpu_memory_gib=round(gib, 1),
                gpu_count=torch.cuda.device_count(),
                cuda_version=torch.version.cuda,
            )
            detail = f"cuda: {props.name}, {gib:.1f} GiB (torch {torch.__version__}, CUDA {torch.version.cuda})"
        else:
            from worker.engine.device import choose_precision, cpu_info

            info = cpu_info()
            precision = choose_precision(settings.cpu_precision, "cpu", info)
            data.update(
                device="cpu",
                cpu_count=os.cpu_count(),
                cpu_model=info.model,
                cpu_flags=info.speed_flags(),
                precision=precision.name,
                precision_reason=precision.reason,
            )
            detail = (
                f"cpu: {info.model}, {os.cpu_count()} cores, no CUDA device (torch {torch.__version__}); "
                f"{precision.name} ({precision.reason})"
            )
        if settings.device.startswith("cuda") and not cuda:
            return False, f"WHISPER_DEVICE={settings.device} but {detail}", data
        return True, detail, data

    return _timed("device", probe)


def check_model(settings: Settings, name: str) -> Check:
    def probe() -> tuple[bool, str, dict[str, Any]]:
        from worker.engine.device import pick_device
        from worker.errors import JobError
        from worker.models.cache import ModelCache

        device = pick_device(settings.device)
        cache = ModelCache(
            model_dir=settings.model_dir,
            sources=dict(settings.model_sources),
            download=settings.model_download,
            device=device,
            s3_client=_client("s3", settings) if name in settings.model_sources else None,
            mirror=settings.model_mirror,
        )
        started = time.monotonic()
        try:
            model = cache.get(name)
        except JobError as exc:
            return False, f"{name}: {exc.message}", {"model": name}
        seconds = time.monotonic() - started
        kind = "multilingual" if model.is_multilingual else "English-only"
        data = {"model": name, "load_seconds": round(seconds, 3), "multilingual": model.is_multilingual}
        return True, f"{name} ({kind}) loaded on {device} in {seconds:.1f} s", data

    return _timed("model", probe)


def check_diarizer(settings: Settings) -> Check:
    """Builds the diarizer diarize: true jobs use (weights sha256 checked) and runs it on a second of silence."""

    def probe() -> tuple[bool, str, dict[str, Any]]:
        import numpy as np

        from worker.audio import SAMPLE_RATE
        from worker.diarization import SpeakerBounds
        from worker.diarization.choose import DiarizerFactory
        from worker.engine.device import pick_device

        factory = DiarizerFactory(settings.diarization_model, pick_device(settings.device))
        started = time.monotonic()
        try:
            diarizer = factory.get()
            diarizer.diarize(np.zeros(SAMPLE_RATE, dtype=np.float32), SpeakerBounds())
        except Exception as exc:  # whatever stops it, diarize: true jobs would fail diarization_failed
            return False, f"{factory.model}: {type(exc).__name__}: {exc}", {"diarizer": factory.model}
        seconds = time.monotonic() - started
        data = {"diarizer": diarizer.name, "device": factory.device, "load_seconds": round(seconds, 3)}
        return True, f"{diarizer.name} ready on {factory.device} in {seconds:.1f} s", data

    return _timed("diarizer", probe)


def check_bucket(settings: Settings) -> Check:
    """A one-key listing of the results prefix: what the worker's role allows (HeadBucket needs an unconditioned
    s3:ListBucket, which a role scoped to ``results/`` does not have)."""

    def probe() -> tuple[bool, str, dict[str, Any]]:
        bucket = settings.results_bucket
        if not bucket:
            return False, "WHISPER_RESULTS_BUCKET is not set", {}
        data = {"bucket": bucket, "prefix": settings.results_prefix}
        try:
            _client("s3", settings).list_objects_v2(Bucket=bucket, Prefix=settings.results_prefix, MaxKeys=1)
        except Exception as exc:
            return False, _aws_error(exc, f"bucket s3://{bucket}"), data
        return True, f"s3://{bucket}/{settings.results_prefix} reachable", data

    return _timed("bucket", probe)


def _queue_depth(sqs: Any, url: str, extra: list[str] | None = None) -> dict[str, Any]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", *(extra or [])]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]


def check_queues(settings: Settings) -> list[Check]:
    """The jobs queue, then its DLQ (from the redrive policy unless WHISPER_DLQ_URL is set)."""
    from worker.service.sqs import JobQueue

    url = settings.queue_url
    found: dict[str, Any] = {}

    def queue_probe() -> tuple[bool, str, dict[str, Any]]:
        if not url:
            return False, "WHISPER_QUEUE_URL is not set", {}
        sqs = _client("sqs", settings)
        try:
            attrs = _queue_depth(sqs, url)
            info = JobQueue(sqs, url, settings.dlq_url).describe()
        except Exception as exc:
            return False, _aws_error(exc, f"queue {url}"), {"url": url}
        found.update(sqs=sqs, info=info)
        visible = int(attrs["ApproximateNumberOfMessages"])
        in_flight = int(attrs["ApproximateNumberOfMessagesNotVisible"])
        data = {"url": url, "visible": visible, "in_flight": in_flight, "max_receive_count": info.max_receive_count}
        return True, f"{url} reachable: {visible} waiting, {in_flight} in flight", data

    def dlq_probe() -> tuple[bool, str, dict[str, Any]]:
        if "info" not in found:
            if settings.dlq_url is None:
                return False, "not checked: the jobs queue is not reachable and WHISPER_DLQ_URL is unset", {}
            found["sqs"] = _client("sqs", settings)
            dlq_url = settings.dlq_url
        else:
            dlq_url = found["info"].dlq_url
        if not dlq_url:
            return False, "the jobs queue has no redrive policy and WHISPER_DLQ_URL is unset", {}
        try:
            attrs = _queue_depth(found["sqs"], dlq_url)
        except Exception as exc:
            code = aws.error_code(exc)
            if code in _DENIED:  # SQS answered for that queue; a role that may only send there cannot read depth
                detail = f"{dlq_url} answered, but its depth is not readable (no sqs:GetQueueAttributes on it)"
                return True, detail, {"url": dlq_url, "visible": None}
            return False, _aws_error(exc, f"DLQ {dlq_url}"), {"url": dlq_url}
        visible = int(attrs["ApproximateNumberOfMessages"])
        return True, f"{dlq_url} reachable: {visible} dead letters", {"url": dlq_url, "visible": visible}

    return [_timed("queue", queue_probe), _timed("dlq", dlq_probe)]


def run_checks(settings: Settings, *, model: str | None = None, skip_model: bool = False) -> list[Check]:
    checks = [check_device(settings), check_bucket(settings), *check_queues(settings)]
    if not skip_model:
        checks += [check_model(settings, model or settings.default_model), check_diarizer(settings)]
    return checks
