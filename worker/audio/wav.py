"""16-bit mono WAV files at Whisper's rate: the decoder's fast path, and the one writer for tests, the soak and
the benchmark."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from worker.audio import SAMPLE_RATE


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """Write ``samples`` (float in [-1, 1], or int16 PCM as it is) at 16 kHz; parent folders are made."""
    samples = np.asarray(samples)
    scaled = samples if samples.dtype == np.int16 else np.clip(samples, -1, 1) * 32767
    pcm = scaled.astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path
