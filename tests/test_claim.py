"""Two workers never both transcribe one job: the S3 claim, alone and through two real workers."""

from __future__ import annotations

import pytest

from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL
from worker.local.moto_server import LocalAws
from worker.service.app import build_engine
from worker.service.claim import ClaimHeld, ClaimStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_claim_is_exclusive_until_released_or_expired(local_aws: LocalAws) -> None:
    clock = Clock()
    claims = ClaimStore(local_aws.client("s3"), local_aws.resources.bucket, clock=clock)
    first = claims.acquire("results/j/.claim", "worker-a", 30)
    with pytest.raises(ClaimHeld) as held:
        claims.acquire("results/j/.claim", "worker-b", 30)
    assert held.value.owner == "worker-a" and 29 <= held.value.seconds_left <= 30

    assert claims.renew(first, "worker-a", 30)  # the holder may renew with the etag it holds
    clock.now += 31  # worker-a vanished and its lease ran out
    second = claims.acquire("results/j/.claim", "worker-b", 30)
    assert not claims.renew(first, "worker-a", 30)  # a stale holder cannot overwrite the new claim
    with pytest.raises(ClaimHeld):
        claims.acquire("results/j/.claim", "worker-a", 30)

    claims.release(second)
    claims.acquire("results/j/.claim", "worker-a", 30)


def test_a_claim_left_by_a_dead_holder_of_the_same_message_is_taken_over_once_it_missed_a_renewal(
    local_aws: LocalAws,
) -> None:
    """A live holder renews every third of its lease; below half, the holder of this very message is gone and its
    redelivery need not wait (and pay another receive) for the rest of the lease. Another message still waits."""
    clock = Clock()
    claims = ClaimStore(local_aws.client("s3"), local_aws.resources.bucket, clock=clock)
    claims.acquire("results/j/.claim", "host-a:1:message-1", 30)
    with pytest.raises(ClaimHeld):  # renewed on time: alive
        claims.acquire("results/j/.claim", "host-b:2:message-1", 30)
    assert claims.holder("results/j/.claim") == "host-a:1:message-1"

    clock.now += 16  # a renewal was due at 10 s and never came
    with pytest.raises(ClaimHeld):  # a different message of the same job waits out the lease as before
        claims.acquire("results/j/.claim", "host-b:2:message-2", 30)
    claims.acquire("results/j/.claim", "host-b:2:message-1", 30)
    assert claims.holder("results/j/.claim") == "host-b:2:message-1"


def test_same_job_delivered_to_two_workers_at_once_is_transcribed_once(harness: Harness) -> None:
    audio = harness.upload(JFK, "audio/twice.flac")
    body = {"job_id": "twice", "audio": audio, "model": TEST_MODEL, "callback_url": harness.receiver.url}
    harness.send(body)
    harness.send(body)  # a backend retry: a second message for the same job

    settings = harness.settings.with_overrides(receive_batch=1, visibility_timeout=4, max_idle_seconds=8.0)
    stats = harness.run_workers_together(settings, [harness.engine, build_engine(settings)])

    assert sum(s.completed for s in stats) == 1
    assert sum(s.duplicates for s in stats) == 1
    assert sum(s.busy for s in stats) >= 1  # the second delivery met the first worker's claim
    assert harness.queue_depth() == 0
    assert len(harness.receiver.wait_for(1, timeout=5)) == 1
    # status.json appears only when the job outlives the progress interval, which a loaded machine can make it do.
    assert [key for key in harness.object_keys("results/twice/") if not key.endswith("/status.json")] == [
        "results/twice/result.json",
        "results/twice/transcript.json",
    ]
