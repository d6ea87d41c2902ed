"""Percent-done from openai-whisper's ``transcribe()``, which has no progress callback.

``transcribe()`` reports progress only by driving ``tqdm.tqdm(total=<mel frames>)`` and calling
``pbar.update(frames)`` after each 30-second window. The usual trick, assigning ``whisper.transcribe.tqdm``,
changes a module global: two transcriptions in two threads (two workers in one test process, or a future
batched engine) would steal each other's progress, and every other caller would be affected.

Instead each call runs a private copy of the ``transcribe`` function: the same code object, but a globals
namespace of its own (a shallow copy of the module's) in which the name ``tqdm`` resolves to a stand-in that
forwards the frame counts to this call's hook. Nothing shared is modified, so concurrent calls are independent,
and the decoding itself is untouched: results are identical to ``model.transcribe()``. Helpers that
``transcribe`` calls keep their own module globals, which is right, since only ``transcribe`` uses ``tqdm``.

The same private namespace lets the model's lock be taken per window instead of per file (``_LockedModel``), so
one long word-timestamp or beam-search job does not hold the batched engine's passes for its whole length.

If a future openai-whisper stops using ``tqdm`` this way, ``supported()`` turns false and transcription runs
without percent, holding the lock for the whole file (the pinned version is checked by the tests).
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

PercentHook = Callable[[float], None]


class _Bar:
    """Just enough of ``tqdm.tqdm`` for ``transcribe()``: a context manager with ``update(n)``."""

    def __init__(self, *_: Any, total: int | None = None, hook: PercentHook, **__: Any) -> None:
        self.total = total or 0
        self.n = 0
        self._hook = hook

    def __enter__(self) -> _Bar:
        self._hook(0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total > 0:
            self._hook(min(100.0, 100.0 * self.n / self.total))


def _module() -> types.ModuleType:
    # ``whisper.transcribe`` the attribute is the function; the module lives in sys.modules under that name.
    return importlib.import_module("whisper.transcribe")


def supported() -> bool:
    module = _module()
    function = getattr(module, "transcribe", None)
    return isinstance(function, types.FunctionType) and "tqdm" in function.__code__.co_names


class _LockedModel:
    """The model as ``transcribe()`` sees it: each forward call (one window's decoding or language detection)
    takes the model's lock, so the batched engine's passes interleave with a long reference transcription."""

    def __init__(self, model: Any, lock: AbstractContextManager) -> None:
        self._model = model
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._model.decode(*args, **kwargs)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._model.detect_language(*args, **kwargs)


def _locked_word_timestamps(function: Callable[..., Any], lock: AbstractContextManager) -> Callable[..., Any]:
    """``add_word_timestamps`` under the lock, on the real model: its forward hooks must see only its own pass."""

    def locked(*, model: Any, **kwargs: Any) -> Any:
        with lock:
            return function(model=getattr(model, "_model", model), **kwargs)

    return locked


def transcribe(
    model: Any, audio: Any, hook: PercentHook | None, lock: AbstractContextManager | None = None, **options: Any
) -> dict:
    """``model.transcribe(audio, **options)``, calling ``hook(percent)`` as windows complete; with ``lock``, each
    window's forward calls hold it rather than the whole file."""
    if (hook is None and lock is None) or not supported():
        if lock is None:
            return model.transcribe(audio, **options)
        with lock:
            return model.transcribe(audio, **options)
    original = _module().transcribe
    namespace = dict(original.__globals__)
    if hook is not None:
        namespace["tqdm"] = types.SimpleNamespace(tqdm=functools.partial(_Bar, hook=hook))
    if lock is not None:
        namespace["add_word_timestamps"] = _locked_word_timestamps(namespace["add_word_timestamps"], lock)
        model = _LockedModel(model, lock)
    private = types.FunctionType(
        original.__code__, namespace, original.__name__, original.__defaults__, original.__closure__
    )
    private.__kwdefaults__ = original.__kwdefaults__
    return private(model, audio, **options)
