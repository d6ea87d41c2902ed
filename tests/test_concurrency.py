"""WHISPER_CONCURRENCY > 1: one worker holds several messages at once, each in its own thread, with its own log
keys, and a SIGTERM finishes or releases every one of them.

The audio comes from a loopback host that holds each download until the test lets it go, so the test decides
when jobs overlap instead of hoping that they do: while downloads are held, their jobs are in progress (message
received, claim taken, status ``fetching``) and none can finish.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL
from tests.support.waiting import eventually
from tests.support.worker_processes import WorkerProcess, completed_lines
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.models.cache import resolve
from worker.ops.logs import logger
from worker.ops.metrics import JobMetrics
from worker.service import runner
from worker.service.app import build_worker
from worker.service.pipeline import JobProcessor, Outcome
from worker.service.runner import BUSY_POLL_SECONDS, RunStats, Worker
from worker.service.settings import Settings
from worker.service.sqs import JobQueue, QueueInfo, QueueMessage


class AudioHost:
    """Serves ``/<name>`` over loopback HTTP; a download waits at its gate until ``open(name)`` (or 30 s)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._changed = threading.Condition()
        self._gates: dict[str, threading.Event] = {}
        self.in_flight: set[str] = set()
        self.most_in_flight = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/")
                with host._changed:
                    host.in_flight.add(name)
                    host.most_in_flight = max(host.most_in_flight, len(host.in_flight))
                    host._changed.notify_all()
                try:
                    host._gate(name).wait(timeout=30)
                    self.send_response(200)
                    self.send_header("content-type", "audio/flac")
                    self.send_header("content-length", str(len(host.body)))
                    self.end_headers()
                    self.wfile.write(host.body)
                except OSError:  # the worker exited while its download was held
                    pass
                finally:
                    with host._changed:
                        host.in_flight.discard(name)
                        host._changed.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="audio-host", daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    def _gate(self, name: str) -> threading.Event:
        with self._changed:
            return self._gates.setdefault(name, threading.Event())

    def open(self, *names: str) -> None:
        for name in names:
            self._gate(name).set()

    def wait_in_flight(self, names: set[str], timeout: float) -> None:
        """Block until exactly ``names`` are being downloaded at the same moment."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.in_flight == names, timeout=timeout):
                raise AssertionError(f"downloads in flight: {sorted(self.in_flight)}, expected {sorted(names)}")

    def close(self) -> None:
        with self._changed:
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()
        self._server.shutdown()
        self._server.server_close()


class LogCapture(logging.Handler):
    """Every line the worker logs in this process, formatted (JSON, thread keys and all) as it would print it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(self.format(record)))


@pytest.fixture
def audio_host() -> Iterator[AudioHost]:
    host = AudioHost(JFK.read_bytes())
    yield host
    host.close()


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    target = logging.getLogger(logger.name)
    target.addHandler(capture)
    yield capture
    target.removeHandler(capture)


@pytest.fixture(scope="module")
def warm_model_dir(model_dir: Path) -> Path:
    """Convert tiny.en once into the shared model dir, so worker processes only load it."""
    resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False)
    return model_dir


def _in_flight(harness: Harness) -> int:
    attrs = harness.sqs.get_queue_attributes(
        QueueUrl=harness.resources.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_three_slots_hold_three_messages_at_once_and_each_completes_once_under_its_own_log_keys(
    harness: Harness, audio_host: AudioHost, captured_logs: LogCapture
) -> None:
    names = ["j1", "j2", "j3", "j4"]
    message_ids = {
        name: harness.send(
            {"job_id": name, "audio": audio_host.url(name), "model": TEST_MODEL, "callback_url": harness.receiver.url}
        )
        for name in names
    }
    settings = harness.settings.with_overrides(concurrency=3, max_idle_seconds=3.0)
    worker = build_worker(settings, engine=harness.engine)
    stats: list[RunStats] = []
    runner = threading.Thread(target=lambda: stats.append(worker.run()), name="worker-under-test", daemon=True)
    runner.start()
    try:
        # Three jobs are inside their downloads at the same moment: three messages held, three claims taken.
        audio_host.wait_in_flight({"j1", "j2", "j3"}, timeout=30)
        assert _in_flight(harness) == 3
        for name in ("j1", "j2", "j3"):
            assert f"results/{name}/.claim" in harness.object_keys(f"results/{name}/")
        assert harness.object_keys("results/j4/") == []
    finally:
        audio_host.open(*names)
        runner.join(timeout=120)
    assert not runner.is_alive() and stats, "the worker did not stop"
    [run] = stats

    assert audio_host.most_in_flight == 3
    # The fourth job began only once a slot was free: its first line follows a completion, in log order.
    messages = [(r.get("job_id"), r.get("message")) for r in captured_logs.records]
    first_done = min(i for i, (job, text) in enumerate(messages) if text == "job completed")
    assert min(i for i, (job, _) in enumerate(messages) if job == "j4") > first_done
    assert (run.received, run.completed, run.failed, run.retried, run.busy) == (4, 4, 0, 0, 0)
    assert not run.abandoned
    for name in names:
        result = harness.result(name)
        assert result["status"] == "completed" and result["message_id"] == message_ids[name]
        assert "fellow Americans" in result["text_preview"]
    callbacks = harness.receiver.wait_for(4, timeout=10)
    assert sorted(c.payload["job_id"] for c in callbacks if c.signature_valid and c.payload) == names
    assert harness.queue_depth() == 0 and harness.dead_letters() == []

    # Each job's lines carry its own ids: a key shared between threads would put one job's id on another's lines.
    for name in names:
        lines = [r for r in captured_logs.records if r.get("job_id") == name]
        assert lines and all(r.get("message_id") == message_ids[name] for r in lines), lines
        assert [r["message"] for r in lines].count("job completed") == 1
    by_message = {
        r["message_id"]: r.get("job_id") for r in captured_logs.records if r.get("message") == "job completed"
    }
    assert by_message == {message_ids[name]: name for name in names}
    started = [r for r in captured_logs.records if r.get("message") == "worker started"]
    assert started and "job_id" not in started[0] and "message_id" not in started[0]


def test_sigterm_lets_jobs_in_progress_finish_within_grace_and_releases_the_rest(
    local_aws: LocalAws,
    secret: str,
    warm_model_dir: Path,
    audio_host: AudioHost,
    tmp_path: Path,
    receiver: CallbackReceiver,
) -> None:
    grace = 12
    harness_sqs = local_aws.client("sqs")
    s3 = local_aws.client("s3")
    r = local_aws.resources
    assert r is not None

    def send(name: str) -> str:
        body = {"job_id": name, "audio": audio_host.url(name), "model": TEST_MODEL, "callback_url": receiver.url}
        return harness_sqs.send_message(QueueUrl=r.queue_url, MessageBody=json.dumps(body))["MessageId"]

    def keys(name: str) -> list[str]:
        listing = s3.list_objects_v2(Bucket=r.bucket, Prefix=f"results/{name}/")
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def counts(url: str) -> tuple[int, int]:
        attrs = harness_sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"{what} within {timeout}s; log:\n{worker.log_path.read_text()[-4000:]}"
            time.sleep(0.1)

    message_ids = {name: send(name) for name in ("a", "b", "c")}
    env = local_aws.worker_env(
        secret=secret,
        model_dir=warm_model_dir,
        model=TEST_MODEL,
        concurrency=3,
        shutdown_grace_seconds=grace,
        visibility_timeout=30,
        retry_base_seconds=1,
        callback_attempts=3,
        max_idle_seconds=60,  # a safety net: a forgotten worker stops by itself
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        audio_host.wait_in_flight({"a", "b", "c"}, timeout=60)
        signalled = worker.send(signal.SIGTERM)
        worker.wait_for_line(lambda line: line.get("message") == "shutdown requested", timeout=10)
        # "a" and "b" may finish; "c" is still downloading when the grace period runs out.
        audio_host.open("a", "b")
        assert worker.wait(timeout=grace + 15) == 0
        exited_after = time.monotonic() - signalled
    finally:
        worker.kill()

    assert exited_after > grace - 1, exited_after  # it gave "c" the whole grace period before letting go
    for name in ("a", "b"):
        [done] = completed_lines([worker], name)
        assert done["message_id"] == message_ids[name]
        result = json.loads(s3.get_object(Bucket=r.bucket, Key=f"results/{name}/result.json")["Body"].read())
        assert result["status"] == "completed"
        assert len([c for c in receiver.received if c.payload and c.payload.get("job_id") == name]) == 1
    [abandoned] = [
        line for line in worker.lines() if line.get("message") == "abandoning a job in progress; releasing it"
    ]
    assert abandoned["reason"] == "shutdown grace period ran out"
    assert (abandoned["job_id"], abandoned["message_id"]) == ("c", message_ids["c"])
    # "c" is back on the queue at once (not after its 30 s visibility), its claim dropped, nothing dead-lettered.
    wait_until(lambda: counts(r.queue_url) == (1, 0), 5, "c visible again")
    assert keys("c") in ([], ["results/c/status.json"])
    assert completed_lines([worker], "c") == []
    assert counts(r.dlq_url) == (0, 0)


# ------------------------------------------------------------------ the loop's bookkeeping, with stand-ins


class ScriptedQueue:
    """A queue in memory that records every receive as (max_messages, wait_seconds)."""

    def __init__(self, count: int) -> None:
        self.waiting = [QueueMessage(f"m{i}", f"r{i}", "{}", 1, None) for i in range(count)]
        self.receives: list[tuple[int, int]] = []
        self.asked: list[tuple[int, list[str]]] = []  # each receive that brought messages: asked for, brought
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []

    def describe(self) -> QueueInfo:
        return QueueInfo(max_receive_count=3, dlq_url="dlq")

    def receive(self, *, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[QueueMessage]:
        self.receives.append((max_messages, wait_seconds))
        taken, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        if taken:
            self.asked.append((max_messages, [m.message_id for m in taken]))
        if not taken:
            time.sleep(0.05)  # stands in for the long poll without making the test wait for it
        return taken

    def delete(self, message: QueueMessage) -> None:
        self.deleted.append(message.message_id)

    def set_visibility(self, message: QueueMessage, seconds: int) -> None:
        self.visibility.append((message.message_id, seconds))

    def extend(self, messages: list[QueueMessage], seconds: int) -> None:
        pass


class GatedProcessor:
    """Each job runs until the test opens its gate; records which run at once."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._gates: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self.most_running = 0
        self.claims_released = 0
        self.claims = self
        self.threads: list[threading.Thread] = []  # the job threads, to join once their gates are open

    def release_all(self) -> None:
        self.claims_released += 1

    def last_holder_died(self, message: QueueMessage) -> bool:
        return False

    def gate(self, message_id: str) -> threading.Event:
        with self._changed:
            return self._gates.setdefault(message_id, threading.Event())

    def process(self, message: QueueMessage, *, max_receive_count: int | None) -> Outcome:
        with self._changed:
            self.threads.append(threading.current_thread())
            self.running.add(message.message_id)
            self.most_running = max(self.most_running, len(self.running))
            self._changed.notify_all()
        self.gate(message.message_id).wait(timeout=10)
        with self._changed:
            self.running.discard(message.message_id)
        return Outcome("completed", message.message_id)

    def wait_running(self, ids: set[str], timeout: float = 5) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.running == ids, timeout=timeout), self.running


class LoopWatch:
    """Counts the worker loop's turns that wait instead of receiving, so a test can see a decision not to
    receive happen (twice, to be sure a whole turn passed) instead of sleeping and hoping it did."""

    def __init__(self, worker: Worker) -> None:
        self._changed = threading.Condition()
        self.waits = 0
        wait_for_slot = worker._wait_for_slot

        def counted(timeout: float) -> None:
            with self._changed:
                self.waits += 1
                self._changed.notify_all()
            wait_for_slot(timeout)

        worker._wait_for_slot = counted  # type: ignore[method-assign]

    def two_more_turns(self, timeout: float = 10) -> None:
        with self._changed:
            target = self.waits + 2
            assert self._changed.wait_for(lambda: self.waits >= target, timeout=timeout), "the loop stopped turning"


class ShiftedClock:
    """The ``time`` module as the runner sees it, with ``monotonic`` movable forward: its visibility-timeout
    window passes at once instead of in real seconds."""

    def __init__(self) -> None:
        self.shift = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _start(
    settings: Settings, queue: ScriptedQueue, processor: GatedProcessor
) -> tuple[Worker, threading.Thread, LoopWatch]:
    metrics = JobMetrics("Test", write=lambda line: None)
    worker = Worker(settings, cast(JobQueue, queue), cast(JobProcessor, processor), metrics)
    watch = LoopWatch(worker)
    thread = threading.Thread(target=worker.run, name="worker-under-test", daemon=True)
    thread.start()
    return worker, thread, watch


def test_receives_take_one_message_for_a_visibility_timeout_after_start_and_none_while_all_are_busy() -> None:
    queue, processor = ScriptedQueue(5), GatedProcessor()
    worker, thread, watch = _start(Settings(concurrency=3, max_jobs=5, preload_model=False), queue, processor)
    processor.wait_running({"m0", "m1", "m2"})
    watch.two_more_turns()
    # What a dead worker held comes back within one visibility timeout: until then each message is met alone.
    assert queue.receives == [(1, 20), (1, BUSY_POLL_SECONDS), (1, BUSY_POLL_SECONDS)]
    processor.gate("m0").set()
    processor.wait_running({"m1", "m2", "m3"})
    assert queue.receives[3] == (1, BUSY_POLL_SECONDS)
    for i in range(5):
        processor.gate(f"m{i}").set()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert (worker.stats.received, worker.stats.completed, worker.stats.released) == (5, 5, 0)
    assert sorted(queue.deleted) == [f"m{i}" for i in range(5)] and processor.most_running == 3
    assert sum(count for count, _ in queue.receives) >= 5 and not queue.waiting


def test_after_that_window_receives_double_up_to_the_free_slots_and_a_redelivery_starts_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ShiftedClock()
    monkeypatch.setattr(runner, "time", clock)
    queue, processor = ScriptedQueue(0), GatedProcessor()
    settings = Settings(concurrency=4, max_jobs=8, visibility_timeout=10, wait_seconds=1, preload_model=False)
    worker, thread, _ = _start(settings, queue, processor)
    eventually(lambda: queue.receives, 5, "the first receive")  # started: the window is counted from here
    clock.shift = 10.5  # the window passes with the queue empty
    queue.waiting = [QueueMessage(f"m{i}", f"r{i}", "{}", 1, None) for i in range(3)]
    processor.wait_running({"m0", "m1", "m2"})
    assert queue.asked == [(1, ["m0"]), (2, ["m1", "m2"])], "one, then double towards the free slots"
    queue.waiting = [QueueMessage("m3", "r3", "{}", 2, None)] + [
        QueueMessage(f"m{i}", f"r{i}", "{}", 1, None) for i in (4, 5, 6, 7)
    ]
    for i in range(3):
        processor.gate(f"m{i}").set()
    processor.wait_running({"m3", "m4", "m5", "m6"})
    for i in range(3, 8):
        processor.gate(f"m{i}").set()
    thread.join(timeout=10)
    assert not thread.is_alive() and worker.stats.completed == 8
    redelivered = next(n for n, (_, ids) in enumerate(queue.asked) if "m3" in ids)
    assert {asked for asked, _ in queue.asked[redelivered + 1 :]} == {1}, "after a redelivery, one at a time again"


def test_one_slot_keeps_receive_batch_and_works_one_message_at_a_time() -> None:
    queue, processor = ScriptedQueue(3), GatedProcessor()
    for i in range(3):
        processor.gate(f"m{i}").set()
    worker, thread, _ = _start(Settings(receive_batch=3, max_jobs=3, preload_model=False), queue, processor)
    thread.join(timeout=10)

    assert not thread.is_alive() and queue.receives == [(3, 20)]
    assert worker.stats.completed == 3 and processor.most_running == 1 and queue.deleted == ["m0", "m1", "m2"]


def test_the_grace_period_running_out_releases_every_held_message_once_and_nothing_settles_after() -> None:
    queue, processor = ScriptedQueue(3), GatedProcessor()
    settings = Settings(concurrency=2, receive_batch=3, shutdown_grace=0.5, preload_model=False)
    worker, thread, _ = _start(settings, queue, processor)
    processor.wait_running({"m0", "m1"})  # "m2" was received too and waits for a slot
    worker.request_stop()
    thread.join(timeout=5)
    processor.gate("m0").set()
    processor.gate("m1").set()
    for job in processor.threads:  # they return; they must not settle released messages
        job.join(timeout=10)
        assert not job.is_alive()

    assert not thread.is_alive() and worker.stats.abandoned
    assert sorted(queue.visibility) == [("m0", 0), ("m1", 0), ("m2", 0)] and queue.deleted == []
    assert worker.stats.released == 3 and processor.claims_released == 1 and worker.stats.completed == 0


def test_a_suspect_waits_for_the_jobs_in_progress_then_runs_alone_with_no_receive_beside_it() -> None:
    queue, processor = ScriptedQueue(4), GatedProcessor()
    queue.waiting[1] = QueueMessage("m1", "r1", "{}", 3, None)  # received three times: earlier holders died with it
    worker, thread, watch = _start(Settings(concurrency=3, max_jobs=4, preload_model=False), queue, processor)
    processor.wait_running({"m0"})  # "m1" came next and waits behind the job in progress
    watch.two_more_turns()
    receives = len(queue.receives)
    assert receives == 2, "a suspect waiting for the slots to empty stops further receives"
    processor.gate("m0").set()
    processor.wait_running({"m1"})
    watch.two_more_turns()
    assert processor.running == {"m1"} and len(queue.receives) == receives, "alone, and nothing received meanwhile"
    assert [m.message_id for m in queue.waiting] == ["m2", "m3"]
    processor.gate("m1").set()
    processor.wait_running({"m2", "m3"})
    processor.gate("m2").set()
    processor.gate("m3").set()
    thread.join(timeout=10)

    assert not thread.is_alive() and worker.stats.suspects == 1 and worker.stats.completed == 4
