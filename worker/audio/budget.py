"""A per-worker budget of decoded audio, so several messages in progress cannot decode more than memory holds.

Decoded audio is float32 at 16 kHz: 64 kB a second, ~230 MB an hour, about twice that while decoding and
computing the mel spectrogram. With WHISPER_CONCURRENCY messages at once, a few six-hour files would exhaust a
worker; so each message reserves its seconds here before decoding and gives them back when the engine returns.

    AudioBudget             capacity in seconds; ``reserve`` blocks (first come, first served) until room is free
    Reservation             what ``reserve`` hands out; ``release()`` or leave its ``with`` block
    default_budget_seconds  capacity from the container's memory limit (cgroup v2/v1, else /proc/meminfo)
    decode_within_budget    probe → reserve → decode (by a ``Decoder``), reserving again if the header understated

Capacity comes from WHISPER_MAX_DECODED_SECONDS, or ``default_budget_seconds()`` when unset.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np

from worker import limits
from worker.audio.decode import Decoder, InProcessDecoder
from worker.errors import AudioTooLong, ResourceExhausted
from worker.ops.logs import logger

GIB = 1024**3
CGROUP_V2_LIMIT = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
MEMINFO = Path("/proc/meminfo")
# cgroup v1 writes "no limit" as a page-rounded 2**63; anything past this is no limit in practice.
UNLIMITED_BYTES = 2**60
# The budget's sizes are shared with the stack, which sizes jobs by them (worker/limits.py says why each is so).
RUNTIME_RESERVE_BYTES = limits.RUNTIME_RESERVE_BYTES
AUDIO_SHARE = limits.AUDIO_SHARE
BYTES_PER_SECOND = limits.BUDGET_BYTES_PER_SECOND
MINIMUM_SECONDS = limits.MINIMUM_DECODED_SECONDS
# Container headers round durations (and some are a frame or two short): reserve this much above an estimate.
HEADER_TOLERANCE_SECONDS = 1.0
# How often a waiter with ``should_stop`` looks at it.
STOP_POLL_SECONDS = 0.2


class Reservation:
    """Seconds held in a budget until ``release()`` (idempotent) or the end of its ``with`` block."""

    def __init__(self, budget: AudioBudget, seconds: float) -> None:
        self.budget = budget
        self.seconds = seconds
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.budget._give_back(self.seconds)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class AudioBudget:
    """Thread-safe seconds of decoded audio; requests are granted strictly in arrival order, so a long file
    waits only for the audio ahead of it and is never overtaken by a stream of short ones."""

    def __init__(self, capacity_seconds: float) -> None:
        if capacity_seconds <= 0:
            raise ValueError(f"capacity must be positive, got {capacity_seconds}")
        self.capacity = float(capacity_seconds)
        self._changed = threading.Condition()
        self._queue: deque[int] = deque()  # tickets of waiting requests, oldest first
        self._tickets = itertools.count()
        self._held = 0.0
        self._peak = 0.0
        self.waits = 0  # requests that could not be granted at once

    @property
    def held(self) -> float:
        with self._changed:
            return self._held

    @property
    def peak(self) -> float:
        with self._changed:
            return self._peak

    def too_long(self, seconds: float, *, at_least: bool = False) -> AudioTooLong:
        """The permanent error for audio that could never fit, however long it waited."""
        length = f"longer than {seconds:.0f} s" if at_least else f"{seconds:.0f} s long"
        return AudioTooLong(
            f"audio is {length}; this worker holds at most {self.capacity:.0f} s of decoded audio "
            "(WHISPER_MAX_DECODED_SECONDS)"
        )

    def reserve(self, seconds: float, *, should_stop: Callable[[], bool] | None = None) -> Reservation:
        """Block until ``seconds`` fit beside what is held and every earlier request is granted.

        Raises ``AudioTooLong`` at once when ``seconds`` exceed the whole capacity, and ``ResourceExhausted``
        (transient: the message is retried) when ``should_stop`` turns true while waiting.
        """
        seconds = max(0.0, float(seconds))
        if seconds > self.capacity:
            raise self.too_long(seconds)
        with self._changed:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                if not self._grantable(ticket, seconds):
                    self.waits += 1
                    logger.info(
                        "waiting for decoded-audio budget",
                        extra={
                            "seconds_wanted": round(seconds, 1),
                            "seconds_held": round(self._held, 1),
                            "capacity_seconds": round(self.capacity, 1),
                            "requests_ahead": len(self._queue) - 1,
                        },
                    )
                while not self._grantable(ticket, seconds):
                    if should_stop is not None and should_stop():
                        raise ResourceExhausted("stopped while waiting for decoded-audio budget")
                    self._changed.wait(STOP_POLL_SECONDS if should_stop is not None else None)
            finally:
                self._queue.remove(ticket)
                # Granted or gone: either way the next request in line may now fit.
                self._changed.notify_all()
            self._held += seconds
            self._peak = max(self._peak, self._held)
        return Reservation(self, seconds)

    def _grantable(self, ticket: int, seconds: float) -> bool:
        return self._queue[0] == ticket and self._held + seconds <= self.capacity

    def _give_back(self, seconds: float) -> None:
        with self._changed:
            self._held = max(0.0, self._held - seconds)
            self._changed.notify_all()


def _read_int(path: Path) -> int | None:
    """A cgroup limit in bytes, or None for "max", an absurd value, or a file that is absent or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max" (v2) or garbage
    value = int(text)
    return value if 0 < value < UNLIMITED_BYTES else None


def _mem_total(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == "MemTotal":
                number, _, unit = rest.strip().partition(" ")
                return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError):
        return None
    return None


def memory_limit_bytes(
    *, cgroup_v2: Path = CGROUP_V2_LIMIT, cgroup_v1: Path = CGROUP_V1_LIMIT, meminfo: Path = MEMINFO
) -> int | None:
    """The container's memory limit, else the machine's memory; None where neither can be read."""
    total = _mem_total(meminfo)
    limit = _read_int(cgroup_v2) or _read_int(cgroup_v1)
    if limit is None:
        return total
    return min(limit, total) if total else limit  # a limit above the machine's memory is no limit


def default_budget_seconds(
    *,
    cgroup_v2: Path = CGROUP_V2_LIMIT,
    cgroup_v1: Path = CGROUP_V1_LIMIT,
    meminfo: Path = MEMINFO,
    runtime_reserve_bytes: int = RUNTIME_RESERVE_BYTES,
    share: float = AUDIO_SHARE,
    bytes_per_second: float = BYTES_PER_SECOND,
    minimum_seconds: float = MINIMUM_SECONDS,
) -> float:
    """Seconds of decoded audio for this worker: half of the memory left after the runtime, at twice the
    float32 size a second; never below ``minimum_seconds``. 14 GiB gives ~48,000 s (13 h)."""
    memory = memory_limit_bytes(cgroup_v2=cgroup_v2, cgroup_v1=cgroup_v1, meminfo=meminfo)
    if memory is None:
        memory = _sysconf_memory()
    if memory is None:
        return minimum_seconds
    return max(minimum_seconds, (memory - runtime_reserve_bytes) * share / bytes_per_second)


def _sysconf_memory() -> int | None:
    """Physical memory where there is no /proc (macOS development machines)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def decode_within_budget(
    path: Path,
    budget: AudioBudget,
    *,
    max_seconds: float,
    should_stop: Callable[[], bool] | None = None,
    decoder: Decoder | None = None,
) -> tuple[np.ndarray, Reservation]:
    """Decode ``path`` holding a reservation that covers it; the caller releases the reservation once the
    samples are no longer needed (after the engine returns), also on error.

    The reservation is the probed length (plus a little for rounding) so short files leave room for others;
    an unknown length reserves the whole allowance. A header that understated the length costs a second
    decode: the first reservation goes back and the full allowance is reserved, in line behind the others
    (never while holding the first, which could deadlock two such jobs).

    ``decoder`` probes and decodes: the worker's pool of child processes, or this process when None.
    """
    decoder = decoder or InProcessDecoder()
    full = min(max_seconds, budget.capacity)
    estimate = decoder.probe(path)
    if estimate is not None and estimate > budget.capacity:
        raise budget.too_long(estimate)  # fail before decoding what could never fit
    first = full if estimate is None else min(estimate + HEADER_TOLERANCE_SECONDS, full)
    for want in (first, full) if first < full else (full,):
        started = time.monotonic()
        reservation = budget.reserve(want, should_stop=should_stop)
        waited = time.monotonic() - started
        try:
            audio = decoder.decode(path, max_seconds=want)
        except AudioTooLong:
            reservation.release()
            if want < full:
                logger.info(
                    "audio is longer than its header says; reserving the full allowance",
                    extra={"estimated_seconds": estimate, "allowance_seconds": full},
                )
                continue
            if full < max_seconds:  # the budget, not WHISPER_MAX_AUDIO_SECONDS, was the limit
                raise budget.too_long(full, at_least=True) from None
            raise
        except BaseException:
            reservation.release()
            raise
        if waited >= 1.0:
            logger.info("decoded-audio budget granted", extra={"seconds": round(want, 1), "waited": round(waited, 1)})
        return audio, reservation
    raise AssertionError("unreachable: the last attempt returns or raises")
