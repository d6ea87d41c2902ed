"""What a caller may ask of an engine, and the check that a model can serve it."""

from __future__ import annotations

from dataclasses import dataclass

from worker.audio.speech import VadOptions
from worker.contract.languages import known_by, language_code
from worker.errors import InvalidMessage


class Cancelled(Exception):
    """The caller set the job's ``cancel`` event (its message was handed back to the queue): the engine dropped the
    job's remaining work and returns nothing for it."""


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    task: str = "transcribe"
    initial_prompt: str | None = None
    word_timestamps: bool = False
    beam_size: int | None = None
    vad: VadOptions | None = None  # None: every second is decoded


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
