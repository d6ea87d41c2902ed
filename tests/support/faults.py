"""Engine faults on purpose: a backend that raises on its Nth forward pass and on audio marked as poison, and a
``whisper-worker run`` launcher that puts it under the batched engine of a real worker process, whose decoder
children are ``tests.support.faulty_decoder`` (they crash, blow their memory limit or hang on files marked for it).

    python -m tests.support.faults      # like ``whisper-worker run``
                                        # TEST_FAULT_ON_CALL=N: the Nth pass of several rows raises
                                        # TEST_CRASH_JOB_PREFIX=P: a job whose id starts with P SIGKILLs the worker
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.audio.wav import write_wav

# A second or more of this constant level marks audio the faulty backend refuses, wherever it lands in a window.
POISON_LEVEL = 0.25
POISON_SAMPLES = SAMPLE_RATE


class InjectedFault(RuntimeError):
    pass


def write_poison(path: Any, seconds: float = 1.5) -> Any:
    """Speech with ``seconds`` of the poison level inside it: the voice activity gate passes it on to the engine
    (a pause that short does not split the speech around it), where the faulty backend refuses every pass holding it.
    """
    from tests.support.audio_factory import load_jfk

    speech = load_jfk()
    middle = speech.size // 2
    block = np.full(int(seconds * SAMPLE_RATE), POISON_LEVEL, dtype=np.float32)
    return write_wav(path, np.concatenate([speech[:middle], block, speech[middle:]]))


class FaultyBackend:
    """Wraps a real backend: raises once on the ``fail_on_call``-th forward pass of several decoder rows (the engine
    then decodes its parts one by one: a pass of one row would only be tried again), and on every pass holding
    poison."""

    def __init__(self, inner: Any, *, fail_on_call: int | None = None) -> None:
        self._inner = inner
        self._fail_on_call = fail_on_call
        self._lock = threading.Lock()
        self.calls = 0
        self.several = 0  # passes of more than one decoder row
        self.passes: list[tuple[int, str | None]] = []  # (decoder rows, the fault injected or None), in order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _check(self, windows: np.ndarray, rows: int) -> None:
        with self._lock:
            self.calls += 1
            self.several += rows > 1
            due = rows > 1 and self.several == self._fail_on_call
        poisoned = bool(((np.abs(windows - POISON_LEVEL) < 1e-3).sum(axis=1) >= POISON_SAMPLES).any())
        fault = "scheduled" if due else "poison" if poisoned else None
        with self._lock:
            self.passes.append((rows, fault))
        if due:
            raise InjectedFault(f"injected fault on forward pass {self.calls}")
        if poisoned:
            raise InjectedFault("injected fault: poison audio in the batch")

    def generate(self, windows: np.ndarray, tokenizer: Any, shared: Any = None) -> Any:
        rows = sum(1 if w is None else len(w.placements) for w in shared) if shared else len(windows)
        self._check(windows, rows)
        return self._inner.generate(windows, tokenizer, shared)

    def generate_sampled(self, windows: np.ndarray, tokenizer: Any, temperature: float) -> Any:
        self._check(windows, len(windows))
        return self._inner.generate_sampled(windows, tokenizer, temperature)


def faulty(engine: Any, fail_on_call: int | None = None) -> Any:
    """The batched ``engine`` with every backend it loads wrapped in ``FaultyBackend``."""
    load = engine._backend_for
    engine.faulty_backends = []  # what each test can look at afterwards: which passes ran and which failed

    def wrap(name: str) -> FaultyBackend:
        backend = FaultyBackend(load(name), fail_on_call=fail_on_call)
        engine.faulty_backends.append(backend)
        return backend

    engine._backend_for = wrap
    return engine


def main() -> int:
    from tests.support import faulty_decoder
    from worker import cli
    from worker.audio import isolated
    from worker.service import app

    isolated.CHILD_MODULE = faulty_decoder.MODULE  # good files decode as in production
    if os.environ.get("TEST_CRASH_JOB_PREFIX"):  # and jobs that kill the whole process whenever they start
        from tests.support.crashing_worker import install_crash_hook

        install_crash_hook(os.environ["TEST_CRASH_JOB_PREFIX"])

    make_engine = app.make_engine
    fail_on_call = int(os.environ.get("TEST_FAULT_ON_CALL", "0")) or None
    app.make_engine = lambda *args, **kwargs: faulty(make_engine(*args, **kwargs), fail_on_call)  # type: ignore[assignment]
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
