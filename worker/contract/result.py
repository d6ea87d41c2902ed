"""What a finished job leaves behind: ``result.json``, and the callback payload made from it.

Built by the worker's pipeline, stored by its result store, read back on a redelivery, parsed by the client:
one model for all of them. Standard library only, like the rest of the contract's readers need.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final

RESULT_VERSION: Final = 1

# What a callback carries of the result (docs/reference/results.md); the rest stays in result.json.
CALLBACK_FIELDS: Final = (
    "job_id",
    "status",
    "bucket",
    "results",
    "language",
    "duration_seconds",
    "processing_seconds",
    "model",
    "error",
    "metadata",
    "speakers",
)

# What each field of ``result.json`` means: docs/reference/results.md is generated from this and ``JobResult``
# (``python -m scripts.docs_reference``), and tests/test_docs_reference.py checks every field has a line.
RESULT_FIELDS: Final = {
    "version": "document version, 1",
    "job_id": "the message's `job_id`; null when the body was too broken to carry one",
    "status": "`completed` (every transcript is in place) or `failed` (`error` says why)",
    "model": "the model that transcribed it",
    "task": "`transcribe` or `translate`",
    "language": "the spoken language's code, given or detected",
    "duration_seconds": "the audio's length",
    "processing_seconds": "seconds the worker spent, from fetching the audio to storing the transcripts",
    "bucket": "the results bucket",
    "results": "format -> S3 key of each transcript (`results/<job_id>/transcript.<fmt>`)",
    "error": "`{code, message}` when failed (see Failure codes), else null",
    "metadata": "the message's `metadata`, echoed",
    "request_sha256": "the request's fingerprint: a redelivered finished job is recognised by it",
    "message_id": "the SQS message id of the receive that finished it",
    "attempt": "the SQS receive count of that receive",
    "finished_at": "when it finished, ISO 8601 UTC",
    "text_preview": "the transcript's first characters; only when known",
    "speech_seconds": "seconds of speech that voice activity detection found (0: a recording without speech, "
    "transcribed as empty); only when `vad` was on",
    "speakers": 'diarized jobs: each speaker\'s talk time, `[{"speaker": "SPEAKER_00", "seconds": 12.345}, ...]` in '
    "order of first appearance; only when diarized",
    "callback": "once a callback was tried: `delivered`, `attempts` and the last `error`",
}


def utc_timestamp(timespec: str = "seconds", at: float | None = None) -> str:
    """Now (or the epoch seconds ``at``) in ISO 8601 with the UTC offset: how every document is dated."""
    moment = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec=timespec)


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True)
class CallbackRecord:
    """Whether the result's callback arrived, so a redelivery of a finished job can send it again if not."""

    delivered: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class JobResult:
    """``result.json``: ``completed`` (every transcript is in place) or ``failed`` (``error`` says why)."""

    job_id: str | None
    status: str
    model: str | None = None
    task: str | None = None
    language: str | None = None
    duration_seconds: float | None = None
    processing_seconds: float | None = None
    bucket: str | None = None
    results: dict[str, str] = field(default_factory=dict)  # format -> S3 key
    error: ErrorInfo | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    request_sha256: str | None = None  # the request's fingerprint: a redelivered finished job is recognised
    message_id: str | None = None
    attempt: int | None = None
    finished_at: str | None = None
    text_preview: str | None = None
    speech_seconds: float | None = None  # what voice activity detection found; None when it was off
    speakers: list[dict[str, Any]] | None = None  # diarized jobs: [{"speaker": "SPEAKER_00", "seconds": 12.3}]
    callback: CallbackRecord | None = None
    version: int = RESULT_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; ``text_preview``, ``speech_seconds``, ``speakers`` and ``callback`` only when they are
        known."""
        data: dict[str, Any] = {"version": self.version}
        for item in fields(self):
            if item.name == "version":
                continue
            value = getattr(self, item.name)
            if item.name in ("text_preview", "speech_seconds", "speakers", "callback") and value is None:
                continue
            if isinstance(value, ErrorInfo | CallbackRecord):
                value = {f.name: getattr(value, f.name) for f in fields(value)}
            data[item.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Parse a stored document; unknown keys (from a newer worker) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("error"), dict):
            values["error"] = ErrorInfo(str(values["error"].get("code")), str(values["error"].get("message")))
        if isinstance(values.get("callback"), dict):
            raw = values["callback"]
            attempts = int(raw.get("attempts") or 0)
            values["callback"] = CallbackRecord(bool(raw.get("delivered")), attempts, raw.get("error"))
        values.setdefault("job_id", None)
        values.setdefault("status", "failed")
        return cls(**values)

    def callback_payload(self, shape: str = "v1", result_format: str | None = None) -> dict[str, Any]:
        """The callback's JSON; the ``legacy`` shape adds what backends built on the legacy job shape read, with
        ``result_format``'s transcript as ``s3ResultUrl``."""
        document = self.to_dict()
        payload = {name: document.get(name) for name in CALLBACK_FIELDS}
        if shape != "legacy":
            return payload
        key = self.results.get(result_format) if result_format else None
        payload.update(
            transcriptionId=self.job_id,
            userId=self.metadata.get("userId"),
            status="COMPLETED" if self.succeeded else "FAILED",
            s3ResultUrl=f"s3://{self.bucket}/{key}" if key else None,
            durationSeconds=self.duration_seconds,
            processingTime=self.processing_seconds,
        )
        if self.error is not None:
            payload.update(error=self.error.message, error_code=self.error.code)
        return payload
