"""The scaler's decision, a pure function: how many worker jobs to submit for a queue depth."""

from __future__ import annotations

import pytest

from infra.functions.scaler_logic import MAX_SUBMITS_PER_RUN, Observation, decide


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
