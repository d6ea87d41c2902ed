"""Waiting for an event a test can observe (a counter, a file, a queue depth) instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``check`` until it is truthy; return the seconds it took, or fail naming ``what``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start >= timeout:
            raise AssertionError(f"{what} not within {timeout:g} s")
        time.sleep(every)
    return time.monotonic() - start
