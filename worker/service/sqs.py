"""The jobs queue: long-poll receive, a heartbeat for messages in hand, batched delete, release, dead-letter."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.aws import SQS_MAX_BATCH, SQS_MAX_MESSAGE_ATTRIBUTE_CHARS, SQS_MAX_VISIBILITY_SECONDS
from worker.ops.logs import logger


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None


@dataclass(frozen=True)
class QueueInfo:
    max_receive_count: int | None
    dlq_url: str | None


class _Deletes:
    """One DeleteMessageBatch request being gathered; its first caller sends it."""

    def __init__(self) -> None:
        self.messages: list[QueueMessage] = []
        self.sent = threading.Event()
        self.failures: dict[int, Exception] = {}


class JobQueue:
    def __init__(self, sqs: Any, queue_url: str, dlq_url: str | None = None) -> None:
        self.sqs = sqs
        self.url = queue_url
        self._dlq_url = dlq_url
        self._deletes_lock = threading.Lock()
        self._gathering: _Deletes | None = None  # the next delete request, open to more messages
        self._deleting = threading.Lock()  # held while a delete request is in flight

    def describe(self) -> QueueInfo:
        """maxReceiveCount and the DLQ's URL, from the queue's redrive policy."""
        policy = aws.redrive_policy(self.sqs, self.url)
        max_receive = int(policy["maxReceiveCount"]) if "maxReceiveCount" in policy else None
        dlq_url = self._dlq_url or aws.dead_letter_queue(self.sqs, policy)
        self._dlq_url = dlq_url
        return QueueInfo(max_receive, dlq_url)

    def receive(self, *, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[QueueMessage]:
        response = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=min(max_messages, SQS_MAX_BATCH),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        return [
            QueueMessage(
                message_id=raw["MessageId"],
                receipt_handle=raw["ReceiptHandle"],
                body=raw.get("Body", ""),
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                sent_timestamp_ms=int(raw["Attributes"]["SentTimestamp"])
                if "SentTimestamp" in raw.get("Attributes", {})
                else None,
            )
            for raw in response.get("Messages", [])
        ]

    def delete(self, message: QueueMessage) -> None:
        """Delete ``message``; returns once it is gone and raises, as a lone delete would, when it could not be.

        A delete is sent at once when no other is in flight. Messages settled while one is in flight (an engine
        pass finishes many jobs together) gather into the next request, up to ten: one request instead of one
        each, and no wait at all for a job that ends alone."""
        with self._deletes_lock:
            batch, first = self._gathering, self._gathering is None
            if batch is None:
                batch = self._gathering = _Deletes()
            index = len(batch.messages)
            batch.messages.append(message)
            if len(batch.messages) == SQS_MAX_BATCH:
                self._gathering = None  # full: the next message starts another
        if first:
            with self._deleting:
                with self._deletes_lock:
                    if self._gathering is batch:
                        self._gathering = None
                self._send_deletes(batch)
        else:
            batch.sent.wait()
        failure = batch.failures.get(index)
        if failure is not None:
            raise failure

    def _send_deletes(self, batch: _Deletes) -> None:
        try:
            response = self.sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch.messages)],
            )
            for failed in response.get("Failed", []):
                error = {"Code": failed.get("Code", "Failed"), "Message": failed.get("Message", "")}
                batch.failures[int(failed["Id"])] = ClientError({"Error": error}, "DeleteMessageBatch")
        except Exception as exc:  # each caller raises it, as its own delete would have
            batch.failures.update(dict.fromkeys(range(len(batch.messages)), exc))
        finally:
            batch.sent.set()

    def set_visibility(self, message: QueueMessage, seconds: int) -> None:
        seconds = max(0, min(int(seconds), SQS_MAX_VISIBILITY_SECONDS))
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
        )

    def extend(self, messages: list[QueueMessage], seconds: int) -> None:
        for start in range(0, len(messages), SQS_MAX_BATCH):
            batch = messages[start : start + SQS_MAX_BATCH]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                    for i, m in enumerate(batch)
                ],
            )

    def dead_letter(self, message: QueueMessage, code: str, reason: str) -> None:
        """Copy the message to the DLQ with the error attached, then delete it from the jobs queue."""
        if not self._dlq_url:
            raise RuntimeError("the jobs queue has no dead-letter queue")
        attributes = {
            "error_code": {"DataType": "String", "StringValue": code},
            "error_message": {
                "DataType": "String",
                "StringValue": reason[:SQS_MAX_MESSAGE_ATTRIBUTE_CHARS] or "-",
            },
            "source_message_id": {"DataType": "String", "StringValue": message.message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        }
        self.sqs.send_message(
            QueueUrl=self._dlq_url, MessageBody=message.body or "(empty)", MessageAttributes=attributes
        )
        self.delete(message)


class Heartbeat:
    """Keeps every message in hand invisible while it waits or is worked on, so long audio is never redelivered."""

    def __init__(self, queue: JobQueue, visibility_timeout: int) -> None:
        self._queue = queue
        self._timeout = visibility_timeout
        self._interval = max(1.0, visibility_timeout / 3)
        self._held: dict[str, QueueMessage] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def hold(self, messages: list[QueueMessage]) -> None:
        with self._lock:
            self._held.update({m.message_id: m for m in messages})

    def release(self, message: QueueMessage) -> None:
        with self._lock:
            self._held.pop(message.message_id, None)

    def held(self) -> list[QueueMessage]:
        with self._lock:
            return list(self._held.values())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            messages = self.held()
            if not messages:
                continue
            try:
                self._queue.extend(messages, self._timeout)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("heartbeat failed; will retry", extra={"error": str(exc)})
