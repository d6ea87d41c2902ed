"""Where a recording speaks: Silero VAD over 16 kHz audio, as sample ranges on the recording's own timeline.

Whisper invents words where nobody speaks (a "you" per silent window, sentences over music), so the engines
decode only the stretches found here. Three stages:

1. frames quieter than ``SILENT_RMS`` (digital silence, -80 dBFS) are speechless without asking the model, so an
   hour of silence costs an energy pass;
2. the rest is brought to speaking level (the loud frames' RMS raised to ``VAD_LEVEL_RMS``, by at most
   ``VAD_MAX_GAIN``, never lowered): Silero hears level as well as voice, and quiet real recordings (FLEURS clips
   sit near -65 dBFS) lost whole sentences. It then goes through Silero in long streams decoded side by side (one
   batch row per stream, each with a second of the audio before it to warm its state): one model call per 32 ms
   step for the whole batch, not one per 32 ms of audio, which is what makes an hour take seconds on CPU;
3. the per-chunk probabilities become regions as faster-whisper's ``get_speech_timestamps`` makes them: speech
   starts above ``threshold``, ends after ``min_silence_ms`` below ``threshold - 0.15``; regions shorter than
   ``min_speech_ms`` are dropped; each is padded by ``speech_pad_ms`` on both sides and regions that then touch are
   merged, so no word is clipped at an edge.

``Timeline`` maps times in the speech-only audio (the regions joined end to end) back onto the recording.
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import importlib.util
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.audio import SAMPLE_RATE

CHUNK = 512  # Silero's step at 16 kHz: 32 ms
CONTEXT = 64  # samples of the previous chunk Silero reads with each chunk
SILENT_RMS = 1e-4  # -80 dBFS: no speech below this, whatever the model would say
# Speech level for the detector: -20 dBFS RMS over the non-silent frames, raised by up to 40 dB. Measured on the dev
# clips made hard (bench.hard): quiet and noisy FLEURS clips went from 0-3 s of 10 s found to 7-10 s, while 60 s of
# low noise, mains hum and chords still held no speech.
VAD_LEVEL_RMS = 0.1
VAD_MAX_GAIN = 100.0
# Up to 8 s per batch row, each read after the 0.25 s before it (decoded and discarded: the state settles). Against
# one stream per recording, on the dev clips joined with pauses: 4 of 10,758 chunks flip, the regions are the same,
# and the model runs a quarter as many steps. A step costs about the same for 1 row as for 64 (the call dominates),
# so shorter audio is cut into shorter rows, down to 0.5 s: a 4-s clip takes 24 steps rather than 130 (the 51 dev
# clips: 0.8 s of CPU instead of 2.8, the same regions, their edges 0.1 s apart in all).
STREAM_CHUNKS = 8 * SAMPLE_RATE // CHUNK
MIN_STREAM_CHUNKS = 16
ROWS_WANTED = 64
WARM_CHUNKS = 8
STREAMS_PER_CALL = 512  # rows per batch: about an hour of audio per sweep
# silero-vad 6.2.3 (MIT) ships its model in the package; the worker extra pins it and this checks the file.
MODEL_PACKAGE = "silero_vad"
MODEL_PATH = "data/silero_vad.jit"
MODEL_SHA256 = "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"


@dataclass(frozen=True)
class VadOptions:
    """The tunables of the job contract's ``vad`` object; defaults as faster-whisper's."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400


@dataclass(frozen=True)
class Speech:
    """What the detector found: padded, merged ``regions`` (sample ranges) to decode, and ``seconds`` of speech
    before padding."""

    regions: list[tuple[int, int]]
    seconds: float


class VoiceActivityUnavailable(RuntimeError):
    """The silero-vad package is missing or its model file is not the pinned one."""


def regions_from(probs: np.ndarray, options: VadOptions, total: int) -> Speech:
    """Speech regions (sample ranges of an audio of ``total`` samples) from per-chunk speech probabilities."""
    chunk_ms = CHUNK * 1000 / SAMPLE_RATE
    off = options.threshold - 0.15
    min_silence = max(1, round(options.min_silence_ms / chunk_ms))
    raw: list[tuple[int, int]] = []
    start: int | None = None
    quiet = 0
    for i, p in enumerate(probs.tolist()):
        if start is None:
            if p >= options.threshold:
                start, quiet = i, 0
            continue
        quiet = quiet + 1 if p < off else 0
        if quiet >= min_silence:
            raw.append((start, i - quiet + 1))
            start = None
    if start is not None:
        raw.append((start, len(probs) - quiet if quiet else len(probs)))
    shortest = options.min_speech_ms / chunk_ms
    found = [(a * CHUNK, min(total, b * CHUNK)) for a, b in raw if b - a >= shortest]
    seconds = sum(b - a for a, b in found) / SAMPLE_RATE
    return Speech(padded(found, options.speech_pad_ms * SAMPLE_RATE // 1000, total), round(seconds, 3))


def padded(regions: list[tuple[int, int]], pad: int, total: int) -> list[tuple[int, int]]:
    """Each region widened by ``pad`` samples on both sides (within ``0:total``); regions that then overlap or
    touch are merged."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(regions):
        a, b = max(0, a - pad), min(total, b + pad)
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        elif b > a:
            merged.append((a, b))
    return merged


class Timeline:
    """Maps a time in the regions joined end to end back onto the recording they were cut from."""

    def __init__(self, regions: list[tuple[int, int]]) -> None:
        self._starts: list[float] = []  # where each region starts in the joined audio, seconds
        self._origins: list[float] = []  # and in the recording
        self._ends: list[float] = []  # its end in the recording
        at = 0
        for a, b in regions:
            self._starts.append(at / SAMPLE_RATE)
            self._origins.append(a / SAMPLE_RATE)
            self._ends.append(b / SAMPLE_RATE)
            at += b - a

    def original(self, seconds: float, *, is_end: bool = False) -> float:
        """The recording's time for ``seconds`` in the joined audio; a time on a join belongs to the region that
        ends there when ``is_end`` (a segment's end), else to the one that starts there."""
        if not self._starts:
            return seconds
        find = bisect.bisect_left if is_end else bisect.bisect_right
        index = max(0, find(self._starts, seconds) - 1)
        return round(min(self._ends[index], self._origins[index] + seconds - self._starts[index]), 3)


def joined(audio: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
    """The regions' samples end to end."""
    if not regions:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([audio[a:b] for a, b in regions])


def _model_file() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VoiceActivityUnavailable("voice activity detection needs the silero-vad package (the worker extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_PATH
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != MODEL_SHA256:
        raise VoiceActivityUnavailable(f"{path}: sha256 {digest[:16]}…, expected {MODEL_SHA256[:16]}… (silero-vad)")
    return path


def _one_openmp_thread() -> None:
    """Run this thread's torch operations on one OpenMP thread. The model's operations are tiny: on several
    threads their teams spin between steps, and 51 clips cost 27 s of CPU instead of 1.2 (2 cores). OpenMP's
    thread count is the calling thread's own, so the engine's threads keep theirs (``torch.set_num_threads``
    would change every thread's)."""
    import torch

    folder = Path(torch.__file__).parent
    for library in [*folder.glob("lib/libgomp*.so*"), *folder.parent.glob("torch.libs/libgomp*.so*")]:
        try:
            ctypes.CDLL(str(library)).omp_set_num_threads(1)
        except (OSError, AttributeError):
            continue


class VoiceActivity:
    """Silero VAD on CPU, loaded once; thread-safe. Calls queue for one thread of its own, which sweeps every
    recording waiting at that moment in one batch: a sweep's cost is its steps, whatever its rows, so the short
    clips of messages in progress together cost about what one does."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._model: Any = torch.jit.load(str(_model_file()), map_location="cpu").eval()._model
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="voice-activity", initializer=_one_openmp_thread)
        self._waiting: list[tuple[np.ndarray, Future[np.ndarray]]] = []
        self._waiting_lock = threading.Lock()

    def speech(self, audio: np.ndarray, options: VadOptions) -> Speech:
        """Where ``audio`` (16 kHz mono float32) speaks."""
        return self.speech_many([audio], options)[0]

    def speech_many(self, audios: list[np.ndarray], options: VadOptions) -> list[Speech]:
        """Where each of ``audios`` speaks, swept together (and with whatever other calls are waiting)."""
        futures: list[Future[np.ndarray]] = [Future() for _ in audios]
        with self._waiting_lock:
            self._waiting.extend(zip(audios, futures, strict=True))
        self._thread.submit(self._sweep_waiting)
        return [regions_from(f.result(), options, a.size) for a, f in zip(audios, futures, strict=True)]

    def _sweep_waiting(self) -> None:
        with self._waiting_lock:
            taken, self._waiting = self._waiting, []
        if not taken:  # an earlier sweep took them
            return
        try:
            found = self.probabilities_many([audio for audio, _ in taken])
        except Exception as exc:
            for _, future in taken:
                future.set_exception(exc)
            return
        for (_, future), probs in zip(taken, found, strict=True):
            future.set_result(probs)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability per 512-sample chunk; exactly 0 for digitally silent chunks; on the caller's thread."""
        return self.probabilities_many([audio])[0]

    def probabilities_many(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """``probabilities`` of several recordings, their streams in shared batches."""
        frames = [_frames(audio) for audio in audios]
        energies = [np.einsum("ij,ij->i", f, f) for f in frames]  # sum of squares per chunk, in float32
        louds = [energy >= SILENT_RMS**2 * CHUNK for energy in energies]
        gains = [_gain(energy[loud]) for energy, loud in zip(energies, louds, strict=True)]
        probs = [np.zeros(f.shape[0], dtype=np.float32) for f in frames]
        streams = [(n, *stream) for n, loud in enumerate(louds) for stream in _streams(loud)]
        for first in range(0, len(streams), STREAMS_PER_CALL):
            batch = streams[first : first + STREAMS_PER_CALL]
            out = self._run([frames[n][warm:end] * gains[n] for n, warm, _, end in batch])
            for (n, warm, start, end), row in zip(batch, out, strict=True):
                probs[n][start:end] = row[start - warm : end - warm]
        for prob, loud in zip(probs, louds, strict=True):
            prob[~loud] = 0.0
        return probs

    def _run(self, streams: list[np.ndarray]) -> np.ndarray:
        """``[streams, steps]`` probabilities of each stream's chunks (``[chunks, CHUNK]`` each)."""
        torch = self._torch
        steps = max(len(stream) for stream in streams)
        rows = np.zeros((len(streams), steps * CHUNK + CONTEXT), dtype=np.float32)
        for i, stream in enumerate(streams):
            rows[i, CONTEXT : CONTEXT + stream.size] = stream.reshape(-1)
        data = torch.from_numpy(rows)
        out = np.zeros((len(streams), steps), dtype=np.float32)
        with torch.inference_mode():
            state = torch.zeros(2, len(streams), 128)
            for step in range(steps):
                x = data[:, step * CHUNK : (step + 1) * CHUNK + CONTEXT]
                prob, state = self._model(x, state)
                out[:, step] = prob[:, 0].numpy()
        return out


def _gain(loud_energies: np.ndarray) -> np.float32:
    """What brings the loud chunks' RMS to ``VAD_LEVEL_RMS``: at least 1, at most ``VAD_MAX_GAIN``."""
    if not loud_energies.size:
        return np.float32(1.0)
    rms = float(np.sqrt(np.mean(loud_energies, dtype=np.float64) / CHUNK))
    return np.float32(min(VAD_MAX_GAIN, max(1.0, VAD_LEVEL_RMS / rms)))


def _frames(audio: np.ndarray) -> np.ndarray:
    """``audio`` as ``[chunks, CHUNK]`` float32, the last chunk padded with silence (a view when it can be)."""
    chunks = -(-audio.size // CHUNK)
    if audio.size == chunks * CHUNK and audio.dtype == np.float32:
        return audio.reshape(chunks, CHUNK)
    whole = np.zeros(chunks * CHUNK, dtype=np.float32)
    whole[: audio.size] = audio
    return whole.reshape(chunks, CHUNK)


def _streams(loud: np.ndarray) -> list[tuple[int, int, int]]:
    """(warm-up start, start, end) chunk indices of the streams that cover every loud chunk: runs of loud chunks
    (joined across short quiet gaps, which the model must hear to end speech), cut into ``STREAM_CHUNKS``."""
    idx = np.flatnonzero(loud)
    if idx.size == 0:
        return []
    length = min(STREAM_CHUNKS, max(MIN_STREAM_CHUNKS, -(-idx.size // ROWS_WANTED)))
    breaks = np.flatnonzero(np.diff(idx) > WARM_CHUNKS) + 1
    streams = []
    for run in np.split(idx, breaks):
        lo, hi = int(run[0]), min(int(run[-1]) + 1 + WARM_CHUNKS, loud.size)
        for start in range(lo, hi, length):
            streams.append((max(0, start - WARM_CHUNKS), start, min(hi, start + length)))
    return streams


_shared: VoiceActivity | None = None
_shared_lock = threading.Lock()


def voice_activity() -> VoiceActivity:
    """The process's detector, loaded on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = VoiceActivity()
        return _shared
