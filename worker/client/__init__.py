"""For backends: submit jobs, follow them, fetch transcripts, price them, read and redrive the dead-letter queue.
Needs only the bare install (boto3, pydantic, rich).

    sdk.py           TranscriptionClient and JobStatus
    errors.py        the client's typed errors
    cli.py           the CLI's backend commands: submit, status, fetch, estimate, dlq
    pricing.py       what a transcription costs, from measured throughput and instance prices
    deadletters.py   reading, inspecting and redriving the dead-letter queue (and the settled-letters queue)
    smoke.py         ``whisper-worker smoke``: a deployment proved end to end, through the queue and the HTTPS API
    settle.py        settling a dead letter: final result.json, failure callback, on to the settled letters;
                     standard library and boto3 only, run by the settle Lambda and ``whisper-worker dlq settle``
"""

from importlib import import_module
from typing import Any

# Loaded on first use, so the CLI's client commands (worker.client.cli) start without boto3.
_EXPORTS = {
    "DeadLetter": "worker.client.deadletters",
    "Settlement": "worker.client.settle",
    "ConfigurationError": "worker.client.errors",
    "EstimateError": "worker.client.errors",
    "JobFailed": "worker.client.errors",
    "JobNotFound": "worker.client.errors",
    "JobValidationError": "worker.client.errors",
    "ServiceError": "worker.client.errors",
    "TranscriptionError": "worker.client.errors",
    "WaitTimeout": "worker.client.errors",
    "CostEstimate": "worker.client.pricing",
    "DEFAULT_STACK_NAME": "worker.client.sdk",
    "TERMINAL_STATES": "worker.client.sdk",
    "JobState": "worker.client.sdk",
    "JobStatus": "worker.client.sdk",
    "TranscriptionClient": "worker.client.sdk",
    "new_job_id": "worker.client.sdk",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worker.client' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
