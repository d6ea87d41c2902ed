"""Settings, read once from the environment into one frozen object.

Every variable is described in ``ENVIRONMENT`` (the end of this module), from which docs/reference/environment.md
is generated (``python -m scripts.docs_reference``); names start with ``WHISPER_`` except the standard AWS ones
boto3 already understands.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from worker import limits
from worker.aws import SQS_MAX_BATCH, SQS_MAX_WAIT_SECONDS
from worker.errors import SettingsError  # defined in the leaf, where worker.engine.choose imports it too

DEFAULT_MODEL_DIR = Path.home() / ".cache" / "whisper-batch" / "models"
DEFAULT_METRICS_NAMESPACE = "WhisperBatch"


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else default


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, the first the default; read without importing the engine (and torch)."""
    value = (_get(env, name, choices[0]) or choices[0]).lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _model_sources(raw: str | None) -> dict[str, str]:
    """``name=source,name=source`` where a source is a .pt path, an s3:// .pt, a CTranslate2 dir or pkg:NAME."""
    sources: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        name, sep, source = item.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise SettingsError(f"WHISPER_MODEL_SOURCES entry {item!r} is not name=source")
        sources[name.strip().lower()] = source.strip()
    return sources


@dataclass(frozen=True)
class Settings:
    queue_url: str | None = None
    dlq_url: str | None = None
    results_bucket: str | None = None
    results_prefix: str = "results/"
    region: str | None = None
    endpoint_url: str | None = None
    webhook_secret: str | None = None
    default_model: str = "base"
    model_dir: Path = DEFAULT_MODEL_DIR
    model_download: bool = False
    model_sources: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    # "auto": bf16 where the CPU multiplies bf16 natively, else fp32 (see worker/engine/device.py).
    cpu_precision: str = "auto"
    wait_seconds: int = SQS_MAX_WAIT_SECONDS
    # One at a time by default: a worker that dies charges a receive to every message it holds, and enough of
    # those send never-attempted messages to the DLQ. Raise it only where workers rarely die.
    receive_batch: int = 1
    visibility_timeout: int = 300
    retry_base_seconds: int = 30
    max_audio_bytes: int = 2 * 1024**3
    max_audio_seconds: float = limits.MAX_AUDIO_SECONDS
    fetch_timeout: float = 30.0
    allow_http: bool = False
    allow_private_urls: bool = False
    callback_attempts: int = 6
    callback_timeout: float = 10.0
    max_jobs: int | None = None
    max_idle_seconds: float | None = None
    shutdown_grace: float = 25.0
    # Where the host's watcher writes EC2's spot interruption notice (see worker/service/interruption.py).
    interruption_file: Path | None = None
    model_mirror: str | None = None
    preload_model: bool = True
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    progress_interval: float = 5.0
    # Messages in progress at once. Their audio is fetched and decoded while others are transcribed, and the
    # batched engine runs windows from all of them in one forward pass.
    concurrency: int = 1
    # "auto" picks the fastest engine measured for the device (see worker/engine/choose.py).
    engine: str = "auto"
    # Most 30-second windows in one forward pass; 0 lets the engine choose for its device.
    batch_windows: int = 0
    # Seconds of decoded audio all messages in progress may hold together; None derives it from the memory limit
    # (see worker/audio/budget.py). A message that would pass it waits for room before decoding.
    max_decoded_seconds: float | None = None
    # Stop receiving after this long and exit 0 once the jobs in progress end (below the Batch job's timeout).
    max_runtime_seconds: float | None = None
    # How long a job may wait on the engine: this many seconds plus ``job_deadline_factor`` per second of audio.
    job_deadline_base_seconds: float = 600.0
    job_deadline_factor: float = 4.0
    # Speaker diarization: None is the built-in diarizer; a path is an operator's pyannote.audio pipeline directory.
    diarization_model: str | None = None
    # Untrusted files are probed and decoded in child processes (worker/audio/isolated.py), so a crash, a runaway
    # allocation or a hang in FFmpeg fails one job; false decodes in this process (an escape hatch, and the
    # benchmark's baseline). Each child caps its memory (RLIMIT_DATA): it streams samples to shared memory, so
    # 1 GiB decodes hours of audio with room to spare (~85 MB idle, flat while decoding).
    decoder_isolation: bool = True
    decoder_memory_mb: int = 1024
    # A request's deadline: this many seconds, plus ``decoder_timeout_factor`` per second of audio it may return
    # (the job's allowance, not the header's claim, which may lie): 0.05 expects 20x real time from a decoder that
    # runs at several hundred. A probe gets the base alone. Missed twice, the job fails as ``decoder_timeout``.
    decoder_timeout_seconds: float = 60.0
    decoder_timeout_factor: float = 0.05

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        max_jobs = _int(env, "WHISPER_MAX_JOBS", 0)
        max_idle = _float(env, "WHISPER_MAX_IDLE_SECONDS", 0.0)
        max_decoded = _float(env, "WHISPER_MAX_DECODED_SECONDS", 0.0)
        max_runtime = _float(env, "WHISPER_MAX_RUNTIME_SECONDS", 0.0)
        return cls(
            queue_url=_get(env, "WHISPER_QUEUE_URL"),
            dlq_url=_get(env, "WHISPER_DLQ_URL"),
            results_bucket=_get(env, "WHISPER_RESULTS_BUCKET"),
            results_prefix=(_get(env, "WHISPER_RESULTS_PREFIX", "results/") or "results/").rstrip("/") + "/",
            region=_get(env, "AWS_REGION") or _get(env, "AWS_DEFAULT_REGION"),
            endpoint_url=_get(env, "AWS_ENDPOINT_URL"),
            webhook_secret=_get(env, "WHISPER_WEBHOOK_SECRET"),
            default_model=(_get(env, "WHISPER_DEFAULT_MODEL", "base") or "base").lower(),
            model_dir=Path(_get(env, "WHISPER_MODEL_DIR", str(DEFAULT_MODEL_DIR)) or DEFAULT_MODEL_DIR),
            model_download=_bool(env, "WHISPER_MODEL_DOWNLOAD", False),
            model_sources=_model_sources(_get(env, "WHISPER_MODEL_SOURCES")),
            device=(_get(env, "WHISPER_DEVICE", "auto") or "auto").lower(),
            cpu_precision=_choice(env, "WHISPER_CPU_PRECISION", ("auto", "fp32", "bf16")),
            wait_seconds=min(_int(env, "WHISPER_WAIT_SECONDS", SQS_MAX_WAIT_SECONDS), SQS_MAX_WAIT_SECONDS),
            receive_batch=min(_int(env, "WHISPER_RECEIVE_BATCH", 1, minimum=1), SQS_MAX_BATCH),
            visibility_timeout=_int(env, "WHISPER_VISIBILITY_TIMEOUT", 300, minimum=10),
            retry_base_seconds=_int(env, "WHISPER_RETRY_BASE_SECONDS", 30),
            max_audio_bytes=_int(env, "WHISPER_MAX_AUDIO_BYTES", 2 * 1024**3, minimum=1),
            max_audio_seconds=_float(env, "WHISPER_MAX_AUDIO_SECONDS", limits.MAX_AUDIO_SECONDS),
            fetch_timeout=_float(env, "WHISPER_FETCH_TIMEOUT", 30.0),
            allow_http=_bool(env, "WHISPER_ALLOW_HTTP", False),
            allow_private_urls=_bool(env, "WHISPER_ALLOW_PRIVATE_URLS", False),
            callback_attempts=_int(env, "WHISPER_CALLBACK_ATTEMPTS", 6, minimum=1),
            callback_timeout=_float(env, "WHISPER_CALLBACK_TIMEOUT", 10.0),
            max_jobs=max_jobs or None,
            max_idle_seconds=max_idle or None,
            shutdown_grace=_float(env, "WHISPER_SHUTDOWN_GRACE_SECONDS", 25.0),
            interruption_file=Path(notice) if (notice := _get(env, "WHISPER_INTERRUPTION_FILE")) else None,
            model_mirror=_get(env, "WHISPER_MODEL_MIRROR"),
            preload_model=_bool(env, "WHISPER_PRELOAD_MODEL", True),
            metrics_namespace=_get(env, "WHISPER_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE)
            or DEFAULT_METRICS_NAMESPACE,
            progress_interval=_float(env, "WHISPER_PROGRESS_INTERVAL_SECONDS", 5.0),
            concurrency=_int(env, "WHISPER_CONCURRENCY", 1, minimum=1),
            engine=(_get(env, "WHISPER_ENGINE", "auto") or "auto").lower(),
            batch_windows=_int(env, "WHISPER_BATCH_WINDOWS", 0),
            max_decoded_seconds=max_decoded or None,
            max_runtime_seconds=max_runtime or None,
            job_deadline_base_seconds=_float(env, "WHISPER_JOB_DEADLINE_BASE_SECONDS", 600.0),
            job_deadline_factor=_float(env, "WHISPER_JOB_DEADLINE_FACTOR", 4.0),
            diarization_model=_get(env, "WHISPER_DIARIZATION_MODEL"),
            decoder_isolation=_bool(env, "WHISPER_DECODER_ISOLATION", True),
            decoder_memory_mb=_int(env, "WHISPER_DECODER_MEMORY_MB", 1024),
            decoder_timeout_seconds=_float(env, "WHISPER_DECODER_TIMEOUT_SECONDS", 60.0),
            decoder_timeout_factor=_float(env, "WHISPER_DECODER_TIMEOUT_FACTOR", 0.05),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields changed; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def require_queue(self) -> tuple[str, str]:
        if not self.queue_url:
            raise SettingsError("WHISPER_QUEUE_URL is not set")
        if not self.results_bucket:
            raise SettingsError("WHISPER_RESULTS_BUCKET is not set")
        return self.queue_url, self.results_bucket


# ---------------------------------------------------------------------------------------------- the manual


@dataclass(frozen=True)
class EnvVar:
    """One environment variable, as docs/reference/environment.md shows it.

    ``field`` is the ``Settings`` field it sets: the page takes its default from ``Settings()``. ``default`` says
    the default in words where a value alone would mislead (required, derived, unset meaning something).
    ``read_by`` names the module that reads a variable outside ``Settings.from_env``.
    """

    meaning: str
    field: str | None = None
    default: str | None = None
    read_by: str | None = None


# Every variable the worker reads, in the order the manual lists them; tests/test_docs_reference.py checks this table
# against the names ``Settings.from_env`` (and each ``read_by`` module) reads.
ENVIRONMENT: Final[dict[str, EnvVar]] = {
    "WHISPER_QUEUE_URL": EnvVar("jobs queue URL", "queue_url", "required for `run`"),
    "WHISPER_RESULTS_BUCKET": EnvVar("bucket for results", "results_bucket", "required for `run`"),
    "WHISPER_RESULTS_PREFIX": EnvVar("key prefix for result folders", "results_prefix"),
    "WHISPER_DLQ_URL": EnvVar("dead-letter queue URL", "dlq_url", "from the queue's redrive policy"),
    "WHISPER_WEBHOOK_SECRET": EnvVar(
        "Standard Webhooks secret (`whsec_…`); without it callbacks are not sent", "webhook_secret"
    ),
    "WHISPER_DEFAULT_MODEL": EnvVar("model for messages that name none", "default_model"),
    "WHISPER_MODEL_DIR": EnvVar("where checkpoints live and conversions are cached", "model_dir"),
    "WHISPER_MODEL_DOWNLOAD": EnvVar(
        "allow downloading official checkpoints at run time (sha256 checked)", "model_download"
    ),
    "WHISPER_MODEL_SOURCES": EnvVar(
        "extra models, `name=source,…`; a source is a `.pt` path, an `s3://…/x.pt`, a CTranslate2 model directory, "
        "or `pkg:<python package>` holding one",
        "model_sources",
    ),
    "WHISPER_MODEL_MIRROR": EnvVar(
        "base URL serving official checkpoints as `<sha256>/<name>.pt` (the official layout), for `models fetch` and "
        "run-time downloads; the official sha256 is still required",
        "model_mirror",
    ),
    "WHISPER_PRELOAD_MODEL": EnvVar(
        "load the default model before the first receive; a worker that cannot load it exits 3 without taking a "
        "message",
        "preload_model",
    ),
    "WHISPER_DEVICE": EnvVar("`auto` (CUDA when present), `cuda`, `cpu`", "device"),
    "WHISPER_CPU_PRECISION": EnvVar(
        "what the batched engine's Whisper encoder computes in on CPU: `bf16` (a copy of its weights converted once; "
        "LayerNorms stay fp32, attention's softmax accumulates in fp32, and the decoder, whose small steps bf16 "
        "slowed, stays fp32 with its log-probabilities), `fp32`, or `auto`: bf16 where the CPU multiplies bf16 "
        "natively (`/proc/cpuinfo` flags `amx_bf16` or `avx512_bf16`: Intel Sapphire Rapids on, AMD Zen 4 on), fp32 "
        "elsewhere. `transcribe()` and GPUs are unaffected; `whisper-worker health` and the `worker started` log line "
        "say which runs and why",
        "cpu_precision",
    ),
    "WHISPER_VISIBILITY_TIMEOUT": EnvVar(
        "seconds (at least 10) a received message stays invisible; renewed by the heartbeat, and the lease of the "
        "job's claim",
        "visibility_timeout",
    ),
    "WHISPER_WAIT_SECONDS": EnvVar(f"long-poll wait (SQS maximum {SQS_MAX_WAIT_SECONDS})", "wait_seconds"),
    "WHISPER_RECEIVE_BATCH": EnvVar(
        f"messages per receive (SQS maximum {SQS_MAX_BATCH}); kept at 1 because a worker that dies charges a receive "
        "to every message it holds",
        "receive_batch",
    ),
    "WHISPER_CONCURRENCY": EnvVar(
        "messages worked on at once, each in its own thread: some are fetched and decoded while others are "
        "transcribed, and the engine batches their audio together. A receive asks for every free slot, so a worker "
        "that dies charges a receive to each message in progress",
        "concurrency",
        "`1` (the stack derives it from `jobMemoryMiB`: 16 with the default 14 GiB, on a GPU or CPUs; fewer with "
        "less memory)",
    ),
    "WHISPER_ENGINE": EnvVar(
        "`batched` (windows of many messages in one forward pass on openai-whisper's model), `ctranslate2` (the same "
        "batching on CTranslate2's int8 kernels; needs `pip install 'whisper-batch[ct2]'` and a model with "
        "CTranslate2 weights, such as the bundled `tiny.en`), `sequential` (openai-whisper's `transcribe()` one file "
        "at a time). `auto`: `ctranslate2` on CPU when installed, else `batched`. Both align word timings "
        "themselves; jobs asking for beam search or an initial prompt always take `transcribe()`",
        "engine",
    ),
    "WHISPER_BATCH_WINDOWS": EnvVar(
        "most decoder rows per forward pass (one per piece: a clip, or up to 28 s of a long file; packed pieces "
        "share their 30-second window's encoder pass); auto is 16 on CPU and, on GPU, as many as keep the "
        "cross-attention cache within 8 GB (128 for `tiny`, 32 for `large`)",
        "batch_windows",
        "`0` (auto)",
    ),
    "WHISPER_RETRY_BASE_SECONDS": EnvVar("base of the transient-failure backoff", "retry_base_seconds"),
    "WHISPER_MAX_AUDIO_BYTES": EnvVar("download cap", "max_audio_bytes"),
    "WHISPER_MAX_AUDIO_SECONDS": EnvVar("duration cap", "max_audio_seconds"),
    "WHISPER_FETCH_TIMEOUT": EnvVar("HTTP timeout per read, seconds", "fetch_timeout"),
    "WHISPER_ALLOW_HTTP": EnvVar("accept plain `http://` audio and callback URLs (local testing)", "allow_http"),
    "WHISPER_ALLOW_PRIVATE_URLS": EnvVar(
        "allow URLs resolving to loopback/private/link-local addresses (local testing)", "allow_private_urls"
    ),
    "WHISPER_CALLBACK_ATTEMPTS": EnvVar("callback delivery attempts", "callback_attempts"),
    "WHISPER_CALLBACK_TIMEOUT": EnvVar("seconds per callback attempt", "callback_timeout"),
    "WHISPER_MAX_JOBS": EnvVar("stop after this many messages (`--max-jobs`)", "max_jobs"),
    "WHISPER_MAX_IDLE_SECONDS": EnvVar(
        "stop after this long without a message (`--max-idle-seconds`); how Batch scales to zero", "max_idle_seconds"
    ),
    "WHISPER_SHUTDOWN_GRACE_SECONDS": EnvVar(
        "time a job in hand may take to finish after SIGTERM (the stack sets 100: its instances allow 120 before "
        "SIGKILL)",
        "shutdown_grace",
    ),
    "WHISPER_INTERRUPTION_FILE": EnvVar(
        "where the instance's watcher writes EC2's spot interruption notice (the stack sets "
        "`/run/whisper-batch/interruption.json`); on a notice the worker hands back what will not finish in time and "
        "exits 0",
        "interruption_file",
    ),
    "WHISPER_MAX_RUNTIME_SECONDS": EnvVar(
        "stop receiving after this long, finish the jobs in progress (up to 10 min), exit 0",
        "max_runtime_seconds",
        "unset (the stack: 15 min below the job timeout)",
    ),
    "WHISPER_MAX_DECODED_SECONDS": EnvVar(
        "seconds of decoded audio all messages in progress may hold together; a message waits for room before decoding",
        "max_decoded_seconds",
        "from the memory limit (the stack sets it from `jobMemoryMiB` by the same rule: 48,234 s with the default "
        "14 GiB)",
    ),
    "WHISPER_JOB_DEADLINE_BASE_SECONDS": EnvVar(
        "a job fails `engine_timeout` when the engine has not finished it within this …", "job_deadline_base_seconds"
    ),
    "WHISPER_JOB_DEADLINE_FACTOR": EnvVar("… plus this many seconds per second of its audio", "job_deadline_factor"),
    "WHISPER_DIARIZATION_MODEL": EnvVar(
        "a local pyannote.audio pipeline directory for `diarize: true` jobs",
        "diarization_model",
        "unset (the built-in diarizer)",
    ),
    "WHISPER_DECODER_ISOLATION": EnvVar(
        "probe and decode files in child processes, so a crash in FFmpeg fails one job; `false` decodes in the "
        "worker's process",
        "decoder_isolation",
    ),
    "WHISPER_DECODER_MEMORY_MB": EnvVar(
        "memory limit of each decoder child (RLIMIT_DATA; 0: none); it streams samples out, ~85 MB idle, flat while "
        "decoding hours of audio",
        "decoder_memory_mb",
    ),
    "WHISPER_DECODER_TIMEOUT_SECONDS": EnvVar(
        "a decode fails `decoder_timeout` (after one retry) when its child has not answered within this …",
        "decoder_timeout_seconds",
    ),
    "WHISPER_DECODER_TIMEOUT_FACTOR": EnvVar(
        "… plus this many seconds per second of audio it may return (20x real time; decoding runs at hundreds)",
        "decoder_timeout_factor",
    ),
    "WHISPER_SETTLED_URL": EnvVar(
        "settled-letters queue URL, for the client, `whisper-worker dlq` and the settler (not the worker)",
        default="unset (`--settled-url`, or the stack's outputs with `--stack`)",
        read_by="worker.client.sdk",
    ),
    "WHISPER_LOG_LEVEL": EnvVar("log level", default="`INFO`", read_by="worker.ops.logs"),
    "WHISPER_SERVICE_NAME": EnvVar(
        "the `service` key of every log line", default="`whisper-batch`", read_by="worker.ops.logs"
    ),
    "WHISPER_METRICS_NAMESPACE": EnvVar("CloudWatch namespace of the EMF metrics", "metrics_namespace"),
    "WHISPER_PROGRESS_INTERVAL_SECONDS": EnvVar(
        "a job's first `status.json` is written this long into it (at once when the job id has an earlier result), "
        "then at most once per interval and at its final state",
        "progress_interval",
    ),
    "POWERTOOLS_METRICS_DISABLED": EnvVar(
        "powertools' switch: `true` writes no EMF lines", default="`false`", read_by="worker.ops.metrics"
    ),
    "AWS_REGION": EnvVar("region", "region", "boto3's"),
    "AWS_DEFAULT_REGION": EnvVar("region, when `AWS_REGION` is unset", "region", "boto3's"),
    "AWS_ENDPOINT_URL": EnvVar(
        "one endpoint for S3 and SQS (moto, LocalStack, MinIO). `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL_SQS` work "
        "as boto3 defines them",
        "endpoint_url",
        "boto3's",
    ),
}
