"""The scaler's decisions, pure functions: how many worker jobs a queue depth wants, and when recent fast failures
hold them back."""

from __future__ import annotations

import pytest

from infra.functions.scaler_logic import (
    COOL_DOWN_SECONDS,
    FAST_FAILURE_SECONDS,
    FAST_FAILURE_THRESHOLD,
    FAST_FAILURE_WINDOW_SECONDS,
    MAX_SUBMITS_PER_RUN,
    Decision,
    FailedJob,
    Observation,
    backoff,
    decide,
    held_back,
)


def submit(visible: int, in_flight: int = 0, active: int = 0, *, max_workers: int = 8, per_worker: int = 10) -> int:
    observation = Observation(visible=visible, in_flight=in_flight, active_workers=active)
    return decide(observation, max_workers=max_workers, messages_per_worker=per_worker).submit


def test_no_messages_means_no_jobs() -> None:
    assert submit(0) == 0
    assert submit(0, in_flight=50) == 0  # workers already hold everything
    assert submit(0, active=3) == 0


def test_one_message_starts_one_worker() -> None:
    assert submit(1) == 1


def test_one_worker_per_batch_of_messages_rounded_up() -> None:
    assert submit(10) == 1
    assert submit(11) == 2
    assert submit(35) == 4


def test_in_flight_messages_count_towards_the_work() -> None:
    assert submit(5, in_flight=25, active=2) == 1  # 30 messages want 3 workers, 2 are running


def test_running_and_queued_workers_are_not_submitted_again() -> None:
    assert submit(40, active=4) == 0
    assert submit(40, active=1) == 3
    assert submit(40, active=9) == 0  # more than wanted (e.g. max lowered): never negative


def test_never_more_than_max_workers() -> None:
    assert submit(10_000) == 8
    assert submit(10_000, active=6) == 2
    assert submit(10_000, max_workers=0) == 0


def test_at_least_one_worker_whenever_a_message_waits() -> None:
    assert submit(1, per_worker=1000) == 1


def test_one_run_submits_at_most_the_per_run_cap() -> None:
    assert submit(10_000, max_workers=500, per_worker=1) == MAX_SUBMITS_PER_RUN


def test_desired_workers_is_reported() -> None:
    decision = decide(Observation(visible=25, in_flight=0, active_workers=1), max_workers=8, messages_per_worker=10)
    assert (decision.desired_workers, decision.submit) == (3, 2)


def test_negative_approximations_are_treated_as_zero() -> None:
    assert submit(-1, in_flight=-5, active=-2) == 0


@pytest.mark.parametrize(("max_workers", "per_worker"), [(-1, 10), (8, 0)])
def test_rejects_nonsense_limits(max_workers: int, per_worker: int) -> None:
    with pytest.raises(ValueError):
        decide(Observation(1, 0, 0), max_workers=max_workers, messages_per_worker=per_worker)


# ------------------------------------------------------------------------------ back-off after fast failures

NOW = 1_800_000_000.0


def failed(
    minutes_ago: float, ran_minutes: float | None = 0.5, reason: str = "Essential container exited"
) -> FailedJob:
    stopped = NOW - minutes_ago * 60
    started = None if ran_minutes is None else stopped - ran_minutes * 60
    return FailedJob(job_id=f"job-{minutes_ago}", stopped_at=stopped, started_at=started, reason=reason)


def test_a_few_failures_do_not_hold_anything_back() -> None:
    assert backoff([failed(1), failed(2)], NOW) is None
    assert held_back(Decision(3, 3), Observation(30, 0, 0), None) == Decision(3, 3)


def test_repeated_fast_failures_start_a_cool_down_that_says_why() -> None:
    hold = backoff([failed(1), failed(2), failed(3, reason="CannotPullContainerError: not found")], NOW)
    assert hold is not None and hold.cooling_down and hold.fast_failures == 3
    assert hold.until == NOW - 60 + COOL_DOWN_SECONDS  # counted from the latest failure
    assert "3 worker jobs failed within 5 min of starting" in hold.reason
    assert "job-1: Essential container exited" in hold.reason and "submitting none for 9 more min" in hold.reason
    assert held_back(Decision(5, 5), Observation(50, 0, 0), hold) == Decision(5, 0)


def test_jobs_that_failed_while_starting_count_as_fast() -> None:
    never_started = [failed(m, ran_minutes=None, reason="ResourceInitializationError: secret") for m in (1, 2, 3)]
    hold = backoff(never_started, NOW)
    assert hold is not None and hold.cooling_down and hold.fast_failures == 3
    assert "ResourceInitializationError: secret" in hold.reason


def test_slow_failures_old_failures_and_capacity_cancellations_do_not_count() -> None:
    slow = [failed(m, ran_minutes=FAST_FAILURE_SECONDS / 60 + 1) for m in (1, 2, 3)]
    old = [failed(FAST_FAILURE_WINDOW_SECONDS / 60 + m) for m in (1, 2, 3)]
    capacity = [failed(m, None, "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - no spot capacity") for m in (1, 2, 3)]
    for jobs in (slow, old, capacity):
        assert backoff(jobs, NOW) is None


def test_after_the_cool_down_one_worker_probes_while_none_is_active() -> None:
    minutes = COOL_DOWN_SECONDS / 60 + 1
    hold = backoff([failed(minutes), failed(minutes + 1), failed(minutes + 2)], NOW)
    assert hold is not None and not hold.cooling_down and "one worker at a time" in hold.reason
    assert held_back(Decision(4, 4), Observation(40, 0, 0), hold) == Decision(4, 1)
    assert held_back(Decision(4, 3), Observation(40, 0, 1), hold) == Decision(4, 0)  # the probe is still out
    assert FAST_FAILURE_THRESHOLD == 3
