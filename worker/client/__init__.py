"""For backends: submit jobs, follow them, fetch transcripts, price them, read and redrive the dead-letter queue.
Needs only the bare install (boto3, pydantic, rich).

    sdk.py           TranscriptionClient and JobStatus
    errors.py        the client's typed errors
    cli.py           the CLI's backend commands: submit, status, fetch, estimate, dlq
    pricing.py       what a transcription costs, from measured throughput and instance prices
    deadletters.py   reading, inspecting and redriving the dead-letter queue
"""

from worker.client.deadletters import DeadLetter
from worker.client.errors import (
    ConfigurationError,
    EstimateError,
    JobFailed,
    JobNotFound,
    JobValidationError,
    ServiceError,
    TranscriptionError,
    WaitTimeout,
)
from worker.client.pricing import CostEstimate
from worker.client.sdk import DEFAULT_STACK_NAME, TERMINAL_STATES, JobState, JobStatus, TranscriptionClient, new_job_id

__all__ = [
    "DEFAULT_STACK_NAME",
    "TERMINAL_STATES",
    "ConfigurationError",
    "CostEstimate",
    "DeadLetter",
    "EstimateError",
    "JobFailed",
    "JobNotFound",
    "JobState",
    "JobStatus",
    "JobValidationError",
    "ServiceError",
    "TranscriptionClient",
    "TranscriptionError",
    "WaitTimeout",
    "new_job_id",
]
