"""What a backend using ``worker.client`` can catch, and what each error tells it to do.

    TranscriptionError            base: catch this to handle everything the client raises
    ├── ConfigurationError        no queue URL / bucket / stack outputs: fix the setup, do not retry
    ├── JobValidationError        the job breaks the message contract (``.errors`` names each field): fix the job
    ├── JobNotFound               no such job result, transcript format or dead letter (yet): check the id / wait
    ├── JobFailed                 the job finished with ``status: failed`` (``.code``, ``.message`` as in README)
    ├── WaitTimeout               the job did not finish in time (``.status`` is the last state seen): wait longer
    ├── EstimateError             a cost estimate for an unknown model or instance, or a bad duration
    └── ServiceError              S3, SQS or CloudFormation refused or was unreachable: retry later

AWS's own exceptions never escape the client: they arrive as ``ServiceError`` with the AWS error code kept,
so a backend needs no botocore import to handle failures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client import JobStatus


class TranscriptionError(Exception):
    """Base of every error the client raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(TranscriptionError):
    """The client cannot tell which queue or bucket to use."""


class JobValidationError(TranscriptionError, ValueError):
    """The job would be rejected by the worker; nothing was sent or uploaded."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, str]] = errors or [{"field": "body", "message": message}]


class JobNotFound(TranscriptionError, LookupError):
    """The job (or the requested transcript format, or dead letter) does not exist, or not yet."""


class JobFailed(TranscriptionError):
    """The worker finished the job with a failure; ``code`` is one of README's failure codes."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} failed: {code}: {message}")
        self.job_id = job_id
        self.code = code
        self.reason = message


class WaitTimeout(TranscriptionError, TimeoutError):
    """``wait()`` gave up; the job may still finish later."""

    def __init__(self, message: str, status: JobStatus) -> None:
        super().__init__(message)
        self.status = status


class EstimateError(TranscriptionError, ValueError):
    """``estimate_cost`` has no figure for the model or instance type, or the duration is unreadable."""


class ServiceError(TranscriptionError):
    """An AWS call failed after botocore's own retries; ``aws_code`` is AWS's error code when there was one."""

    def __init__(self, message: str, aws_code: str | None = None) -> None:
        super().__init__(message)
        self.aws_code = aws_code
