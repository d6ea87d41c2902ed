"""Where a job stands, for backends: ``<prefix><job_id>/status.json`` and optional signed progress callbacks.

    {"job_id": "t-1", "state": "transcribing", "percent": 42.5,
     "updated_at": "2026-11-25T22:40:00.123+00:00", "message_id": "…"}

States, in order: ``fetching`` → ``decoding`` → ``transcribing`` (``percent`` 0 to 100) → ``storing`` →
``completed`` (percent 100) or ``failed``. Before the first write there is no file: the job is queued.
``failed`` is written only when the failure is final (the backend gets the failure result and callback); a
transient failure leaves the last state in place until the retry starts again with ``fetching``.

Nothing is written until the job has run for ``interval`` seconds (``WHISPER_PROGRESS_INTERVAL_SECONDS``): a
job that ends sooner is told by ``result.json`` alone, so a short clip costs no status PUT at all. After that the
document is rewritten at most once per ``interval`` with the latest state and percent, and the final state
(``completed`` or ``failed``) is written at once, so a status seen mid-job never outlives it. ``announce()``
writes from the first state on: the worker calls it when an earlier result of the same job id exists, which the
new run's status must supersede at once. An hour of audio costs a few hundred PUTs, not thousands.
Progress is best effort: a failed write is logged and the job goes on, since ``result.json`` stays the source
of truth. ``notify`` (the progress callback) is called at state changes only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from worker.contract.result import utc_timestamp
from worker.ops.logs import logger

STATUS_FILE = "status.json"
State = Literal["fetching", "decoding", "transcribing", "storing", "completed", "failed"]
STATES: tuple[State, ...] = ("fetching", "decoding", "transcribing", "storing", "completed", "failed")
FINAL_STATES = ("completed", "failed")

Notify = Callable[[str, float | None], None]  # (state, percent)


class ProgressReporter:
    """Writes one job's ``status.json``; thread-safe, at most once per interval, from one interval in (or at once
    after ``announce()``), and the final state at once when anything was written before."""

    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        key: str,
        job_id: str,
        message_id: str,
        interval: float,
        notify: Notify | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], Any] = threading.Timer,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.job_id = job_id
        self.message_id = message_id
        self.interval = interval
        self._notify = notify
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State | None = None
        self._percent: float | None = None
        self._written_at: float | None = None
        self._started_at: float | None = None
        self._entered_at: float | None = None  # when the current state began
        self._eager = False
        self._timer_factory = timer
        self._timer: Any = None

    @property
    def current(self) -> State | None:
        return self._state

    def snapshot(self) -> tuple[State | None, float | None, float]:
        """(state, percent, seconds in that state): what a shutdown needs to judge whether the job ends soon."""
        with self._lock:
            since = self._entered_at if self._entered_at is not None else self._clock()
            return self._state, self._percent, self._clock() - since

    def document(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self._state,
            "percent": self._percent,
            "updated_at": utc_timestamp("milliseconds"),
            "message_id": self.message_id,
        }

    def announce(self) -> None:
        """Write from the first state on (and now, if a state was entered already)."""
        with self._lock:
            self._eager = True
            if self._state is not None and self._written_at is None:
                self._write()

    def state(self, state: State, percent: float | None = None) -> None:
        """Enter ``state``: written when due (see the module's docstring), and announced to ``notify``."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self._lock:
            if self._started_at is None:
                self._start()
            if state != self._state:
                self._entered_at = self._clock()
            self._state = state
            self._percent = percent
            if state in FINAL_STATES:
                self._stop_timer()
                if self._written_at is not None or self._eager:
                    self._write()
            elif self._due():
                self._write()
        if self._notify is not None:
            try:
                self._notify(state, percent)
            except Exception:  # best effort, like the file: never fail the job over a progress event
                logger.exception("could not send progress event", extra={"state": state})

    def percent(self, value: float) -> None:
        """Progress within ``transcribing``; written when due."""
        with self._lock:
            if self._state != "transcribing":
                return
            self._percent = round(max(0.0, min(100.0, value)), 1)
            if self._due():
                self._write()

    def _start(self) -> None:
        self._started_at = self._clock()
        if self.interval > 0 and not self._eager:
            # A job still running after one interval shows its state even if it enters no new one (a long fetch).
            self._timer = self._timer_factory(self.interval, self._first_write)
            self._timer.daemon = True
            self._timer.start()

    def _first_write(self) -> None:
        with self._lock:
            if self._written_at is None and self._state is not None and self._state not in FINAL_STATES:
                self._write()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> bool:
        now = self._clock()
        if self._written_at is None:
            return self._eager or self._started_at is None or now - self._started_at >= self.interval
        return now - self._written_at >= self.interval

    def _write(self) -> None:
        body = json.dumps(self.document(), separators=(",", ":")).encode()
        self._written_at = self._clock()
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType="application/json",
                CacheControl="no-cache",
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not write job status", extra={"state": self._state, "error": str(exc)})
