"""Wire the stages together from one Settings object; the only place that builds clients."""

from __future__ import annotations

from worker import aws
from worker.diarization.choose import DiarizerFactory
from worker.engine import Engine
from worker.engine.choose import make_engine
from worker.engine.device import choose_precision, pick_device, require_usable_device
from worker.models.cache import ModelCache
from worker.ops.metrics import JobMetrics
from worker.service.callback import CallbackPolicy, CallbackSender
from worker.service.netguard import guarded_transport
from worker.service.pipeline import JobProcessor
from worker.service.runner import Worker
from worker.service.settings import Settings
from worker.service.sqs import JobQueue
from worker.service.store import ResultStore


def worker_client(service: str, settings: Settings) -> object:
    """A boto3 client for the worker: its region and endpoint, adaptive retries, a pool for every job at once."""
    return aws.client(
        service,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        retries=aws.WORKER_RETRIES,
        read_timeout=60,
        pool=64,
    )


def build_engine(settings: Settings, s3: object = None, metrics: JobMetrics | None = None) -> Engine:
    metrics = metrics or JobMetrics(settings.metrics_namespace)
    device = pick_device(settings.device)
    require_usable_device(device)  # a worker without its device must not take messages
    return make_engine(
        ModelCache(
            model_dir=settings.model_dir,
            sources=dict(settings.model_sources),
            download=settings.model_download,
            device=device,
            s3_client=s3,
            mirror=settings.model_mirror,
            on_load=metrics.model_loaded,
        ),
        settings.engine,
        settings.batch_windows,
        deadline_base_seconds=settings.job_deadline_base_seconds,
        deadline_factor=settings.job_deadline_factor,
        precision=choose_precision(settings.cpu_precision, device),
    )


def build_worker(settings: Settings, engine: Engine | None = None, metrics: JobMetrics | None = None) -> Worker:
    queue_url, bucket = settings.require_queue()
    s3 = worker_client("s3", settings)
    sqs = worker_client("sqs", settings)
    metrics = metrics or JobMetrics(settings.metrics_namespace)
    callbacks = progress_callbacks = None
    if settings.webhook_secret:
        policy = CallbackPolicy(attempts=settings.callback_attempts, timeout=settings.callback_timeout)
        # Callback URLs come from job messages: connections only to public addresses unless configured.
        transport = guarded_transport(allow_private=settings.allow_private_urls)
        callbacks = CallbackSender(settings.webhook_secret, policy, transport=transport)
        # Progress events are advisory: two tries, no long backoff, so a slow backend cannot stall a job.
        quick = CallbackPolicy(attempts=min(2, settings.callback_attempts), timeout=settings.callback_timeout)
        progress_callbacks = CallbackSender(settings.webhook_secret, quick, transport=transport)
    processor = JobProcessor(
        settings=settings,
        s3=s3,
        store=ResultStore(s3, bucket, settings.results_prefix),
        engine=engine or build_engine(settings, s3, metrics),
        callbacks=callbacks,
        progress_callbacks=progress_callbacks,
        diarizers=DiarizerFactory(settings.diarization_model, pick_device(settings.device)),
    )
    return Worker(settings, JobQueue(sqs, queue_url, settings.dlq_url), processor, metrics)
