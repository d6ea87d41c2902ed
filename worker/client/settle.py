"""Settle a dead letter: make sure its job has a final ``result.json`` and its backend heard, then set it aside.

A worker killed while holding a message on its last receive (spot reclaim, native crash, out of memory) writes
nothing; SQS moves the message to the DLQ and, without this, the backend waits forever. ``settle`` keeps the
promise for it: one implementation, run by the settle Lambda on every DLQ message and by ``whisper-worker dlq
settle`` from a laptop. Standard library and boto3 only, because the Lambda runtime has nothing else.

"Already settled" is read from S3, the job's source of truth, so a redelivery, a crash half-way or a second run
changes nothing. The result in ``results/<job_id>/result.json`` (``_invalid-<message id>`` without a job id)
settles the letter when it is final (``completed`` or ``failed``) and either

- names this message (``message_id`` is the id on the jobs queue: the DLQ copy's ``source_message_id``
  when the worker dead-lettered it, else the DLQ message's own id, which SQS's moves keep): "already final";
- or finished at or after this message was sent: another message of the same job id ended later, and a settle
  of this one must not overwrite it: "superseded".

Anything else (no result, an unreadable one, or one an *earlier* run of the job id left before this message was
sent) gets a failed result: the worker's own ``error_code`` when it dead-lettered the message, else
``worker_lost``. A failure callback follows when the body has a ``callback_url``, signed like the worker's and
with the worker's event id, so receivers de-duplicate; its outcome is recorded in the result's ``callback``
record, which is written as "not delivered" before the POST, so a settle that dies in between sends it again next
time. A final result of this message whose record says "not delivered" gets its callback sent again the same way.
Last, the letter goes to the settled-letters queue with its reason attached, where ``dlq list`` and ``dlq
redrive`` find it; without that queue it stays in the DLQ and S3 alone keeps settling idempotent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.aws import SQS_MAX_MESSAGE_ATTRIBUTE_CHARS
from worker.client.deadletters import DeadLetter, DeadLetterQueue
from worker.contract.result import CallbackRecord, ErrorInfo, JobResult, utc_timestamp
from worker.contract.salvage import best_effort_ids, is_legacy_body
from worker.webhooks import WebhookPoster, result_event_id

WORKER_LOST: Final = "worker_lost"
FINAL_STATUSES: Final = ("completed", "failed")
RESULT_CONTENT_TYPE: Final = "application/json; charset=utf-8"
PENDING: Final = "not sent yet: the settle was interrupted"
NO_SECRET: Final = "webhook secret not configured"
_MODEL_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

Action = Literal["settled", "already final", "superseded"]


class SettleError(RuntimeError):
    """S3 or SQS refused or failed: the letter stays in the DLQ, to be settled again."""


@dataclass(frozen=True)
class SettleConfig:
    bucket: str
    results_prefix: str = "results/"
    settled_url: str | None = None  # the settled-letters queue; None leaves settled letters in the DLQ
    allow_http: bool = False  # mirror the worker's WHISPER_ALLOW_HTTP / WHISPER_ALLOW_PRIVATE_URLS
    allow_private: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SettleConfig:
        """From ``WHISPER_RESULTS_BUCKET``, ``WHISPER_RESULTS_PREFIX``, ``WHISPER_SETTLED_URL``,
        ``WHISPER_ALLOW_HTTP`` and ``WHISPER_ALLOW_PRIVATE_URLS``; ``overrides`` that are not None win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "bucket": env.get("WHISPER_RESULTS_BUCKET") or "",
            "results_prefix": env.get("WHISPER_RESULTS_PREFIX") or "results/",
            "settled_url": env.get("WHISPER_SETTLED_URL") or None,
            "allow_http": _true(env.get("WHISPER_ALLOW_HTTP")),
            "allow_private": _true(env.get("WHISPER_ALLOW_PRIVATE_URLS")),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        if not values["bucket"]:
            raise ValueError("no results bucket: set WHISPER_RESULTS_BUCKET")
        values["results_prefix"] = values["results_prefix"].rstrip("/") + "/"
        return cls(**values)


@dataclass(frozen=True)
class Settlement:
    """What settling one letter did."""

    letter: DeadLetter
    folder: str  # results/<folder>/result.json
    action: Action
    status: str  # of the result now in place
    error_code: str | None
    callback: str  # "delivered", "not delivered: ...", "skipped: ...", "not requested", "already delivered"
    forwarded: bool  # moved to the settled-letters queue

    def line(self) -> str:
        code = f" ({self.error_code})" if self.error_code else ""
        moved = ", moved to the settled letters" if self.forwarded else ""
        what = f"{self.action}: {self.status}{code}, callback {self.callback}{moved}"
        return f"{self.letter.job_id or '-'}  {self.letter.message_id}  {what}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.letter.message_id,
            "job_id": self.letter.job_id,
            "folder": self.folder,
            "action": self.action,
            "status": self.status,
            "error_code": self.error_code,
            "callback": self.callback,
            "forwarded": self.forwarded,
        }


def read_secret(secretsmanager: Any, secret_id: str) -> str:
    """The webhook secret (``whsec_...``) stored as the secret's string value, as ECS injects it into workers."""
    try:
        return secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"].strip()
    except (ClientError, BotoCoreError) as exc:
        raise SettleError(f"reading the webhook secret {secret_id} failed: {exc}") from exc


def settle(letter: DeadLetter, *, s3: Any, sqs: Any, config: SettleConfig, poster: WebhookPoster | None) -> Settlement:
    """Settle one dead letter (see the module docstring); SettleError when S3 or SQS fails, so it stays put."""
    job_id, callback_url, metadata = best_effort_ids(letter.body)
    folder = job_id or f"_invalid-{letter.origin_id}"
    key = f"{config.results_prefix}{folder}/result.json"
    try:
        existing = _read(s3, config.bucket, key)
        action = _verdict(existing, letter)
        if action == "settled":
            record = None if not callback_url else CallbackRecord(False, 0, PENDING if poster else NO_SECRET)
            result = replace(_failure(letter, job_id, metadata, config.bucket), callback=record)
            _write(s3, config.bucket, key, result)
        else:
            result = existing
        callback = "not requested"
        if callback_url and action != "superseded":
            event_job_id = job_id or letter.origin_id  # as the worker names a job without an id: its message
            result, callback = _callback(s3, config, key, letter, result, callback_url, poster, event_job_id)
        forwarded = bool(config.settled_url) and _forward(sqs, config.settled_url or "", letter, result)
    except (ClientError, BotoCoreError) as exc:
        raise SettleError(f"{type(exc).__name__}: {exc}") from exc
    code = result.error.code if result.error else None
    return Settlement(letter, folder, action, result.status, code, callback, forwarded)


@dataclass(frozen=True)
class Unsettled:
    """A letter that could not be settled this time, and why; it stays in the DLQ."""

    letter: DeadLetter
    error: str

    def line(self) -> str:
        return f"{self.letter.job_id or '-'}  {self.letter.message_id}  could not settle: {self.error}"


def settle_queue(
    dlq: DeadLetterQueue, *, s3: Any, config: SettleConfig, poster: WebhookPoster | None, limit: int | None = None
) -> Iterator[Settlement | Unsettled]:
    """Settle every letter in the DLQ (up to ``limit``), one outcome each; forwarded ones leave the DLQ."""
    with dlq.held(limit) as letters:
        for letter in letters:
            try:
                outcome = settle(letter, s3=s3, sqs=dlq.sqs, config=config, poster=poster)
                if outcome.forwarded:
                    dlq.remove(letter)
            except SettleError as exc:
                yield Unsettled(letter, str(exc))
                continue
            except (ClientError, BotoCoreError) as exc:  # the delete: forwarded, still here; settled again later
                yield Unsettled(letter, f"{type(exc).__name__}: {exc}")
                continue
            yield outcome


# -------------------------------------------------------------------------------------------- the steps


def _verdict(existing: JobResult | None, letter: DeadLetter) -> Action:
    if existing is None or existing.status not in FINAL_STATUSES:
        return "settled"
    if existing.message_id == letter.origin_id:
        return "already final"
    finished, sent = _epoch(existing.finished_at), _epoch(letter.sent_at)
    if finished is not None and sent is not None and finished >= sent:
        return "superseded"
    return "settled"  # an earlier run's result: this message's outcome is still untold


def _failure(letter: DeadLetter, job_id: str | None, metadata: dict[str, Any], bucket: str) -> JobResult:
    if letter.error_code:  # the worker dead-lettered it, but its result.json did not reach S3
        error = ErrorInfo(letter.error_code, letter.error_message or letter.error_code)
    else:
        receives = f"after {letter.receive_count} receives" if letter.receive_count else "on its last receive"
        error = ErrorInfo(
            WORKER_LOST,
            f"the last worker holding this message stopped before finishing it ({receives}): it was stopped, "
            "reclaimed or crashed",
        )
    fields = _request_fields(letter.body)
    return JobResult(
        job_id=job_id,
        status="failed",
        model=fields.get("model"),
        task=fields.get("task"),
        bucket=bucket,
        error=error,
        metadata=metadata,
        message_id=letter.origin_id,
        attempt=letter.receive_count,
        finished_at=utc_timestamp(),
    )


def _callback(
    s3: Any,
    config: SettleConfig,
    key: str,
    letter: DeadLetter,
    result: JobResult,
    url: str,
    poster: WebhookPoster | None,
    event_job_id: str,
) -> tuple[JobResult, str]:
    """Send the result's callback unless it is known to have arrived; record what happened."""
    record = result.callback
    if record is not None and record.delivered:
        return result, "already delivered"
    if record is None and not letter.moved_by_sqs:
        return result, "already sent by the worker"  # dead-lettered by a worker, which notifies before that
    if poster is None:
        return result, "skipped: no webhook secret"
    shape = "legacy" if is_legacy_body(letter.body) else "v1"
    payload = result.callback_payload(shape, _request_fields(letter.body).get("format"))
    event_id = result_event_id(event_job_id, result.status, result.request_sha256, result.message_id)
    delivery = poster.send(url, payload, event_id=event_id)
    attempts = delivery.attempts + (record.attempts if record else 0)
    result = replace(result, callback=CallbackRecord(delivery.delivered, attempts, delivery.error))
    _write(s3, config.bucket, key, result)
    return result, "delivered" if delivery.delivered else f"not delivered: {delivery.error}"


def _forward(sqs: Any, url: str, letter: DeadLetter, result: JobResult) -> bool:
    code = letter.error_code or WORKER_LOST
    if result.error is not None:
        code, message = result.error.code, result.error.message
    else:
        message = "the job completed, but the last worker holding this message stopped before deleting it"
    attributes = {
        "error_code": code,
        "error_message": message[:SQS_MAX_MESSAGE_ATTRIBUTE_CHARS] or "-",
        "source_message_id": letter.origin_id,
        "job_status": result.status,
        "settled_at": utc_timestamp(),
    }
    message_attributes: dict[str, Any] = {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
    }
    # The result's count when it is this message's: each listing of the DLQ adds one to SQS's own count.
    receives = result.attempt if result.message_id == letter.origin_id and result.attempt else letter.receive_count
    if receives is not None:
        message_attributes["receive_count"] = {"DataType": "Number", "StringValue": str(receives)}
    sqs.send_message(QueueUrl=url, MessageBody=letter.body or "(empty)", MessageAttributes=message_attributes)
    return True


# ------------------------------------------------------------------------------------------------- helpers


def _read(s3: Any, bucket: str, key: str) -> JobResult | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if aws.error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        document = json.loads(body)
    except ValueError:
        return None  # unreadable: as good as absent
    return JobResult.from_dict(document) if isinstance(document, dict) else None


def _write(s3: Any, bucket: str, key: str, result: JobResult) -> None:
    folder = key.rsplit("/", 2)[-2]
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(result.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"),
        ContentType=RESULT_CONTENT_TYPE,
        ContentDisposition=f'inline; filename="{folder}.result.json"',
    )


def _request_fields(body: str) -> dict[str, str]:
    """``model``, ``task`` and the first ``format`` a body names, when they read as such (the legacy shape
    spells the formats ``format``)."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    fields: dict[str, str] = {}
    model = data.get("model")
    if isinstance(model, str) and _MODEL_RE.fullmatch(model.lower()):
        fields["model"] = model.lower()
    if data.get("task") in ("transcribe", "translate"):
        fields["task"] = data["task"]
    formats = data.get("formats", data.get("format"))
    first = formats[0] if isinstance(formats, list) and formats else formats
    if isinstance(first, str):
        fields["format"] = first.lower()
    return fields


def _epoch(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
