"""S3 failing under the worker: 500s, 503 throttling and slow answers, injected by a loopback proxy in front of
moto's server. Every job still ends completed, exactly once, with one callback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.harness import Harness
from tests.support.samples import JFK, TEST_MODEL
from worker.local.proxy import LoopbackProxy, Reply


@dataclass
class Fault:
    method: str
    path_contains: str
    times: int
    status: int | None = None  # answer this instead of forwarding
    delay: float = 0.0  # or forward after this long


class FaultyProxy:
    """Forwards every request to ``upstream`` except those a fault rule claims; counts what it injected."""

    def __init__(self, upstream: str) -> None:
        self.faults: list[Fault] = []
        self.injected = 0
        self._lock = threading.Lock()
        self._proxy = LoopbackProxy(upstream, intercept=self._intercept)
        self.url = self._proxy.url

    def _intercept(self, method: str, path: str) -> Reply | None:
        fault = self._claim(method, path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is None or fault.status is None:
            return None
        code = "SlowDown" if fault.status == 503 else "InternalError"
        return Reply(fault.status, {"content-type": "application/xml"}, _s3_error(code))

    def _claim(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    self.injected += 1
                    return fault
        return None

    def close(self) -> None:
        self._proxy.close()


def _s3_error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()


@pytest.fixture
def proxy(harness: Harness) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(harness.resources.endpoint_url)
    yield faulty
    faulty.close()


def _submit(harness: Harness, job_id: str) -> None:
    audio = harness.upload(JFK, f"audio/{job_id}.flac")
    harness.send({"job_id": job_id, "audio": audio, "model": TEST_MODEL, "callback_url": harness.receiver.url})


def _assert_completed_once(harness: Harness, job_id: str, attempt: int) -> None:
    result = harness.result(job_id)
    assert result["status"] == "completed" and result["attempt"] == attempt
    assert len(harness.receiver.wait_for(1, timeout=10)) == 1
    assert harness.queue_depth() == 0 and harness.dead_letters() == []


def test_brief_s3_throttling_is_absorbed_by_client_retries(harness: Harness, proxy: FaultyProxy) -> None:
    _submit(harness, "throttled")
    proxy.faults.append(Fault("GET", "/audio/throttled.flac", times=2, status=503))

    stats = harness.run_worker(endpoint_url=proxy.url)

    assert proxy.injected == 2 and stats.completed == 1 and stats.retried == 0
    _assert_completed_once(harness, "throttled", attempt=1)


def test_s3_down_while_fetching_leaves_the_message_for_a_later_try(harness: Harness, proxy: FaultyProxy) -> None:
    _submit(harness, "fetch-down")
    proxy.faults.append(Fault("GET", "/audio/fetch-down.flac", times=12, status=500))

    stats = harness.run_worker(endpoint_url=proxy.url, max_idle_seconds=8.0)

    assert proxy.injected == 12
    assert stats.retried >= 1 and stats.completed == 1 and stats.failed == 0
    _assert_completed_once(harness, "fetch-down", attempt=stats.retried + 1)


def test_s3_refusing_to_store_results_retries_the_job_without_losing_it(harness: Harness, proxy: FaultyProxy) -> None:
    _submit(harness, "store-down")
    proxy.faults.append(Fault("PUT", "/results/store-down/transcript.json", times=12, status=503))

    stats = harness.run_worker(endpoint_url=proxy.url, max_idle_seconds=8.0)

    assert proxy.injected == 12
    assert stats.retried >= 1 and stats.completed == 1
    _assert_completed_once(harness, "store-down", attempt=stats.retried + 1)


def test_slow_s3_answers_only_slow_the_job_down(harness: Harness, proxy: FaultyProxy) -> None:
    _submit(harness, "slow")
    proxy.faults.append(Fault("GET", "/audio/slow.flac", times=1, delay=2.0))

    started = time.monotonic()
    stats = harness.run_worker(endpoint_url=proxy.url)

    assert proxy.injected == 1 and stats.completed == 1 and time.monotonic() - started >= 2.0
    _assert_completed_once(harness, "slow", attempt=1)
