"""Shutdown behaviour of real ``whisper-worker run`` processes: SIGTERM with and without time to finish,
a second SIGTERM, and ``kill -9`` in the middle of a transcription.

The test process hosts moto's server and the callback receiver; each worker is a subprocess talking to them
over loopback HTTP, with its JSON log lines written to a file that the test reads. Every wait is bounded and
every process still running at the end of a test is killed.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.samples import JFK, TEST_MODEL
from tests.support.worker_processes import Backend, WorkerProcess, completed_lines
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.models.cache import resolve

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def warm_model_dir(model_dir: Path) -> Path:
    """Convert tiny.en once into the shared model dir, so worker processes only load it."""
    resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False)
    return model_dir


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk.flac repeated: "long" is 44 s (outlasts any short grace), "double" 22 s (several seconds of work)."""
    speech = decode_audio(JFK, max_seconds=60)
    folder = tmp_path_factory.mktemp("audio")
    return {
        "long": write_wav(folder / "long.wav", np.concatenate([speech] * 4)),
        "double": write_wav(folder / "double.wav", np.concatenate([speech] * 2)),
    }


@pytest.fixture
def spawn(tmp_path: Path, secret: str, warm_model_dir: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn(local, **env)`` starts a worker process against ``local``; all are killed at teardown."""
    started: list[WorkerProcess] = []

    def start(local: LocalAws, **settings: object) -> WorkerProcess:
        env = local.worker_env(
            secret=secret,
            model_dir=warm_model_dir,
            model=TEST_MODEL,
            **{"retry_base_seconds": 1, "callback_attempts": 3, "max_idle_seconds": 60} | settings,
        )  # max_idle_seconds: a safety net, a forgotten worker stops by itself
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started) + 1}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def aws(receiver: CallbackReceiver) -> Iterator[Callable[[int], Backend]]:
    """``aws(visibility_timeout)``: an embedded AWS (maxReceiveCount 5) for one test, stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def open_(visibility_timeout: int) -> Backend:
            local = stack.enter_context(LocalAws(visibility_timeout=visibility_timeout, max_receive_count=5))
            return Backend(local, receiver)

        yield open_


# ------------------------------------------------------------------------------------------ tests


def test_sigterm_with_time_to_spare_finishes_the_job_in_hand_and_releases_the_rest(
    aws: Callable[..., Backend], receiver: CallbackReceiver, spawn: Callable[..., WorkerProcess]
) -> None:
    backend = aws(30)
    audio = backend.upload(JFK, "audio/jfk.flac")
    backend.send("first", audio)
    backend.send("second", audio)
    worker = spawn(backend.local, shutdown_grace_seconds=30, visibility_timeout=30)

    backend.wait_started("first")
    signalled = worker.send(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    exited_after = time.monotonic() - signalled

    assert exited_after < 30, "the job in hand took the whole grace period"
    done = completed_lines([worker], "first")
    assert len(done) == 1
    result = backend.result("first")
    assert result is not None and result["status"] == "completed"
    assert len(backend.callbacks("first")) == 1
    # "first" is deleted; "second" was never started and is visible again at once, not after 30 s.
    assert backend.counts() == (1, 0)
    assert backend.keys("second") == []
    assert not [r for r in worker.lines() if r.get("job_id") == "second"]
    assert backend.counts(backend.r.dlq_url) == (0, 0)


def test_sigterm_with_a_short_grace_releases_the_job_for_the_next_worker(
    aws: Callable[..., Backend],
    receiver: CallbackReceiver,
    spawn: Callable[..., WorkerProcess],
    clips: dict[str, Path],
) -> None:
    grace = 1
    backend = aws(120)
    backend.send("long", backend.upload(clips["long"], "audio/long.wav"))
    first = spawn(backend.local, shutdown_grace_seconds=grace, visibility_timeout=120)

    backend.wait_started("long")
    signalled = first.send(signal.SIGTERM)
    assert first.wait(timeout=grace + 10) == 0
    assert time.monotonic() - signalled < grace + 5
    first.wait_for_line(lambda r: r.get("reason") == "shutdown grace period ran out", timeout=1)
    # Released: receivable again right away, far sooner than the 120 s visibility timeout.
    assert backend.wait_visible(1, timeout=5) < 5
    assert completed_lines([first], "long") == []

    second = spawn(backend.local, shutdown_grace_seconds=grace, visibility_timeout=120, max_idle_seconds=5)
    verdict = second.wait_for_line(
        lambda r: r.get("job_id") == "long" and ("elsewhere" in str(r["message"]) or r["message"] == "job completed"),
        timeout=150,
    )
    assert "elsewhere" not in str(verdict.get("message")), "the released job's claim was left behind"
    assert verdict["message"] == "job completed", verdict
    assert second.wait(timeout=30) == 0

    assert len(completed_lines([first, second], "long")) == 1
    result = backend.result("long")
    assert result is not None and result["status"] == "completed" and result["attempt"] == 2
    assert len(backend.callbacks("long")) == 1
    assert backend.counts() == (0, 0)
    assert backend.counts(backend.r.dlq_url) == (0, 0)


def test_a_second_sigterm_exits_at_once(
    aws: Callable[..., Backend],
    receiver: CallbackReceiver,
    spawn: Callable[..., WorkerProcess],
    clips: dict[str, Path],
) -> None:
    grace = 30
    backend = aws(60)
    backend.send("long", backend.upload(clips["long"], "audio/long.wav"))
    worker = spawn(backend.local, shutdown_grace_seconds=grace, visibility_timeout=60)

    backend.wait_started("long")
    worker.send(signal.SIGTERM)
    worker.wait_for_line(lambda r: r.get("message") == "shutdown requested", timeout=10)
    again = worker.send(signal.SIGTERM)
    assert worker.wait(timeout=grace) == 0
    assert time.monotonic() - again < 5, "the second signal should not wait for the grace period"

    assert completed_lines([worker], "long") == []
    assert backend.wait_visible(1, timeout=5) < 5  # released, not left to its 60 s visibility timeout
    assert backend.result("long") is None


def test_kill_9_mid_transcription_loses_nothing_and_transcribes_once(
    aws: Callable[..., Backend],
    receiver: CallbackReceiver,
    spawn: Callable[..., WorkerProcess],
    clips: dict[str, Path],
) -> None:
    timeout = 10  # the smallest WHISPER_VISIBILITY_TIMEOUT the worker accepts
    backend = aws(timeout)
    backend.send("speech", backend.upload(clips["double"], "audio/double.wav"), progress_callback=True)
    first = spawn(backend.local, visibility_timeout=timeout)

    backend.wait_progress("speech", "transcribing")  # killed inside the transcription, whatever the machine's speed
    first.send(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert completed_lines([first], "speech") == []
    killed = time.monotonic()
    assert backend.counts() == (0, 1)  # still invisible: nobody released it

    second = spawn(backend.local, visibility_timeout=timeout, max_idle_seconds=timeout + 5)  # outlasts its lease
    second.wait_for_line(lambda r: r.get("message") == "job completed" and r.get("job_id") == "speech", timeout=120)
    assert time.monotonic() - killed > 3  # it came back when its visibility ran out, not at once
    assert second.wait(timeout=30) == 0

    assert len(completed_lines([first, second], "speech")) == 1
    result = backend.result("speech")
    assert result is not None and result["status"] == "completed" and result["attempt"] >= 2
    assert len(backend.callbacks("speech")) == 1
    assert len(backend.callbacks("speech", status="failed")) == 0
    assert backend.counts() == (0, 0)
    assert backend.counts(backend.r.dlq_url) == (0, 0)
