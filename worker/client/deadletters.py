"""Reading and redriving the dead-letter queue from the backend's side (``worker.client`` and the CLI).

A message reaches the DLQ one of two ways:

- the worker put it there after a permanent failure, with message attributes ``error_code``, ``error_message``,
  ``source_message_id`` and ``receive_count`` (see ``worker.service.sqs.JobQueue.dead_letter``);
- SQS moved it after ``maxReceiveCount`` receives (transient failures that never passed, or a worker killed
  again and again): no attributes, only SQS's own ``ApproximateReceiveCount``.

A settled letter (``worker.client.settle``) waits in the settled-letters queue instead, with the same attributes
plus ``settled_at``: its job has a final ``result.json`` and its callback went out; it is listed and redriven
like any other.

SQS has no "peek": listing receives the messages, keeping them invisible while we look, and hands them back
(visibility 0) afterwards. Each listing therefore adds one to ``ApproximateReceiveCount``; the count shown for
a message SQS moved discounts our own receive, not earlier listings.

Standard library only (boto3 clients are passed in): the settle Lambda reads its records with ``parse`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from worker.aws import SQS_MAX_BATCH
from worker.contract.result import utc_timestamp
from worker.contract.salvage import best_effort_ids

HOLD_SECONDS: Final = 300  # how long listed messages stay invisible at most, should we die before handing back
SCAN_LIMIT: Final = 10_000  # how many messages one redrive looks through at most


@dataclass(frozen=True)
class DeadLetter:
    """One message in the DLQ and why it is there."""

    message_id: str
    job_id: str | None  # from the body, when it names a valid one
    error_code: str | None  # the worker's failure code; None when SQS moved it
    error_message: str | None
    source_message_id: str | None  # the message's id on the jobs queue
    receive_count: int | None  # receives on the jobs queue before it landed here
    moved_by_sqs: bool
    sent_at: str | None  # when it entered the DLQ (SQS moves keep the original send time), ISO 8601
    body: str
    receipt_handle: str = field(repr=False, default="")
    settled_at: str | None = None  # when it was settled and moved to the settled-letters queue

    @property
    def origin_id(self) -> str:
        """The message's id on the jobs queue (SQS's own moves keep the id): what its result.json names."""
        return self.source_message_id or self.message_id

    @property
    def reason(self) -> str:
        if self.moved_by_sqs:
            after = f" after {self.receive_count} receives" if self.receive_count else ""
            return f"(moved by SQS{after})"
        return f"{self.error_code}: {self.error_message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "job_id": self.job_id,
            "reason": self.reason,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "source_message_id": self.source_message_id,
            "receive_count": self.receive_count,
            "moved_by_sqs": self.moved_by_sqs,
            "sent_at": self.sent_at,
            "settled_at": self.settled_at,
            "body": self.body,
        }


def parse(raw: dict[str, Any]) -> DeadLetter:
    """A DeadLetter from one ReceiveMessage entry (asked with all message and system attributes)."""
    attributes = {name: value.get("StringValue") for name, value in raw.get("MessageAttributes", {}).items()}
    system = raw.get("Attributes", {})
    body = raw.get("Body", "")
    moved_by_sqs = "error_code" not in attributes
    if moved_by_sqs:
        received = _int(system.get("ApproximateReceiveCount"))
        receive_count = max(received - 1, 1) if received else None  # minus this very receive
    else:
        receive_count = _int(attributes.get("receive_count"))
    sent_ms = _int(system.get("SentTimestamp"))
    return DeadLetter(
        message_id=raw["MessageId"],
        job_id=best_effort_ids(body)[0],
        error_code=attributes.get("error_code"),
        error_message=attributes.get("error_message"),
        source_message_id=attributes.get("source_message_id"),
        receive_count=receive_count,
        moved_by_sqs=moved_by_sqs,
        sent_at=utc_timestamp(at=sent_ms / 1000) if sent_ms else None,
        body=body,
        receipt_handle=raw["ReceiptHandle"],
        settled_at=attributes.get("settled_at"),
    )


def from_lambda_record(record: dict[str, Any]) -> DeadLetter:
    """A DeadLetter from one record of an SQS event (Lambda spells ReceiveMessage's fields in camelCase)."""
    attributes = {
        name: {"StringValue": value.get("stringValue"), "DataType": value.get("dataType")}
        for name, value in (record.get("messageAttributes") or {}).items()
    }
    return parse(
        {
            "MessageId": record["messageId"],
            "ReceiptHandle": record.get("receiptHandle", ""),
            "Body": record.get("body", ""),
            "Attributes": record.get("attributes") or {},
            "MessageAttributes": attributes,
        }
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class DeadLetterQueue:
    """The DLQ, through one SQS client: hold its messages to look at them, move some back, release the rest."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url
        self._moved: set[str] = set()

    @contextmanager
    def held(self, limit: int | None = None) -> Iterator[list[DeadLetter]]:
        """Receive up to ``limit`` messages (``SCAN_LIMIT`` when None) and hand back every one not moved."""
        letters: list[DeadLetter] = []
        self._moved.clear()
        try:
            self._receive_into(letters, SCAN_LIMIT if limit is None else limit)
            yield letters
        finally:
            self._release([d for d in letters if d.message_id not in self._moved])

    def move(self, letter: DeadLetter, queue_url: str, attributes: dict[str, Any] | None = None) -> None:
        """Send the original body (with ``attributes``, if any) to ``queue_url`` as a new message, then delete it
        here (at least once)."""
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": letter.body}
        if attributes:
            params["MessageAttributes"] = attributes
        if queue_url.endswith(".fifo"):
            group = letter.job_id or letter.message_id
            params |= {"MessageGroupId": group, "MessageDeduplicationId": letter.message_id}
        self.sqs.send_message(**params)
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)
        self._moved.add(letter.message_id)

    def remove(self, letter: DeadLetter) -> None:
        """Delete ``letter`` here (it was forwarded elsewhere), so it is not handed back."""
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)
        self._moved.add(letter.message_id)

    def _receive_into(self, letters: list[DeadLetter], limit: int) -> None:
        seen: set[str] = set()
        while len(letters) < limit:
            response = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH, limit - len(letters)),
                WaitTimeSeconds=1,  # a long poll asks every SQS server; a short one may miss messages
                VisibilityTimeout=HOLD_SECONDS,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            fresh = [raw for raw in response.get("Messages", []) if raw["MessageId"] not in seen]
            if not fresh:
                return
            for raw in fresh:
                seen.add(raw["MessageId"])
                letters.append(parse(raw))

    def _release(self, letters: list[DeadLetter]) -> None:
        for start in range(0, len(letters), SQS_MAX_BATCH):
            batch = letters[start : start + SQS_MAX_BATCH]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": 0}
                    for i, d in enumerate(batch)
                ],
            )
