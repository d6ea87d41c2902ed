"""The reference engine: openai-whisper's ``transcribe()`` one file at a time, with every option."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import torch

from worker.audio import SAMPLE_RATE
from worker.audio.speech import joined
from worker.engine import PercentHook
from worker.engine.gating import on_timeline, seed_of, silent_transcript, speech_of
from worker.engine.options import Cancelled, TranscribeOptions, check_options
from worker.engine.reference_progress import transcribe as transcribe_with_progress
from worker.errors import ResourceExhausted
from worker.models.cache import ModelCache, inference_lock
from worker.transcript import Segment, Transcript, Word


def _segment(index: int, raw: dict) -> Segment:
    words = None
    if raw.get("words") is not None:
        words = [
            Word(w["word"], float(w["start"]), float(w["end"]), float(w.get("probability", 0.0))) for w in raw["words"]
        ]
    return Segment(
        id=index,
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=raw["text"],
        avg_logprob=float(raw.get("avg_logprob", 0.0)),
        no_speech_prob=float(raw.get("no_speech_prob", 0.0)),
        compression_ratio=float(raw.get("compression_ratio", 0.0)),
        temperature=float(raw.get("temperature", 0.0)),
        words=words,
    )


class ReferenceEngine:
    """openai-whisper's ``transcribe()``, one file at a time: every option, the reference for accuracy."""

    name = "sequential"

    def __init__(self, models: ModelCache) -> None:
        self.models = models

    def check(self, model_name: str, options: TranscribeOptions) -> None:
        """Load the model if needed and refuse options it cannot serve (``InvalidMessage``)."""
        model = self.models.get(model_name)
        check_options(model_name, model.is_multilingual, model.num_languages, options)

    def transcribe(
        self,
        model_name: str,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: PercentHook | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        """``progress(percent)`` is called as each 30-second window completes (see ``transcribe_progress``); a set
        ``cancel`` stops the job at the next window. With ``options.vad`` only the speech is decoded, joined end to
        end, and the transcript's times are put back on the recording's timeline."""
        speech = speech_of(audio, options)
        if speech is None:
            return self._transcribe(model_name, audio, options, progress, cancel)
        if not speech.regions:
            self.check(model_name, options)
            return silent_transcript(audio, options, speech)
        inner = self._transcribe(
            model_name, joined(audio, speech.regions), replace(options, vad=None), progress, cancel
        )
        return on_timeline(inner, speech, round(audio.size / SAMPLE_RATE, 3))

    def _transcribe(
        self,
        model_name: str,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: PercentHook | None,
        cancel: threading.Event | None,
    ) -> Transcript:
        progress = _cancellable(progress, cancel)
        model = self.models.get(model_name)
        check_options(model_name, model.is_multilingual, model.num_languages, options)
        kwargs: dict = {
            "language": options.language,
            "task": options.task,
            "initial_prompt": options.initial_prompt,
            "word_timestamps": options.word_timestamps,
            "fp16": self.models.device.startswith("cuda"),
            "verbose": None,
        }
        if options.beam_size:
            kwargs.update(beam_size=options.beam_size, best_of=options.beam_size)
        try:
            # temperature fallbacks sample from torch's global generator: seeded from the audio, the same input
            # gives the same words (while no other job samples at the same moment)
            torch.manual_seed(seed_of(audio))
            result = transcribe_with_progress(model, audio, progress, lock=inference_lock(model), **kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise ResourceExhausted(f"GPU out of memory: {exc}") from exc
        segments = [_segment(i, raw) for i, raw in enumerate(result["segments"])]
        return Transcript(
            text=result["text"].strip(),
            language=result.get("language") or options.language or "en",
            duration=round(audio.size / SAMPLE_RATE, 3),
            segments=segments,
            task=options.task,
        )

    def transcribe_many(
        self, model_name: str, audios: list[np.ndarray], options: TranscribeOptions
    ) -> list[Transcript]:
        return [self.transcribe(model_name, audio, options) for audio in audios]


def _cancellable(progress: PercentHook | None, cancel: threading.Event | None) -> PercentHook | None:
    """The progress hook, raising ``Cancelled`` at a window's end once ``cancel`` is set."""
    if cancel is None:
        return progress

    def hook(percent: float) -> None:
        if cancel.is_set():
            raise Cancelled("the job was handed back")
        if progress is not None:
            progress(percent)

    return hook
