"""A transcript: plain dataclasses the engines return and diarization, every renderer and the result summary read.

A leaf: standard library only, so layers above and beside the engine import it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Segment", "Transcript", "Word"]


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None  # with diarization


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    words: list[Word] | None = None
    speaker: str | None = None  # with diarization; None also where nobody could be heard


@dataclass
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    task: str = "transcribe"
    speakers: dict[str, float] | None = None  # label -> talk seconds, when diarized (empty: nobody spoke)
    speech_seconds: float | None = None  # speech the voice activity detector found; None when it did not run
