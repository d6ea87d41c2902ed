"""Whisper: decoded audio and options in, a Transcript out. Every engine implements ``Engine``.

options.py             TranscribeOptions, and the check that a model can serve them
device.py              choosing the device, refusing one that cannot run, and the precision a CPU computes in
reference.py           ReferenceEngine: openai-whisper's transcribe() file after file, every option
reference_progress.py  percent done from transcribe(), and its model lock taken per window
batched.py             BatchedEngine: windows of many jobs in one forward pass, split back per job
windows.py             cutting audio at pauses into windows, packing short pieces together
splitback.py           giving each packed piece its text back, and the accuracy checks
gating.py              voice activity gating: which stretches to decode, times back on the recording's timeline
isolate.py             decoding each piece of a shared window on its own, from one run of the encoder
backends.py            where forward passes run: openai-whisper's torch model or CTranslate2
greedy.py              token generation for a batch of windows, with timestamps
words.py               word timings for a batched transcript: its segments aligned to the audio, a window at a time
transcript.py          the old path of Transcript, Segment, Word: re-exports ``worker.transcript``, the leaf
choose.py              the engine for a device (``WHISPER_ENGINE``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from worker.engine.options import Cancelled, TranscribeOptions
from worker.engine.reference_progress import PercentHook
from worker.transcript import Transcript

if TYPE_CHECKING:
    import threading

    import numpy as np


class LoadedModels(Protocol):
    """What the runner needs of an engine's models: the device, and loading the default model up front."""

    @property
    def device(self) -> str: ...

    def loaded(self, name: str) -> bool: ...

    def get(self, name: str) -> object: ...


class Engine(Protocol):
    """What the pipeline, the benchmark and the tests call; thread-safe."""

    name: str

    @property
    def models(self) -> LoadedModels: ...

    def check(self, model_name: str, options: TranscribeOptions) -> None:
        """Raise ``InvalidMessage`` when the model cannot serve ``options`` (loading it if needed)."""

    def transcribe(
        self,
        model_name: str,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: PercentHook | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        """``progress(percent)`` is called as the audio is worked through; once ``cancel`` is set the engine stops
        spending work on the job as soon as it can and raises ``Cancelled``."""

    def transcribe_many(
        self, model_name: str, audios: list[np.ndarray], options: TranscribeOptions
    ) -> list[Transcript]:
        """Several audios at once, for callers that already hold many (benchmarks, backfills)."""


__all__ = ["Cancelled", "Engine", "LoadedModels", "PercentHook", "TranscribeOptions", "Transcript"]
