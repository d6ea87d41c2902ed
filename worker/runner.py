"""The long-running loop: receive, process one message at a time, settle it on the queue, stop on a knob or signal.

Shutdown: the first SIGTERM/SIGINT stops receiving; the job in hand may finish within the grace period,
otherwise it is released (visibility 0) for another worker. A second signal releases everything and returns
at once. A ``kill -9`` needs no code: unsettled messages reappear after their visibility timeout.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.logs import logger
from worker.metrics import JobMetrics, JobReport, queue_wait_seconds
from worker.pipeline import JobProcessor, Outcome
from worker.queue import Heartbeat, JobQueue, QueueMessage
from worker.settings import SQS_MAX_VISIBILITY_SECONDS, Settings


@dataclass
class RunStats:
    received: int = 0
    completed: int = 0
    duplicates: int = 0
    failed: int = 0
    retried: int = 0
    busy: int = 0
    released: int = 0
    abandoned: bool = False  # a job was still running at shutdown: the caller must end the process
    verdicts: list[tuple[str | None, str]] = field(default_factory=list)


class _Stop:
    """Counts shutdown signals; the first starts the grace period, the second means now."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.immediate = threading.Event()
        self.deadline: float | None = None

    def signal(self, grace: float) -> None:
        if self.requested.is_set():
            self.immediate.set()
        else:
            self.deadline = time.monotonic() + grace
            self.requested.set()


def retry_delay(receive_count: int, base_seconds: int) -> int:
    """Exponential backoff with jitter for a transient failure, within SQS's visibility limit."""
    ceiling = min(SQS_MAX_VISIBILITY_SECONDS, base_seconds * 2 ** max(0, receive_count - 1))
    return int(random.uniform(ceiling / 2, ceiling))


class Worker:
    def __init__(
        self, settings: Settings, queue: JobQueue, processor: JobProcessor, metrics: JobMetrics | None = None
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.processor = processor
        self.metrics = metrics or JobMetrics(settings.metrics_namespace)
        self.stats = RunStats()
        self._stop = _Stop()

    def request_stop(self, *_: Any) -> None:
        self._stop.signal(self.settings.shutdown_grace)
        logger.info("shutdown requested", extra={"immediate": self._stop.immediate.is_set()})

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> RunStats:
        info = self.queue.describe()
        if info.dlq_url is None:
            raise RuntimeError("the jobs queue has no dead-letter queue (redrive policy) and WHISPER_DLQ_URL is unset")
        s = self.settings
        if s.preload_model:
            self._preload(s.default_model)
        logger.info(
            "worker started",
            extra={"default_model": s.default_model, "preload": s.preload_model, "max_receive": info.max_receive_count},
        )
        last_activity = time.monotonic()
        with Heartbeat(self.queue, s.visibility_timeout) as heartbeat:
            while not self._stop.requested.is_set():
                remaining = None if s.max_jobs is None else s.max_jobs - self.stats.received
                if remaining is not None and remaining <= 0:
                    break
                wait = s.wait_seconds
                if s.max_idle_seconds is not None:
                    idle_left = s.max_idle_seconds - (time.monotonic() - last_activity)
                    if idle_left <= 0:
                        logger.info("idle limit reached; stopping")
                        break
                    wait = max(0, min(wait, int(idle_left + 0.999)))
                messages = self._receive(remaining, wait)
                if not messages:
                    continue
                heartbeat.hold(messages)
                for message in messages:
                    if self._stop.requested.is_set():
                        self._release(message, heartbeat)
                        continue
                    self._handle(message, info.max_receive_count, heartbeat)
                last_activity = time.monotonic()
        return self.stats

    def _preload(self, name: str) -> None:
        """Load the default model while the first long poll waits, so the first job does not pay for it."""
        models = self.processor.engine.models
        if models.loaded(name):
            return

        def load() -> None:
            try:
                models.get(name)
            except Exception as exc:  # the jobs that ask for it will fail with the reason
                logger.warning("could not preload the default model", extra={"model": name, "error": str(exc)})

        threading.Thread(target=load, name="model-preload", daemon=True).start()

    def _receive(self, remaining: int | None, wait: int) -> list[QueueMessage]:
        batch = self.settings.receive_batch if remaining is None else min(self.settings.receive_batch, remaining)
        try:
            messages = self.queue.receive(
                max_messages=batch, wait_seconds=wait, visibility_timeout=self.settings.visibility_timeout
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("receive failed; backing off", extra={"error": str(exc)})
            self._stop.requested.wait(min(5.0, wait or 1.0))
            return []
        self.stats.received += len(messages)
        return messages

    def _handle(self, message: QueueMessage, max_receive_count: int | None, heartbeat: Heartbeat) -> None:
        logger.append_keys(message_id=message.message_id, receive_count=message.receive_count)
        waited = queue_wait_seconds(message.sent_timestamp_ms)
        box: list[Outcome] = []
        job = threading.Thread(
            target=lambda: box.append(self.processor.process(message, max_receive_count=max_receive_count)),
            name="job",
            daemon=True,  # a job past the grace period is abandoned; its message is released below
        )
        job.start()
        while job.is_alive():
            job.join(timeout=0.2)
            if self._stop.immediate.is_set() or (
                self._stop.deadline is not None and time.monotonic() > self._stop.deadline and job.is_alive()
            ):
                reason = "second signal" if self._stop.immediate.is_set() else "shutdown grace period ran out"
                logger.warning("abandoning the job in hand; releasing it", extra={"reason": reason})
                self._abandon(message, heartbeat)
                return
        outcome = box[0] if box else Outcome("retry", None)
        try:
            self._settle(message, outcome)
        except (ClientError, BotoCoreError) as exc:
            # The message reappears after its visibility timeout; the duplicate check stops a second transcription.
            logger.error("could not settle message on the queue", extra={"error": str(exc)})
        finally:
            heartbeat.release(message)
            self._report(message, outcome, max_receive_count, waited)
            logger.remove_keys(["job_id", "message_id", "receive_count", "model"])

    def _report(
        self, message: QueueMessage, outcome: Outcome, max_receive_count: int | None, waited: float | None
    ) -> None:
        """One EMF flush per settled message; metrics never break the loop."""
        last_try = max_receive_count is not None and message.receive_count >= max_receive_count
        report = JobReport(
            verdict=outcome.verdict,
            job_id=outcome.job_id,
            message_id=message.message_id,
            model=outcome.model,
            error_code=outcome.error.code if outcome.error else None,
            final=outcome.verdict == "failed" or (outcome.verdict == "retry" and last_try),
            queue_wait_seconds=waited,
            audio_seconds=outcome.audio_seconds,
            processing_seconds=outcome.processing_seconds,
        )
        try:
            self.metrics.job_settled(report)
        except Exception:
            logger.exception("could not emit metrics")

    def _settle(self, message: QueueMessage, outcome: Outcome) -> None:
        self.stats.verdicts.append((outcome.job_id, outcome.verdict))
        if outcome.verdict in ("completed", "duplicate"):
            self.queue.delete(message)
            if outcome.verdict == "completed":
                self.stats.completed += 1
            else:
                self.stats.duplicates += 1
        elif outcome.verdict == "failed":
            assert outcome.error is not None
            self.queue.dead_letter(message, outcome.error.code, outcome.error.message)
            self.stats.failed += 1
        elif outcome.verdict == "busy":
            self.queue.set_visibility(message, outcome.retry_after or self.settings.visibility_timeout)
            self.stats.busy += 1
        else:
            delay = retry_delay(message.receive_count, self.settings.retry_base_seconds)
            self.queue.set_visibility(message, delay)
            self.stats.retried += 1

    def _abandon(self, message: QueueMessage, heartbeat: Heartbeat) -> None:
        """Hand the job in hand and every held message to other workers now. The job thread cannot be stopped,
        so the process must exit right after (see ``RunStats.abandoned``) before it writes anything more."""
        self._release(message, heartbeat)
        for held in heartbeat.held():
            self._release(held, heartbeat)
        self.processor.claims.release_all()
        self.stats.abandoned = True
        self._stop.requested.set()
        logger.remove_keys(["job_id", "message_id", "receive_count", "model"])

    def _release(self, message: QueueMessage, heartbeat: Heartbeat) -> None:
        heartbeat.release(message)
        try:
            self.queue.set_visibility(message, 0)
            self.stats.released += 1
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not release message; it returns after its timeout", extra={"error": str(exc)})
