"""The worker's diarizer: an operator's pyannote.audio pipeline directory when WHISPER_DIARIZATION_MODEL names
one, else the built-in CAM++ diarizer. Built on first use and then shared by every job."""

from __future__ import annotations

import threading

from worker.diarization import Diarizer

BUILT_IN_NAME = "campplus"


class DiarizerFactory:
    def __init__(self, model: str | None, device: str) -> None:
        self.model = model or BUILT_IN_NAME
        self.device = device
        self._diarizer: Diarizer | None = None
        self._lock = threading.Lock()

    def get(self) -> Diarizer:
        with self._lock:
            if self._diarizer is None:
                self._diarizer = build(self.model, self.device)
            return self._diarizer


def build(model: str, device: str) -> Diarizer:
    if model == BUILT_IN_NAME:
        from worker.diarization.embedding import EmbeddingDiarizer

        return EmbeddingDiarizer(device)
    from worker.diarization.pyannote import PyannoteDiarizer

    return PyannoteDiarizer(model, device)
