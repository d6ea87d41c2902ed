"""Calls that must start at the same moment, as separate machines or job threads would."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def all_at_once(call: Callable[[Item], None], items: Sequence[Item], timeout: float) -> None:
    """``call(item)`` for every item, each in a thread of its own, all released together; waits for them."""
    barrier = threading.Barrier(len(items))

    def run(item: Item) -> None:
        barrier.wait()
        call(item)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
