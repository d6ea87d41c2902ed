"""Settings come from the environment once, with clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.service.settings import ENVIRONMENT, Settings, SettingsError


def test_defaults_are_production_safe() -> None:
    s = Settings.from_env({})
    assert (s.wait_seconds, s.receive_batch, s.visibility_timeout) == (20, 1, 300)
    assert s.default_model == "base" and s.model_download is False
    assert s.allow_http is False and s.allow_private_urls is False
    assert s.max_jobs is None and s.max_idle_seconds is None and s.shutdown_grace == 25.0
    with pytest.raises(SettingsError, match="WHISPER_QUEUE_URL"):
        s.require_queue()


def test_every_variable_is_read() -> None:
    env = {
        "WHISPER_QUEUE_URL": "https://sqs/q",
        "WHISPER_DLQ_URL": "https://sqs/dlq",
        "WHISPER_RESULTS_BUCKET": "b",
        "WHISPER_RESULTS_PREFIX": "out",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "WHISPER_WEBHOOK_SECRET": "whsec_abc",
        "WHISPER_DEFAULT_MODEL": "Tiny.EN",
        "WHISPER_MODEL_DIR": "/models",
        "WHISPER_MODEL_DOWNLOAD": "yes",
        "WHISPER_MODEL_SOURCES": "custom=/m/custom.pt, tuned = s3://b/t.pt",
        "WHISPER_DEVICE": "CPU",
        "WHISPER_WAIT_SECONDS": "60",
        "WHISPER_RECEIVE_BATCH": "50",
        "WHISPER_VISIBILITY_TIMEOUT": "900",
        "WHISPER_RETRY_BASE_SECONDS": "5",
        "WHISPER_MAX_AUDIO_BYTES": "1000",
        "WHISPER_MAX_AUDIO_SECONDS": "60",
        "WHISPER_FETCH_TIMEOUT": "3.5",
        "WHISPER_ALLOW_HTTP": "true",
        "WHISPER_ALLOW_PRIVATE_URLS": "1",
        "WHISPER_CALLBACK_ATTEMPTS": "2",
        "WHISPER_CALLBACK_TIMEOUT": "4",
        "WHISPER_MAX_JOBS": "7",
        "WHISPER_MAX_IDLE_SECONDS": "30",
        "WHISPER_SHUTDOWN_GRACE_SECONDS": "10",
    }
    s = Settings.from_env(env)
    assert s.require_queue() == ("https://sqs/q", "b")
    assert s.dlq_url == "https://sqs/dlq" and s.results_prefix == "out/"
    assert (s.region, s.endpoint_url, s.webhook_secret) == ("eu-west-1", "http://127.0.0.1:5000", "whsec_abc")
    assert s.default_model == "tiny.en" and s.model_dir == Path("/models") and s.model_download
    assert dict(s.model_sources) == {"custom": "/m/custom.pt", "tuned": "s3://b/t.pt"}
    assert s.device == "cpu"
    assert (s.wait_seconds, s.receive_batch) == (20, 10)  # capped at SQS's limits
    assert (s.visibility_timeout, s.retry_base_seconds) == (900, 5)
    assert (s.max_audio_bytes, s.max_audio_seconds, s.fetch_timeout) == (1000, 60.0, 3.5)
    assert s.allow_http and s.allow_private_urls
    assert (s.callback_attempts, s.callback_timeout) == (2, 4.0)
    assert (s.max_jobs, s.max_idle_seconds, s.shutdown_grace) == (7, 30.0, 10.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WHISPER_MAX_JOBS", "many", "must be an integer"),
        ("WHISPER_VISIBILITY_TIMEOUT", "5", "at least 10"),
        ("WHISPER_FETCH_TIMEOUT", "-1", "must not be negative"),
        ("WHISPER_ALLOW_HTTP", "maybe", "true or false"),
        ("WHISPER_MODEL_SOURCES", "justaname", "not name=source"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        Settings.from_env({name: value})
    assert name in str(error.value)


# One value for every variable ``Settings.from_env`` reads, each unlike its default (and valid alone).
SAMPLE_VALUES = {
    "WHISPER_QUEUE_URL": "https://sqs/q",
    "WHISPER_RESULTS_BUCKET": "b",
    "WHISPER_RESULTS_PREFIX": "out",
    "WHISPER_DLQ_URL": "https://sqs/dlq",
    "WHISPER_WEBHOOK_SECRET": "whsec_abc",
    "WHISPER_DEFAULT_MODEL": "tiny.en",
    "WHISPER_MODEL_DIR": "/models",
    "WHISPER_MODEL_DOWNLOAD": "true",
    "WHISPER_MODEL_SOURCES": "custom=/m/custom.pt",
    "WHISPER_MODEL_MIRROR": "https://mirror.example.com/whisper",
    "WHISPER_PRELOAD_MODEL": "false",
    "WHISPER_DEVICE": "cpu",
    "WHISPER_CPU_PRECISION": "fp32",
    "WHISPER_VISIBILITY_TIMEOUT": "900",
    "WHISPER_WAIT_SECONDS": "5",
    "WHISPER_RECEIVE_BATCH": "4",
    "WHISPER_CONCURRENCY": "3",
    "WHISPER_ENGINE": "reference",
    "WHISPER_BATCH_WINDOWS": "16",
    "WHISPER_RETRY_BASE_SECONDS": "5",
    "WHISPER_MAX_AUDIO_BYTES": "1000",
    "WHISPER_MAX_AUDIO_SECONDS": "60",
    "WHISPER_FETCH_TIMEOUT": "3.5",
    "WHISPER_ALLOW_HTTP": "true",
    "WHISPER_ALLOW_PRIVATE_URLS": "true",
    "WHISPER_CALLBACK_ATTEMPTS": "2",
    "WHISPER_CALLBACK_TIMEOUT": "4",
    "WHISPER_MAX_JOBS": "7",
    "WHISPER_MAX_IDLE_SECONDS": "30",
    "WHISPER_SHUTDOWN_GRACE_SECONDS": "10",
    "WHISPER_INTERRUPTION_FILE": "/run/whisper-batch/interruption.json",
    "WHISPER_MAX_RUNTIME_SECONDS": "3600",
    "WHISPER_MAX_DECODED_SECONDS": "7200",
    "WHISPER_JOB_DEADLINE_BASE_SECONDS": "120",
    "WHISPER_JOB_DEADLINE_FACTOR": "2",
    "WHISPER_DIARIZATION_MODEL": "pyannote",
    "WHISPER_DECODER_ISOLATION": "false",
    "WHISPER_DECODER_MEMORY_MB": "2048",
    "WHISPER_DECODER_TIMEOUT_SECONDS": "30",
    "WHISPER_DECODER_TIMEOUT_FACTOR": "0.1",
    "WHISPER_METRICS_NAMESPACE": "Elsewhere",
    "WHISPER_PROGRESS_INTERVAL_SECONDS": "2",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
}
SETTINGS_VARIABLES = {name for name, var in ENVIRONMENT.items() if var.field is not None}


def test_every_settings_variable_has_a_sample_here() -> None:
    # A variable added to ENVIRONMENT without one here fails: the next test would silently skip it.
    assert set(SAMPLE_VALUES) == SETTINGS_VARIABLES


@pytest.mark.parametrize("name", sorted(SETTINGS_VARIABLES))
def test_each_variable_alone_sets_its_field(name: str) -> None:
    field = ENVIRONMENT[name].field
    assert field is not None
    default, set_ = Settings.from_env({}), Settings.from_env({name: SAMPLE_VALUES[name]})
    assert getattr(set_, field) != getattr(default, field), f"{name}={SAMPLE_VALUES[name]} left {field} at its default"
