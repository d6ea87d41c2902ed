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


def inventory(model: str | None) -> list[dict[str, str | None]]:
    """What the diarizer would load, each with its status (verified, missing, SHA256 MISMATCH, configured), for
    ``models list``: the built-in weights by hash, an operator's pipeline directory by its config."""
    if model and model != BUILT_IN_NAME:
        from worker.diarization.pyannote import PipelineUnavailable, pipeline_config

        try:
            status, path = "configured", str(pipeline_config(model))
        except PipelineUnavailable:
            status, path = "missing", model
        return [{"name": "pyannote pipeline", "source": "WHISPER_DIARIZATION_MODEL", "status": status, "path": path}]
    from worker.diarization.weights import BUILT_IN, WeightsMismatch, WeightsUnavailable, verified

    rows: list[dict[str, str | None]] = []
    for weights in BUILT_IN:
        try:
            status, path = "verified", str(verified(weights))
        except WeightsUnavailable as exc:
            status = "SHA256 MISMATCH" if isinstance(exc, WeightsMismatch) else "missing"
            path = str(where) if (where := weights.location()) else None
        rows.append({"name": weights.name, "source": f"pkg:{weights.package}", "status": status, "path": path})
    return rows
