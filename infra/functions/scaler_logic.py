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
