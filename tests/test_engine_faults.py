"""The batched engine keeps serving whatever one job, one pass or its own thread does: real tiny.en weights,
with a backend that raises, hangs or dies on purpose (``tests.support.faults``)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.audio_factory import load_jfk
from tests.support.faults import POISON_LEVEL, FaultyBackend, faulty
from tests.support.samples import TEST_MODEL
from tests.support.waiting import eventually
from worker.engine import batched
from worker.engine.batched import BatchedEngine
from worker.engine.choose import make_engine
from worker.engine.options import Cancelled, TranscribeOptions
from worker.models.cache import ModelCache
from worker.service.errors import EngineFailed, EngineTimeout

OPTIONS = TranscribeOptions()
PHRASE = "ask not what your country can do for you"


def _engine(model_dir: Path, kind: str = "ctranslate2", **deadline: float) -> BatchedEngine:
    models = ModelCache(model_dir=model_dir, sources={}, download=False, device="cpu")
    engine = make_engine(models, kind, **deadline)
    assert isinstance(engine, BatchedEngine)
    return engine


def _text(engine: BatchedEngine, audio: np.ndarray) -> str:
    return engine.transcribe(TEST_MODEL, audio, OPTIONS).text.lower()


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once (they share the engine's passes); each result or the exception it raised."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.exception(timeout=300) or f.result() for f in futures]


class _Wrapped:
    """A real backend whose ``decode`` runs ``before`` first."""

    def __init__(self, inner: Any, before: Callable[[], None]) -> None:
        self._inner = inner
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, windows: np.ndarray, tokenizer: Any, shared: Any = None) -> Any:
        self._before()
        return self._inner.generate(windows, tokenizer, shared)


def _wrap(engine: BatchedEngine, before: Callable[[], None]) -> BatchedEngine:
    load = engine._backend_for
    engine._backend_for = lambda name: _Wrapped(load(name), before)
    return engine


def test_a_poison_job_fails_alone_while_the_jobs_in_its_pass_complete(model_dir: Path) -> None:
    # The model thread is held inside a first pass until the four jobs wait together, so they share the next one.
    held, gate = threading.Event(), threading.Event()

    def hold_first_pass() -> None:
        if not held.is_set():
            held.set()
            gate.wait(120)

    engine = faulty(_wrap(_engine(model_dir), hold_first_pass))
    jfk = load_jfk()
    poison = np.full(5 * 16_000, POISON_LEVEL, dtype=np.float32)
    first = threading.Thread(target=_text, args=(engine, jfk))
    first.start()
    assert held.wait(120), "the first pass never started"
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_text, engine, audio) for audio in (jfk, jfk, jfk, poison)]
        # all four handed to the model thread, none admitted yet
        eventually(lambda: len(engine._incoming) >= 4, 60, "the jobs reaching the engine", every=0.01)
        gate.set()
        results = [f.exception(timeout=300) or f.result() for f in futures]
    first.join(60)
    assert all(isinstance(r, str) and PHRASE in r for r in results[:3]), results
    assert isinstance(results[3], EngineFailed) and "poison" in str(results[3])
    assert PHRASE in _text(engine, jfk)  # and the engine goes on
    passes = [p for backend in engine.faulty_backends for p in backend.passes]
    # The poison shared a pass with good audio (the case this is about), and only passes holding it failed.
    assert any(rows > 1 and fault == "poison" for rows, fault in passes), passes
    assert {fault for _, fault in passes} <= {"poison", None}


def test_a_pass_that_fails_once_fails_no_job(model_dir: Path) -> None:
    engine = _engine(model_dir)
    load = engine._backend_for
    backends: list[FaultyBackend] = []
    engine._backend_for = lambda name: backends.append(FaultyBackend(load(name), fail_on_call=1)) or backends[-1]
    jfk = load_jfk()
    results = _together(*(lambda: _text(engine, jfk) for _ in range(3)))
    assert all(isinstance(r, str) and PHRASE in r for r in results), results
    passes = backends[0].passes
    [failed] = [i for i, (_, fault) in enumerate(passes) if fault == "scheduled"]
    assert passes[failed][0] > 1, passes  # the fault hit a pass of several rows
    assert any(rows == 1 for rows, _ in passes[failed + 1 :]), passes  # which was then decoded part by part


class _Fatal(BaseException):
    """Not an Exception: it escapes every guard around a pass and ends the model thread."""


def test_a_dead_model_thread_fails_its_jobs_at_once_and_the_next_job_gets_a_new_one(model_dir: Path) -> None:
    deaths = [1]

    def die_once() -> None:
        if deaths:
            deaths.pop()
            raise _Fatal("model thread killed")

    engine = _wrap(_engine(model_dir), die_once)
    started = time.monotonic()
    with pytest.raises(EngineFailed, match="model thread died"):
        _text(engine, load_jfk())
    assert time.monotonic() - started < 30
    assert PHRASE in _text(engine, load_jfk())


def test_a_job_past_its_deadline_fails_and_a_stuck_pass_is_logged(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(batched, "STUCK_PASS_SECONDS", 0.5)
    monkeypatch.setattr(batched, "WATCH_SECONDS", 0.2)
    unstuck = threading.Event()
    unstuck.set()
    engine = _wrap(_engine(model_dir, deadline_base_seconds=300.0, deadline_factor=0.0), lambda: unstuck.wait(60))
    assert PHRASE in _text(engine, load_jfk())  # the model loaded first: the deadline below times only the pass
    unstuck.clear()  # the device stops answering
    engine._deadline_base = 3.0
    started = time.monotonic()
    with pytest.raises(EngineTimeout):
        _text(engine, load_jfk())
    assert time.monotonic() - started < 10
    assert "engine pass is stuck" in caplog.text, caplog.text
    unstuck.set()  # the device answers again: the engine serves the next job, given an ordinary deadline
    engine._deadline_base = 300.0
    assert PHRASE in _text(engine, load_jfk())


def test_a_reference_loop_job_does_not_hold_batched_jobs_for_its_whole_length(model_dir: Path) -> None:
    engine = _engine(model_dir, kind="batched")  # torch passes share the model, and its lock, with transcribe()
    jfk = load_jfk()
    # about 90 s: several windows, each taking the lock on its own, so some are left when the short job is done
    long_audio = np.tile(jfk, 8)
    progress, cancel = threading.Event(), threading.Event()

    def long_job() -> None:
        with contextlib.suppress(Cancelled):  # ended by the test once it has seen what it came for
            engine.transcribe(
                TEST_MODEL,
                long_audio,
                TranscribeOptions(beam_size=2),  # beam search: the reference loop
                progress=lambda percent: percent > 0 and progress.set(),
                cancel=cancel,
            )

    reference = threading.Thread(target=long_job)
    _text(engine, jfk)  # load the model first
    reference.start()
    try:
        assert progress.wait(120), "the beam-search job never got going"
        assert PHRASE in _text(engine, jfk)
        assert reference.is_alive(), "the long job finished first: the test proves nothing"
    finally:
        cancel.set()
        reference.join(300)
