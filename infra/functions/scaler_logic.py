"""How many worker jobs to submit: a pure function of the queue depth and the workers already on their way.

A worker is a long-running loop that drains many messages and exits after an idle period, so the scaler only
ever adds workers: enough that each has about ``messages_per_worker`` messages (waiting or in flight), never
more than ``max_workers`` in total, and none at all while no message is waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# Batch's SubmitJob is throttled at 50 calls per second per account; stay well under it in one run.
MAX_SUBMITS_PER_RUN: Final = 20


@dataclass(frozen=True)
class Observation:
    visible: int  # ApproximateNumberOfMessages: waiting for a worker
    in_flight: int  # ApproximateNumberOfMessagesNotVisible: held by a worker or backing off after a failure
    active_workers: int  # worker jobs SUBMITTED, PENDING, RUNNABLE, STARTING or RUNNING


@dataclass(frozen=True)
class Decision:
    desired_workers: int
    submit: int


def decide(observation: Observation, *, max_workers: int, messages_per_worker: int) -> Decision:
    """Workers wanted for the current backlog, and how many new jobs that takes."""
    if max_workers < 0 or messages_per_worker < 1:
        raise ValueError("max_workers must be >= 0 and messages_per_worker >= 1")
    visible = max(observation.visible, 0)
    in_flight = max(observation.in_flight, 0)
    active = max(observation.active_workers, 0)
    if visible == 0:
        return Decision(desired_workers=min(active, max_workers), submit=0)
    desired = min(math.ceil((visible + in_flight) / messages_per_worker), max_workers)
    return Decision(desired_workers=desired, submit=min(max(desired - active, 0), MAX_SUBMITS_PER_RUN))


# ------------------------------------------------------------------------------------- fast-failure back-off

# A worker that stops this soon after starting did not fail on a message (the worker retries or dead-letters those
# itself and keeps going): it cannot run at all (a bad image, an unreadable secret, a model it cannot load).
FAST_FAILURE_SECONDS: Final = 5 * 60
# This many fast failures within the window say the next worker will fail the same way...
FAST_FAILURE_THRESHOLD: Final = 3
FAST_FAILURE_WINDOW_SECONDS: Final = 30 * 60
# ...so submit nothing for this long after the latest one, then one worker at a time (only while none is active)
# until the failures age out of the window: a crash loop costs one instance start every cool-down, not one a minute.
COOL_DOWN_SECONDS: Final = 10 * 60
# Batch's statusReason when the job queue cancels a worker stuck RUNNABLE for want of capacity: not a crash.
CAPACITY_REASON_PREFIX: Final = "CAPACITY:"


@dataclass(frozen=True)
class FailedJob:
    """A FAILED worker job, times in epoch seconds; ``started_at`` is None for a job that never started."""

    job_id: str
    stopped_at: float
    started_at: float | None = None
    reason: str = ""

    @property
    def fast(self) -> bool:
        """Failed within FAST_FAILURE_SECONDS of starting, or while starting (image pull, secret, resources)."""
        if self.reason.startswith(CAPACITY_REASON_PREFIX):
            return False
        return self.started_at is None or self.stopped_at - self.started_at <= FAST_FAILURE_SECONDS


@dataclass(frozen=True)
class Backoff:
    cooling_down: bool  # True: submit nothing; False: probing, one worker while none is active
    until: float  # end of the cool-down (epoch seconds)
    fast_failures: int
    reason: str  # what to log: how many, since when, the latest statusReason


def backoff(failures: list[FailedJob], now: float) -> Backoff | None:
    """Whether recent fast failures should hold submissions back, and why; None when they should not."""
    recent = [job for job in failures if job.fast and 0 <= now - job.stopped_at <= FAST_FAILURE_WINDOW_SECONDS]
    if len(recent) < FAST_FAILURE_THRESHOLD:
        return None
    latest = max(recent, key=lambda job: job.stopped_at)
    until = latest.stopped_at + COOL_DOWN_SECONDS
    cooling_down = now < until
    what = (
        f"{len(recent)} worker jobs failed within {FAST_FAILURE_SECONDS // 60} min of starting in the last "
        f"{FAST_FAILURE_WINDOW_SECONDS // 60} min (latest {latest.job_id}: {latest.reason or 'no reason given'})"
    )
    then = (
        f"submitting none for {math.ceil((until - now) / 60)} more min"
        if cooling_down
        else "trying one worker at a time until they age out"
    )
    return Backoff(cooling_down=cooling_down, until=until, fast_failures=len(recent), reason=f"{what}; {then}")


def held_back(decision: Decision, observation: Observation, hold: Backoff | None) -> Decision:
    """``decision`` with submissions limited by the back-off: none while cooling down, then a single probe."""
    if hold is None or decision.submit == 0:
        return decision
    probe = 0 if hold.cooling_down or observation.active_workers > 0 else 1
    return Decision(desired_workers=decision.desired_workers, submit=min(decision.submit, probe))
