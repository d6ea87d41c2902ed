"""Where a job stands, for backends: ``<prefix><job_id>/status.json`` and optional signed progress callbacks.

    {"job_id": "t-1", "state": "transcribing", "percent": 42.5,
     "updated_at": "2026-11-25T22:40:00.123+00:00", "message_id": "…"}

States, in order: ``fetching`` → ``decoding`` → ``transcribing`` (``percent`` 0 to 100) → ``storing`` →
``completed`` (percent 100) or ``failed``. Before the first write there is no file: the job is queued.
``failed`` is written only when the failure is final (the backend gets the failure result and callback); a
transient failure leaves the last state in place until the retry starts again with ``fetching``.

The first state and the final one (``completed`` or ``failed``) are written at once; in between, the document
is rewritten at most once per ``interval`` seconds (``WHISPER_PROGRESS_INTERVAL_SECONDS``) with the latest
state and percent. A clip transcribed in a second costs two PUTs, not five, and an hour of audio a few hundred,
not thousands.
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
    """Writes one job's ``status.json``; thread-safe, at most once per interval but for the first and final state."""

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

    @property
    def current(self) -> State | None:
        return self._state

    def document(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self._state,
            "percent": self._percent,
            "updated_at": utc_timestamp("milliseconds"),
            "message_id": self.message_id,
        }

    def state(self, state: State, percent: float | None = None) -> None:
        """Enter ``state``: written unless the last write is more recent than ``interval`` (the first and the
        final state always are), and announced to ``notify``."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self._lock:
            self._state = state
            self._percent = percent
            if state in FINAL_STATES or not self._recently_written():
                self._write()
        if self._notify is not None:
            try:
                self._notify(state, percent)
            except Exception:  # best effort, like the file: never fail the job over a progress event
                logger.exception("could not send progress event", extra={"state": state})

    def percent(self, value: float) -> None:
        """Progress within ``transcribing``; written when ``interval`` has passed since the last write."""
        with self._lock:
            if self._state != "transcribing":
                return
            self._percent = round(max(0.0, min(100.0, value)), 1)
            if not self._recently_written():
                self._write()

    def _recently_written(self) -> bool:
        return self._written_at is not None and self._clock() - self._written_at < self.interval

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
