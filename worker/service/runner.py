"""The long-running loop: receive, work on up to ``WHISPER_CONCURRENCY`` messages at once, settle each on the
queue, stop on a knob or signal.

Each message in progress has a thread of its own (process, settle, report metrics, release it from the
heartbeat); the main thread only receives, starts jobs in free slots and watches the shutdown deadline. With one
slot this is the one-message-at-a-time worker. With several, one message's audio is fetched and decoded while
another's is transcribed, and the engine gets work from several messages at once.

Shutdown: the first SIGTERM/SIGINT stops receiving; the jobs in progress may finish within the grace period,
otherwise they are released (visibility 0) for another worker, along with every other held message and claim.
A second signal does that at once. A ``kill -9`` needs no code: unsettled messages reappear after their
visibility timeout.

Spot interruption (``WHISPER_INTERRUPTION_FILE``): receiving stops at once; jobs that will end well inside the time
EC2 leaves (judged from their transcription progress) finish, every other message is handed back (visibility 0)
within seconds, and the worker exits 0 before the instance goes.

Suspects: a message whose earlier holder died with it (its claim was left behind) or that was received
``SUSPECT_RECEIVE_COUNT`` times runs with nothing else in flight, so if it kills the process again it costs no
other message a receive. For one visibility timeout after the worker starts, and after any message that was
received before, receives ask for one message; only then do they double towards the free slots. A dead worker's
messages all come back within one visibility timeout of its death, so they are met one at a time: a receive never
brings two suspects together, and a suspect waiting for the slots to empty stops further receives.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker import limits
from worker.aws import SQS_MAX_BATCH, SQS_MAX_VISIBILITY_SECONDS
from worker.contract import best_effort_ids
from worker.errors import WorkerUnfit
from worker.ops.logs import add_job_keys, clear_job_keys, logger
from worker.ops.metrics import JobMetrics, JobReport, queue_wait_seconds
from worker.service.interruption import Notice, NoticeWatch, read_notice
from worker.service.pipeline import JobProcessor, Outcome
from worker.service.settings import Settings
from worker.service.sqs import Heartbeat, JobQueue, QueueMessage

# Receive wait while jobs are in progress: short, so a freed slot refills promptly and the shutdown deadline is
# watched closely, yet never zero, so an empty queue is not polled in a tight loop.
BUSY_POLL_SECONDS = 1
# How often the main thread looks at the shutdown deadline while it waits for a slot to free.
WATCH_SECONDS = 0.2
# After abandoning, how long to let jobs already settling (a few queue calls) finish before returning.
SETTLE_WAIT_SECONDS = 2.0
# At WHISPER_MAX_RUNTIME_SECONDS the jobs in progress get this long to finish before they are released; the stack
# sets the runtime limit this much and more below the Batch job's timeout.
RUNTIME_FINISH_SECONDS = limits.RUNTIME_FINISH_SECONDS
# Of the time a spot notice leaves, this much is kept for storing results, sending callbacks and exiting.
INTERRUPTION_MARGIN_SECONDS = 25.0
# A message received this often is a suspect even without a claim left behind (its holders may have died before
# claiming it): it runs alone.
SUSPECT_RECEIVE_COUNT = 3


@dataclass
class RunStats:
    received: int = 0
    completed: int = 0
    duplicates: int = 0
    failed: int = 0
    retried: int = 0
    busy: int = 0
    released: int = 0
    handed_back: int = 0  # jobs whose message was released while their thread still ran (spot notice)
    suspects: int = 0
    abandoned: bool = False  # a job was still running at shutdown: the caller must end the process
    verdicts: list[tuple[str | None, str]] = field(default_factory=list)


class _Stop:
    """Counts shutdown signals; the first starts the grace period, the second means now."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.immediate = threading.Event()
        self.deadline: float | None = None

    def signal(self, grace: float) -> None:
        if self.requested.is_set() and self.deadline is not None and self.deadline - time.monotonic() > grace:
            self.deadline = time.monotonic() + grace  # a signal after the runtime limit shortens its long grace
            return
        if self.requested.is_set():
            self.immediate.set()
        else:
            self.deadline = time.monotonic() + grace
            self.requested.set()

    def interrupt(self, seconds: float) -> None:
        """Stop receiving now; whatever still runs in ``seconds`` is abandoned."""
        deadline = time.monotonic() + max(0.0, seconds)
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.requested.set()

    def overdue(self) -> str | None:
        """Why jobs still running must be abandoned now, or None while they may go on."""
        if self.immediate.is_set():
            return "second signal"
        if self.deadline is not None and time.monotonic() > self.deadline:
            return "shutdown grace period ran out"
        return None


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
        # One lock for the job table and the stats; job threads notify it when a slot frees.
        self._changed = threading.Condition()
        self._pending: deque[QueueMessage] = deque()  # received, not started (only when receive_batch > free slots)
        self._running: dict[str, QueueMessage] = {}  # message id -> message whose job is being processed
        self._settling: dict[str, QueueMessage] = {}  # processed, now being settled on the queue
        self._started = 0
        self._started_at = time.monotonic()
        self._suspects: set[str] = set()  # message ids to run alone
        self._alone: str | None = None  # the suspect now running
        self._ramp = 1  # messages the next receive asks for at most
        self._single_until = 0.0  # monotonic time before which receives take one message (see the docstring)
        self._notice: Notice | None = None
        self._notice_handled = False
        self._handed_back: set[str] = set()

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
        if s.interruption_file is not None and read_notice(s.interruption_file) is not None:
            logger.warning("this instance is being reclaimed; not taking any message")
            return self.stats
        if s.preload_model:
            self._preload(s.default_model)
        self._started_at = time.monotonic()
        self._single_until = self._started_at + s.visibility_timeout
        from worker.engine.device import choose_precision, pick_device  # torch: loaded by now for the engine

        precision = choose_precision(s.cpu_precision, pick_device(s.device))
        logger.info(
            "worker started",
            extra={
                "default_model": s.default_model,
                "preload": s.preload_model,
                "max_receive": info.max_receive_count,
                "concurrency": s.concurrency,
                "precision": precision.name,
                "precision_reason": precision.reason,
            },
        )
        with Heartbeat(self.queue, s.visibility_timeout) as heartbeat, self._watch_notices():
            self._loop(info.max_receive_count, heartbeat)
        return self.stats

    def _watch_notices(self) -> contextlib.AbstractContextManager[object]:
        path = self.settings.interruption_file
        return contextlib.nullcontext() if path is None else NoticeWatch(path, self.on_interruption)

    def on_interruption(self, notice: Notice) -> None:
        """From the notice watcher's thread: the main loop hands work back at its next turn (within a tick)."""
        with self._changed:
            self._notice = notice
            self._changed.notify_all()

    def _loop(self, max_receive_count: int | None, heartbeat: Heartbeat) -> None:
        """Receive into free slots until a stop, ``max_jobs`` or the idle limit; return once every job has ended
        or the run was abandoned."""
        s = self.settings
        receiving = True
        last_activity = time.monotonic()
        while True:
            self._check_runtime()
            self._check_interruption(heartbeat)
            if self._stop.requested.is_set():
                receiving = False
                for message in self._take_pending():  # never started: hand them back now
                    self._release(message, heartbeat)
            else:
                self._start_pending(max_receive_count, heartbeat)
            in_progress, free, has_pending = self._slots()
            if in_progress:
                last_activity = time.monotonic()
            if not receiving or has_pending or free <= 0:
                if not in_progress and not has_pending:
                    return
                reason = self._stop.overdue()
                if reason is not None:
                    self._abandon(reason, heartbeat)
                    return
                self._wait_for_slot(WATCH_SECONDS)
                continue
            remaining = None if s.max_jobs is None else s.max_jobs - self.stats.received
            if remaining is not None and remaining <= 0:
                receiving = False  # the jobs in progress still finish
                continue
            if in_progress:
                wait = BUSY_POLL_SECONDS
            else:
                wait = s.wait_seconds
                if s.max_idle_seconds is not None:
                    idle_left = s.max_idle_seconds - (time.monotonic() - last_activity)
                    if idle_left <= 0:
                        logger.info("idle limit reached; stopping")
                        return
                    wait = max(0, min(wait, int(idle_left + 0.999)))
            messages = self._receive(self._receive_count(free, remaining), wait)
            if messages:
                heartbeat.hold(messages)
                self._classify(messages)
                with self._changed:
                    self._pending.extend(messages)
                last_activity = time.monotonic()

    def _receive_count(self, free: int, remaining: int | None) -> int:
        """Messages to ask one receive for.

        ``receive_batch`` (default 1) is the least: with one slot, extra messages wait their turn under the
        heartbeat, as they always have. With more slots a receive asks for every free slot, since each message
        received starts at once. The price either way: a worker that dies charges one receive to every message it
        holds, and with WHISPER_CONCURRENCY=N that is up to N messages in progress (plus any waiting), each a step
        nearer the DLQ without a fair attempt.
        """
        ramp = 1 if time.monotonic() < self._single_until else self._ramp
        count = min(SQS_MAX_BATCH, max(min(free, ramp), self.settings.receive_batch))
        return count if remaining is None else min(count, remaining)

    def _classify(self, messages: list[QueueMessage]) -> None:
        """Mark suspects (see the module's docstring) and set how many messages the next receive may ask for."""
        suspects = [m for m in messages if self._is_suspect(m)]
        for message in suspects:
            job_id, _, _ = best_effort_ids(message.body)
            logger.warning(
                "suspect message: an earlier holder died with it; running it alone",
                extra={"job_id": job_id, "message_id": message.message_id, "receive_count": message.receive_count},
            )
        with self._changed:
            self._suspects.update(m.message_id for m in suspects)
            self.stats.suspects += len(suspects)
            if any(m.receive_count >= 2 for m in messages):
                self._ramp = 1
                self._single_until = time.monotonic() + self.settings.visibility_timeout
            else:
                self._ramp = min(SQS_MAX_BATCH, self._ramp * 2)

    def _is_suspect(self, message: QueueMessage) -> bool:
        if message.receive_count >= SUSPECT_RECEIVE_COUNT:
            return True
        return message.receive_count >= 2 and self.processor.last_holder_died(message)

    def _slots(self) -> tuple[int, int, bool]:
        """(jobs in progress, free slots, messages waiting to start)."""
        with self._changed:
            in_progress = len(self._running) + len(self._settling)
            free = 0 if self._alone is not None else self.settings.concurrency - in_progress
            return in_progress, free, bool(self._pending)

    def _take_pending(self) -> list[QueueMessage]:
        with self._changed:
            taken = list(self._pending)
            self._pending.clear()
            return taken

    def _wait_for_slot(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _start_pending(self, max_receive_count: int | None, heartbeat: Heartbeat) -> None:
        with self._changed:
            # Suspects wait behind everything else, then run one at a time with nothing beside them.
            ordered = sorted(self._pending, key=lambda m: m.message_id in self._suspects)
            self._pending = deque(ordered)
            while self._pending and self._alone is None:
                busy = len(self._running) + len(self._settling)
                message = self._pending[0]
                if message.message_id in self._suspects:
                    if busy:
                        break
                    self._alone = message.message_id
                elif busy >= self.settings.concurrency:
                    break
                self._pending.popleft()
                self._running[message.message_id] = message
                self._started += 1
                # Daemon: a job past the grace period is abandoned (its message released) and the process exits.
                threading.Thread(
                    target=self._work,
                    args=(message, max_receive_count, heartbeat),
                    name=f"job-{self._started}",
                    daemon=True,
                ).start()

    def _check_runtime(self) -> None:
        """Past WHISPER_MAX_RUNTIME_SECONDS: stop receiving and leave before the Batch job's timeout kills us."""
        limit = self.settings.max_runtime_seconds
        if limit is None or self._stop.requested.is_set() or time.monotonic() - self._started_at < limit:
            return
        logger.info("maximum runtime reached; finishing the jobs in progress", extra={"max_runtime_seconds": limit})
        self._stop.signal(RUNTIME_FINISH_SECONDS)

    def _check_interruption(self, heartbeat: Heartbeat) -> None:
        """On a spot notice: stop receiving, keep the jobs that end in time, hand every other message back now."""
        with self._changed:
            notice, handled = self._notice, self._notice_handled
            self._notice_handled = notice is not None
        if notice is None or handled:
            return
        budget = notice.seconds_left() - INTERRUPTION_MARGIN_SECONDS
        self._stop.interrupt(budget)  # what is still running then is released by the usual abandon path
        with self._changed:
            running = list(self._running.values())
        kept = []
        for message in running:
            needed = self.processor.seconds_to_finish(message.message_id)
            if needed is not None and needed <= budget:
                kept.append(message.message_id)
            elif self.processor.revoke(message.message_id):
                with self._changed:
                    self._running.pop(message.message_id, None)
                    self._handed_back.add(message.message_id)
                    self.stats.handed_back += 1
                self._release(message, heartbeat)
            else:
                kept.append(message.message_id)  # already storing its results
        logger.warning(
            "spot interruption notice; handing back what will not finish in time",
            extra={
                "action": notice.action,
                "seconds_left": round(notice.seconds_left(), 1),
                "kept": len(kept),
                "handed_back": len(running) - len(kept),
            },
        )

    def _preload(self, name: str) -> None:
        """Load the default model before the first receive: a worker that cannot load it must not take messages
        (each receive counts against a message's tries), so it exits and Batch can replace it."""
        models = self.processor.engine.models
        if models.loaded(name):
            return
        try:
            models.get(name)
        except Exception as exc:
            raise WorkerUnfit(f"cannot load the default model {name!r}: {exc}") from exc

    def _receive(self, count: int, wait: int) -> list[QueueMessage]:
        try:
            messages = self.queue.receive(
                max_messages=count, wait_seconds=wait, visibility_timeout=self.settings.visibility_timeout
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("receive failed; backing off", extra={"error": str(exc)})
            self._stop.requested.wait(min(5.0, wait or 1.0))
            return []
        with self._changed:
            self.stats.received += len(messages)
        return messages

    def _work(self, message: QueueMessage, max_receive_count: int | None, heartbeat: Heartbeat) -> None:
        """One message, in its own thread: process it, then settle it unless the run was abandoned meanwhile."""
        add_job_keys(message_id=message.message_id, receive_count=message.receive_count)
        try:
            waited = queue_wait_seconds(message.sent_timestamp_ms)
            try:
                outcome = self.processor.process(message, max_receive_count=max_receive_count)
            except Exception:  # process() reports its own failures; anything else must not lose the message
                logger.exception("job crashed; retrying later")
                outcome = Outcome("retry", None)
            with self._changed:
                if self._alone == message.message_id:
                    self._alone = None
                self._suspects.discard(message.message_id)
                if self.stats.abandoned or message.message_id in self._handed_back:
                    self._changed.notify_all()
                    return  # already released for another worker; settling now would undo that
                self._running.pop(message.message_id, None)
                self._settling[message.message_id] = message
            try:
                self._settle(message, outcome)
            except (ClientError, BotoCoreError) as exc:
                # The message reappears after its visibility timeout; the duplicate check stops a second transcription.
                logger.error("could not settle message on the queue", extra={"error": str(exc)})
            finally:
                heartbeat.release(message)
                self._report(message, outcome, max_receive_count, waited)
                with self._changed:
                    self._settling.pop(message.message_id, None)
                    self._changed.notify_all()
        finally:
            clear_job_keys()

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

    def _record(self, outcome: Outcome) -> None:
        with self._changed:
            self.stats.verdicts.append((outcome.job_id, outcome.verdict))

    def _count(self, counter: str) -> None:
        with self._changed:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _settle(self, message: QueueMessage, outcome: Outcome) -> None:
        self._record(outcome)
        if outcome.verdict in ("completed", "duplicate"):
            self.queue.delete(message)
            self._count("completed" if outcome.verdict == "completed" else "duplicates")
        elif outcome.verdict == "failed":
            assert outcome.error is not None
            self.queue.dead_letter(message, outcome.error.code, outcome.error.message)
            self._count("failed")
        elif outcome.verdict == "busy":
            self.queue.set_visibility(message, outcome.retry_after or self.settings.visibility_timeout)
            self._count("busy")
        else:
            delay = retry_delay(message.receive_count, self.settings.retry_base_seconds)
            self.queue.set_visibility(message, delay)
            self._count("retried")

    def _abandon(self, reason: str, heartbeat: Heartbeat) -> None:
        """Hand every job in progress and every held message to other workers now. Job threads cannot be
        stopped, so the process must exit right after (see ``RunStats.abandoned``) before they write anything
        more; a job that already finished is left to settle normally."""
        with self._changed:
            if self.stats.abandoned:
                return
            self.stats.abandoned = True
            running = list(self._running.values())
            self._running.clear()
            settling = set(self._settling)
        self._stop.requested.set()
        for message in running:
            job_id, _, _ = best_effort_ids(message.body)  # the job's keys live in its own thread
            logger.warning(
                "abandoning a job in progress; releasing it",
                extra={"reason": reason, "job_id": job_id, "message_id": message.message_id},
            )
            self._release(message, heartbeat)
        for held in heartbeat.held():
            if held.message_id not in settling:
                self._release(held, heartbeat)
        self.processor.claims.release_all()
        deadline = time.monotonic() + SETTLE_WAIT_SECONDS
        with self._changed:
            while self._settling and time.monotonic() < deadline:
                self._changed.wait(WATCH_SECONDS)

    def _release(self, message: QueueMessage, heartbeat: Heartbeat) -> None:
        heartbeat.release(message)
        try:
            self.queue.set_visibility(message, 0)
            with self._changed:
                self.stats.released += 1
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not release message; it returns after its timeout", extra={"error": str(exc)})
