"""The Whisper engine: decoded audio and options in, a Transcript out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worker.decode import SAMPLE_RATE
from worker.errors import InvalidMessage, ResourceExhausted, WorkerUnfit
from worker.languages import known_by, language_code
from worker.models import ModelCache, inference_lock
from worker.transcribe_progress import PercentHook
from worker.transcribe_progress import transcribe as transcribe_with_progress
from worker.transcript import Segment, Transcript, Word


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    task: str = "transcribe"
    initial_prompt: str | None = None
    word_timestamps: bool = False
    beam_size: int | None = None


def check_options(model_name: str, multilingual: bool, num_languages: int, options: TranscribeOptions) -> None:
    """Refuse options the model cannot serve, naming the field, before any audio is fetched or decoded."""
    if options.language:
        code = language_code(options.language)
        if code is None:
            raise InvalidMessage(f"language: {options.language!r} is not a language Whisper knows")
        if not multilingual and code != "en":
            raise InvalidMessage(
                f"language: model {model_name!r} is English-only; language {options.language!r} needs a "
                "multilingual model"
            )
        if multilingual and not known_by(code, num_languages):
            raise InvalidMessage(f"language: model {model_name!r} does not know language {options.language!r}")
    if options.task == "translate" and not multilingual:
        raise InvalidMessage(f"task: model {model_name!r} is English-only and cannot translate")


def pick_device(preference: str) -> str:
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def require_usable_device(device: str) -> None:
    """Raise ``WorkerUnfit`` when a CUDA device was asked for and cannot run a kernel."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise WorkerUnfit(
            f"WHISPER_DEVICE={device} but torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA "
            "device: no GPU is visible, or its driver is too old for this build"
        )
    try:
        (torch.ones(1, device=device) + 1).item()
    except Exception as exc:
        raise WorkerUnfit(f"WHISPER_DEVICE={device} but a CUDA kernel cannot run: {exc}") from exc


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


class Engine:
    """openai-whisper's ``transcribe()``, one file at a time: every option, the reference for accuracy."""

    def __init__(self, models: ModelCache) -> None:
        self.models = models

    def check(self, model_name: str, options: TranscribeOptions) -> None:
        """Load the model if needed and refuse options it cannot serve (``InvalidMessage``)."""
        model = self.models.get(model_name)
        check_options(model_name, model.is_multilingual, model.num_languages, options)

    def transcribe(
        self, model_name: str, audio: np.ndarray, options: TranscribeOptions, progress: PercentHook | None = None
    ) -> Transcript:
        """``progress(percent)`` is called as each 30-second window completes (see ``transcribe_progress``)."""
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
