"""Decode any common audio or video container to 16 kHz mono float32, in-process with PyAV.

``decode_audio`` and ``probe_seconds`` run here, in the caller's process; the worker calls them through
``worker.audio.isolated`` (child processes, where a crash in FFmpeg costs one job), or through
``InProcessDecoder`` where WHISPER_DECODER_ISOLATION=false.

A RIFF/WAVE file that is already 16-bit PCM at 16 kHz mono skips FFmpeg: its samples are read with the standard
library and numpy, giving exactly the values of the PyAV path below (int16 / 32768). PyAV is imported only when a
file needs it, so such WAVs decode even where PyAV is missing.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.errors import AudioTooLong, UndecodableAudio

RESAMPLE_SECONDS = 2.0  # decoded audio gathered before each resampler call


class Decoder(Protocol):
    """Probing and decoding untrusted files: here (``InProcessDecoder``) or in child processes
    (``worker.audio.isolated.DecoderPool``)."""

    def probe(self, path: Path) -> float | None: ...

    def decode(self, path: Path, *, max_seconds: float) -> np.ndarray: ...

    def close(self) -> None: ...


class InProcessDecoder:
    """``probe_seconds`` and ``decode_audio`` in this process: WHISPER_DECODER_ISOLATION=false, tools and tests."""

    def probe(self, path: Path) -> float | None:
        return probe_seconds(path)

    def decode(self, path: Path, *, max_seconds: float) -> np.ndarray:
        return decode_audio(path, max_seconds=max_seconds)

    def close(self) -> None:
        pass


def decode_audio(path: Path, *, max_seconds: float) -> np.ndarray:
    """Samples in [-1, 1] at 16 kHz mono; refuses input longer than ``max_seconds`` while decoding."""
    audio = read_native_wav(path, max_seconds=max_seconds)
    if audio is None:
        audio = _decode_with_pyav(path, int(max_seconds * SAMPLE_RATE), max_seconds)
    return audio


def read_native_wav(path: Path, *, max_seconds: float) -> np.ndarray | None:
    """The samples of a 16 kHz mono s16 WAV, read with the standard library; None for any other file."""
    return _read_native_wav(path, int(max_seconds * SAMPLE_RATE), max_seconds)


def probe_native_wav(path: Path) -> float | None:
    """The length of a PCM WAV the standard library reads, in seconds; None for any other file. Never raises."""
    try:
        return _probe_wav(path)
    except (wave.Error, EOFError, OSError, ValueError):
        return None


def probe_seconds(path: Path) -> float | None:
    """The length a file's header declares, in seconds, without decoding; None when unknown or unreadable.

    An estimate for the decoded-audio budget only: it never raises (the decoder reports bad files) and may be
    wrong (streamed or concatenated files), so ``decode_audio`` still enforces its own limit.
    """
    seconds = probe_native_wav(path)
    if seconds is not None:
        return seconds
    try:  # not a PCM WAV the standard library reads: ask PyAV
        return _probe_with_pyav(path)
    except Exception:  # any failure to read a header just means "unknown"
        return None


def _probe_wav(path: Path) -> float | None:
    with wave.open(str(path), "rb") as wav:
        frames, frame_bytes, rate = wav.getnframes(), wav.getnchannels() * wav.getsampwidth(), wav.getframerate()
    # Streamed WAVs declare 0 or 0xFFFFFFFF bytes of data: the file's size bounds what PCM it can hold.
    frames = min(frames, path.stat().st_size // max(1, frame_bytes))
    return frames / rate if frames > 0 and rate > 0 else None


def _probe_with_pyav(path: Path) -> float | None:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / av.time_base
    return None


def _read_native_wav(path: Path, max_samples: int, max_seconds: float) -> np.ndarray | None:
    """The samples of a 16 kHz mono s16 WAV, or None when the file is anything else (PyAV then decodes it)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SAMPLE_RATE):
                return None
            # The header's length can be wrong (streamed WAVs): read one sample past the limit and look.
            data = wav.readframes(max_samples + 1)
    except (wave.Error, EOFError, OSError, ValueError):
        return None
    samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    if samples.size > max_samples:
        raise AudioTooLong(f"audio is longer than the {max_seconds:.0f} s limit")
    if samples.size == 0:
        return None  # let PyAV judge an empty or odd file, so its errors stay the same
    return samples.astype(np.float32) / 32768.0


def _decode_with_pyav(path: Path, max_samples: int, max_seconds: float) -> np.ndarray:
    # max_samples is int(max_seconds * SAMPLE_RATE), as decode_pcm16 computes it
    chunks: list[np.ndarray] = []  # int16, turned into floats once at the end
    decode_pcm16(path, max_seconds=max_seconds, sink=chunks.append)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def decode_pcm16(path: Path, *, max_seconds: float, sink: Callable[[np.ndarray], None]) -> int:
    """Decode with PyAV, handing 16 kHz mono int16 chunks to ``sink`` in order; the number of samples.

    Raises ``AudioTooLong`` before a chunk would pass ``max_seconds`` and ``UndecodableAudio`` for a file without
    audio samples or one FFmpeg cannot read. The isolated decoder's child streams the chunks to a file with it.
    """
    import av

    max_samples = int(max_seconds * SAMPLE_RATE)
    total = 0

    def add(chunk: np.ndarray) -> None:
        nonlocal total
        if total + chunk.size > max_samples:
            raise AudioTooLong(f"audio is longer than the {max_seconds:.0f} s limit")
        total += chunk.size
        if chunk.size:
            sink(chunk)

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UndecodableAudio("the file has no audio stream")
            converter = _ToTarget(add)
            for frame in container.decode(container.streams.audio[0]):
                converter.push(frame)
            converter.finish()
    except (AudioTooLong, UndecodableAudio):
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise UndecodableAudio(f"cannot decode audio: {exc}") from exc
    if total == 0:
        raise UndecodableAudio("the audio stream holds no samples")
    return total


class _ToTarget:
    """Decoded frames to 16 kHz mono s16, handed to ``add`` in order.

    Frames are resampled a couple of seconds at a time: a resampler call costs as much as tens of milliseconds
    of audio, and codecs such as Opus or AAC deliver 20-ms frames, so one call per frame spent more CPU on the
    calls than on the audio. Streams that change rate, layout or sample format part way (concatenated ADTS, a
    radio capture) get a fresh resampler from the change on, as FFmpeg's own command line does.
    """

    def __init__(self, add: Any) -> None:
        self._add = add
        self._shape: tuple[str, str, int] | None = None
        self._resampler: Any = None
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0

    def push(self, frame: Any) -> None:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._shape:
            self.finish()
            self._shape = shape
        if _is_target_pcm(frame):
            self._add(frame.to_ndarray().reshape(-1))  # a resampler would only copy it, at twice the cost
            return
        self._pending.append(frame.to_ndarray())  # (channels, n) if planar, (1, n * channels) if packed
        self._pending_samples += frame.samples
        if self._pending_samples >= RESAMPLE_SECONDS * frame.sample_rate:
            self._resample()

    def _resample(self) -> None:
        import av

        if not self._pending or self._shape is None:
            return
        sample_format, layout, rate = self._shape
        joined = av.AudioFrame.from_ndarray(np.concatenate(self._pending, axis=1), format=sample_format, layout=layout)
        joined.sample_rate = rate
        self._pending, self._pending_samples = [], 0
        # s16 like whisper's own ffmpeg pipeline: with a float target swresample does not normalise its down-mix
        # matrix, so stereo came out up to 1.41x and 5.1 up to 3.4x full scale.
        self._resampler = self._resampler or av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for out in self._resampler.resample(joined):
            self._add(out.to_ndarray().reshape(-1))

    def finish(self) -> None:
        """Resample what is pending and drain the resampler: the stream ended, or its shape changes."""
        self._resample()
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._add(out.to_ndarray().reshape(-1))
            self._resampler = None


def _is_target_pcm(frame: Any) -> bool:
    return frame.sample_rate == SAMPLE_RATE and frame.format.name in ("s16", "s16p") and len(frame.layout.channels) == 1
