"""Signed callbacks against a real HTTP receiver on loopback (no mocks of the sender or receiver)."""

from __future__ import annotations

import base64
import itertools
import socket
import threading
import time

import pytest
from standardwebhooks.webhooks import EmptyWebhookSecretError

from worker.local.receiver import CallbackReceiver
from worker.service.callback import USER_AGENT, CallbackOutcome, CallbackPolicy, CallbackSender, webhook_id

SECRET = "whsec_" + base64.b64encode(b"a-test-secret-of-32-bytes-length").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()

FAST = CallbackPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=2.0)

PAYLOAD = {
    "job_id": "job-123",
    "status": "succeeded",
    "text": "héllo wörld — ünïcode ✓",
    "duration_s": 12.5,
    "outputs": {"json": "s3://bucket/job-123/transcript.json"},
}


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_delivered_once_with_valid_signature() -> None:
    with CallbackReceiver(SECRET) as rx, CallbackSender(SECRET, FAST) as sender:
        outcome = sender.send(rx.url, PAYLOAD, event_id="job-123:succeeded")
        assert outcome == CallbackOutcome(delivered=True, attempts=1, status_code=200, error=None)
        assert rx.arrivals == 1
        (got,) = rx.wait_for(1, timeout=5)

    assert got.signature_valid
    assert got.payload == PAYLOAD
    assert got.path == "/hook"
    assert got.headers["webhook-id"] == webhook_id("job-123:succeeded")
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("whisper-batch/")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    # compact JSON, UTF-8, exactly the signed bytes
    assert (
        got.body
        == (
            '{"job_id":"job-123","status":"succeeded","text":"héllo wörld — ünïcode ✓","duration_s":12.5,'
            '"outputs":{"json":"s3://bucket/job-123/transcript.json"}}'
        ).encode()
    )


def test_wrong_secret_gives_invalid_signature() -> None:
    with CallbackReceiver(OTHER_SECRET) as rx, CallbackSender(SECRET, FAST) as sender:
        outcome = sender.send(rx.url, PAYLOAD, event_id="job-123:succeeded")
        (got,) = rx.wait_for(1, timeout=5)
    assert outcome.delivered  # the receiver answered 200; only its check tells the signature is bad
    assert got.signature_valid is False
    assert got.payload == PAYLOAD


def test_webhook_id_is_stable_per_event() -> None:
    assert webhook_id("job-1:succeeded") == webhook_id("job-1:succeeded")
    assert webhook_id("job-1:succeeded") != webhook_id("job-1:failed")


def test_500_then_200_retries_with_same_id_and_fresh_timestamp() -> None:
    sleep = RecordingSleep()
    # a clock that moves 7 s per attempt, so "fresh per attempt" is visible in whole seconds
    ticks = itertools.count()
    start = time.time()

    def clock() -> float:
        return start + 7 * next(ticks)

    with (
        CallbackReceiver(SECRET, responses=[500]) as rx,
        CallbackSender(SECRET, FAST, sleep=sleep, clock=clock) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="job-9:succeeded")
        first, second = rx.wait_for_requests(2, timeout=5)
        delivered = rx.wait_for(1, timeout=5)

    assert outcome == CallbackOutcome(delivered=True, attempts=2, status_code=200, error=None)
    assert (first.status, second.status) == (500, 200)
    assert delivered == [second]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == webhook_id("job-9:succeeded")
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 7
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.signature_valid and second.signature_valid
    assert len(sleep.delays) == 1
    assert 0 <= sleep.delays[0] <= FAST.base_delay


def test_retry_after_is_honoured() -> None:
    sleep = RecordingSleep()
    policy = CallbackPolicy(attempts=4, base_delay=0.01, max_delay=60.0, timeout=2.0)
    with (
        CallbackReceiver(SECRET, responses=["429 Retry-After: 3", 200]) as rx,
        CallbackSender(SECRET, policy, sleep=sleep) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        rx.wait_for(1, timeout=5)
    assert outcome.delivered and outcome.attempts == 2
    assert sleep.delays == [3.0]


def test_retry_after_is_capped_at_max_delay() -> None:
    sleep = RecordingSleep()
    with (
        CallbackReceiver(SECRET, responses=["429 Retry-After: 3600", "429 Retry-After: 0"]) as rx,
        CallbackSender(SECRET, FAST, sleep=sleep) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        rx.wait_for(1, timeout=5)
    assert outcome.delivered and outcome.attempts == 3
    assert sleep.delays == [FAST.max_delay, 0.0]


def test_backoff_delays_follow_policy_bounds() -> None:
    sleep = RecordingSleep()
    policy = CallbackPolicy(attempts=6, base_delay=0.01, max_delay=0.05, timeout=2.0)
    with (
        CallbackReceiver(SECRET, responses=[503, 502, 500, 408, 429, 500]) as rx,
        CallbackSender(SECRET, policy, sleep=sleep) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        requests = rx.wait_for_requests(6, timeout=5)
    assert outcome == CallbackOutcome(delivered=False, attempts=6, status_code=500, error='HTTP 500: {"ok":false}')
    assert [r.status for r in requests] == [503, 502, 500, 408, 429, 500]
    assert rx.received == []
    assert len(sleep.delays) == 5  # no sleep after the last attempt
    for n, delay in enumerate(sleep.delays):
        assert 0 <= delay <= min(policy.max_delay, policy.base_delay * 2**n)


def test_client_timeout_is_retried() -> None:
    policy = CallbackPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=0.3)
    with (
        CallbackReceiver(SECRET, responses=[1.0, 200]) as rx,
        CallbackSender(SECRET, policy) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        (got,) = rx.wait_for(1, timeout=5)
        slow, fast = rx.wait_for_requests(2, timeout=5)
    assert outcome == CallbackOutcome(delivered=True, attempts=2, status_code=200, error=None)
    # It gave up on the slow answer instead of waiting for it: the client had hung up by the time the receiver answered.
    assert slow.status is None
    assert got is fast and got.signature_valid
    assert slow.headers["webhook-id"] == fast.headers["webhook-id"]


def test_connection_refused_is_not_raised() -> None:
    sleep = RecordingSleep()
    url = f"http://127.0.0.1:{free_port()}/hook"
    with CallbackSender(SECRET, FAST, sleep=sleep) as sender:
        outcome = sender.send(url, PAYLOAD, event_id="e")
    assert not outcome.delivered
    assert outcome.attempts == FAST.attempts
    assert outcome.status_code is None
    assert outcome.error and "Connect" in outcome.error
    assert len(sleep.delays) == FAST.attempts - 1


def test_dropped_connection_is_retried() -> None:
    with (
        CallbackReceiver(SECRET, responses=["drop"]) as rx,
        CallbackSender(SECRET, FAST, sleep=RecordingSleep()) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        rx.wait_for(1, timeout=5)
        dropped, answered = rx.wait_for_requests(2, timeout=5)
    assert outcome.delivered and outcome.attempts == 2
    assert (dropped.status, answered.status) == (None, 200)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_is_not_retried(status: int) -> None:
    sleep = RecordingSleep()
    with (
        CallbackReceiver(SECRET, responses=[status]) as rx,
        CallbackSender(SECRET, FAST, sleep=sleep) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        assert rx.arrivals == 1
        rx.wait_for_requests(1, timeout=5)
    assert outcome == CallbackOutcome(
        delivered=False, attempts=1, status_code=status, error=f'HTTP {status}: {{"ok":false}}'
    )
    assert sleep.delays == []
    assert rx.received == []


def test_redirect_is_not_followed() -> None:
    with (
        CallbackReceiver(SECRET) as target,
        CallbackReceiver(SECRET, responses=[f"302 Location: {target.url}"]) as rx,
        CallbackSender(SECRET, FAST, sleep=RecordingSleep()) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        assert (rx.arrivals, target.arrivals) == (1, 0)
    assert not outcome.delivered
    assert outcome.attempts == 1 and outcome.status_code == 302
    assert outcome.error and "redirect not followed" in outcome.error


def test_url_guard_rejection_sends_nothing() -> None:
    def guard(url: str) -> None:
        raise ValueError(f"{url} resolves to a private address")

    with CallbackReceiver(SECRET) as rx, CallbackSender(SECRET, FAST, url_guard=guard) as sender:
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        assert rx.arrivals == 0
    assert not outcome.delivered
    assert outcome.attempts == 0 and outcome.status_code is None
    assert outcome.error and "private address" in outcome.error


def test_url_guard_runs_before_every_attempt() -> None:
    seen: list[str] = []

    def guard(url: str) -> None:
        seen.append(url)
        if len(seen) > 1:
            raise RuntimeError("blocked on re-check")

    with (
        CallbackReceiver(SECRET, responses=[500]) as rx,
        CallbackSender(SECRET, FAST, sleep=RecordingSleep()) as sender,
    ):
        outcome = sender.send(rx.url, PAYLOAD, event_id="e", url_guard=guard)
        assert rx.arrivals == 1
    assert seen == [rx.url, rx.url]
    assert outcome == CallbackOutcome(
        delivered=False, attempts=1, status_code=500, error="url rejected: blocked on re-check"
    )


def test_error_body_is_read_capped() -> None:
    policy = CallbackPolicy(attempts=2, base_delay=0.01, max_delay=0.05, timeout=2.0, max_response_bytes=4)
    with CallbackReceiver(SECRET, responses=[400]) as rx, CallbackSender(SECRET, policy) as sender:
        outcome = sender.send(rx.url, PAYLOAD, event_id="e")
        rx.wait_for_requests(1, timeout=5)
    assert outcome.error == 'HTTP 400: {"ok'


def test_huge_response_body_is_not_read() -> None:
    """A server that answers 200 with a 'gigabyte' body: the sender stops after its cap."""
    sent = {"bytes": 0}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            chunk = b"x" * 65536
            try:
                while sent["bytes"] < 1_000_000_000:
                    conn.sendall(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:
                pass  # the client hung up after reading its share

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    policy = CallbackPolicy(attempts=1, timeout=5.0, max_response_bytes=1024)
    try:
        with CallbackSender(SECRET, policy) as sender:
            outcome = sender.send(f"http://127.0.0.1:{port}/hook", PAYLOAD, event_id="e")
        thread.join(timeout=10)
    finally:
        listener.close()
    assert outcome.delivered and outcome.status_code == 200
    assert not thread.is_alive()
    assert sent["bytes"] < 100_000_000


def test_bad_secret_fails_at_construction() -> None:
    with pytest.raises(EmptyWebhookSecretError, match="may not be empty"):
        CallbackSender("whsec_", FAST)
