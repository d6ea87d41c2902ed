"""An operator's own pyannote.audio pipeline: a local directory holding its ``config.yaml`` and the checkpoints
that config names. Loaded with the Hugging Face hub offline, so a config that points at a hub id fails instead of
downloading."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.diarization.turns import SpeakerBounds, Turn, labelled


class PipelineUnavailable(RuntimeError):
    pass


def pipeline_config(directory: str | Path) -> Path:
    config = Path(directory) / "config.yaml"
    if not config.is_file():
        raise PipelineUnavailable(f"{directory} is not a pyannote.audio pipeline directory: no config.yaml in it")
    return config


class PyannoteDiarizer:
    name = "pyannote"

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        config = pipeline_config(directory)
        os.environ["HF_HUB_OFFLINE"] = "1"  # the worker never downloads weights behind the operator's back
        try:
            import torch
            from pyannote.audio import Pipeline
        except ImportError as exc:
            raise PipelineUnavailable(f"WHISPER_DIARIZATION_MODEL needs pyannote.audio installed: {exc}") from exc
        pipeline = Pipeline.from_pretrained(config)
        if pipeline is None:
            raise PipelineUnavailable(f"pyannote.audio could not load the pipeline in {directory}")
        self._pipeline = pipeline.to(torch.device(device))
        self._torch = torch
        self.directory = str(directory)
        self._lock = threading.Lock()

    def diarize(self, audio: np.ndarray, bounds: SpeakerBounds) -> list[Turn]:
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        options: dict[str, Any] = {}
        if bounds.exact:
            options["num_speakers"] = bounds.exact
        if bounds.low:
            options["min_speakers"] = bounds.low
        if bounds.high:
            options["max_speakers"] = bounds.high
        with self._lock:
            output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **options)
        # pyannote.audio 4 wraps the annotation with other outputs; 3.x returns the annotation itself.
        annotation = getattr(output, "exclusive_speaker_diarization", None) or getattr(
            output, "speaker_diarization", output
        )
        spans = [(seg.start, seg.end, name) for seg, _, name in annotation.itertracks(yield_label=True)]
        return labelled(spans)  # pyannote honours the bounds itself
