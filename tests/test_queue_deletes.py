"""Finished messages leave the queue in shared requests: jobs that end together cost one delete, not one each."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.support.together import all_at_once
from worker import aws
from worker.local.moto_server import LocalAws
from worker.local.proxy import LoopbackProxy
from worker.service.sqs import JobQueue, QueueMessage


def _received(sqs: object, url: str, count: int) -> list[QueueMessage]:
    for i in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=f"job-{i}")
    queue = JobQueue(sqs, url)
    messages: list[QueueMessage] = []
    while len(messages) < count:
        messages += queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=60)
    return messages


def _delete_together(queue: JobQueue, messages: list[QueueMessage]) -> dict[str, Exception | None]:
    outcome: dict[str, Exception | None] = {}

    def delete(message: QueueMessage) -> None:
        try:
            queue.delete(message)
            outcome[message.body] = None
        except ClientError as exc:
            outcome[message.body] = exc

    all_at_once(delete, messages, 30)
    return outcome


@pytest.fixture
def aws_counted() -> object:
    with LocalAws(own_process=True) as local:
        assert local.resources is not None
        proxy = LoopbackProxy(
            local.resources.endpoint_url, latency=0.5
        )  # a request in flight long enough to join, even on a loaded machine
        try:
            sqs = aws.client("sqs", region="us-east-1", endpoint_url=proxy.url)
            yield sqs, local.resources.queue_url, proxy
        finally:
            proxy.close()


def test_messages_settled_together_share_one_delete(aws_counted: tuple) -> None:
    sqs, url, proxy = aws_counted
    messages = _received(sqs, url, 12)
    proxy.counts.clear()
    outcome = _delete_together(JobQueue(sqs, url), messages)
    assert outcome == {m.body: None for m in messages}
    # the first goes at once; the others gather behind it, ten to a request at most
    assert set(proxy.counts) == {"sqs.DeleteMessageBatch"} and 2 <= proxy.counts["sqs.DeleteMessageBatch"] <= 3
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_message_that_cannot_be_deleted_fails_alone(aws_counted: tuple) -> None:
    sqs, url, proxy = aws_counted
    *good, stale = _received(sqs, url, 6)
    stale = QueueMessage(stale.message_id, "not-a-receipt-handle", stale.body, 1, None)
    proxy.counts.clear()
    outcome = _delete_together(JobQueue(sqs, url), [*good, stale])
    assert proxy.counts["sqs.DeleteMessageBatch"] <= 2  # it shared a request with good ones
    assert isinstance(outcome.pop(stale.body), ClientError)
    assert outcome == {m.body: None for m in good}


def test_a_lone_delete_goes_at_once(aws_counted: tuple) -> None:
    sqs, url, proxy = aws_counted
    [message] = _received(sqs, url, 1)
    proxy.counts.clear()
    JobQueue(sqs, url).delete(message)  # returns with its own request made: no waiting for company
    assert dict(proxy.counts) == {"sqs.DeleteMessageBatch": 1}
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=0).get("Messages")
