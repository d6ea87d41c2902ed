"""Make real media files in-process with PyAV (there is no ffmpeg binary here) for the decode tests.

Encoders this PyAV build (18.x, FFmpeg 8.1) was checked to have, with ``av.codecs_available`` and
``av.Codec(name, "w")``:

* PCM / lossless: ``pcm_s16le``, ``flac``.
* MP3: ``libmp3lame`` (preferred; FFmpeg's own ``mp3`` name is an alias for it when present).
* Opus: ``libopus`` (preferred) and FFmpeg's native ``opus``, which is experimental and
  stereo/48 kHz only, so it is only a fallback.
* Vorbis: only FFmpeg's native ``vorbis`` encoder (no ``libvorbis``); it is experimental, so it
  needs ``strict=experimental``.
* AAC: FFmpeg's native ``aac``.
* Video: ``libx264`` (preferred for mp4) and ``mpeg4`` (always built into FFmpeg) as the fallback.

``encoder_for`` picks the first of these that exists, so a differently built PyAV degrades to a
skip in the tests instead of a crash.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio

JFK = Path(__file__).resolve().parents[1] / "data" / "jfk.flac"

# Preference lists: logical codec -> encoder names to try, best first.
_ENCODERS: dict[str, tuple[str, ...]] = {
    "pcm_s16le": ("pcm_s16le",),
    "flac": ("flac",),
    "mp3": ("libmp3lame", "mp3"),
    "opus": ("libopus", "opus"),
    "vorbis": ("libvorbis", "vorbis"),
    "aac": ("aac", "libfdk_aac"),
    "h264": ("libx264", "h264"),
    "mpeg4": ("mpeg4",),
}

# Encoders FFmpeg marks experimental: they refuse to open unless strict compliance is relaxed.
_EXPERIMENTAL = {"vorbis", "opus"}

# Channel layouts by channel count for the files we write.
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def has_encoder(name: str) -> bool:
    """True if this PyAV build can open ``name`` as an encoder."""
    if name not in av.codecs_available:
        return False
    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


def encoder_for(codec: str) -> str | None:
    """The first available encoder for a logical codec name (``"mp3"``, ``"opus"``...), or None."""
    for name in _ENCODERS.get(codec, (codec,)):
        if has_encoder(name):
            return name
    return None


def _require_encoder(codec: str) -> str:
    name = encoder_for(codec)
    if name is None:
        raise RuntimeError(f"this PyAV build has no encoder for {codec!r}")
    return name


def load_jfk() -> np.ndarray:
    """The 11 s JFK sample as 16 kHz mono float32, decoded by the code under test."""
    return decode_audio(JFK, max_seconds=60)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Mono float32 ``samples`` resampled from ``src_rate`` to ``dst_rate`` with FFmpeg's swresample."""
    samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
    frame.sample_rate = src_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32)


def _as_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """(channels, n) float32: a 1-D signal is copied to every channel, a 2-D one must already match."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = np.tile(samples, (channels, 1))
    if samples.shape[0] != channels:
        raise ValueError(f"samples have {samples.shape[0]} channels, expected {channels}")
    return np.clip(samples, -1.0, 1.0)


def _audio_frames(samples: np.ndarray, rate: int, layout: str, chunk: int = 4096):
    """Planar float frames of ``chunk`` samples; PyAV's encoder re-chunks and converts them as the codec needs."""
    pts = 0
    for start in range(0, samples.shape[1], chunk):
        part = np.ascontiguousarray(samples[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += part.shape[1]
        yield frame


def _add_audio_stream(output, codec: str, rate: int, channels: int):
    encoder = _require_encoder(codec)
    options = {"strict": "experimental"} if encoder in _EXPERIMENTAL else {}
    stream = output.add_stream(encoder, rate=rate, options=options)
    stream.layout = _LAYOUTS[channels]
    if encoder in ("libopus", "opus", "aac", "vorbis", "libmp3lame"):
        stream.bit_rate = 96_000 * min(channels, 2)
    return stream


def _encode_audio(output, stream, samples: np.ndarray, rate: int, channels: int) -> None:
    for frame in _audio_frames(samples, rate, _LAYOUTS[channels]):
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))


def write_audio(path: Path, samples: np.ndarray, rate: int, *, container: str, codec: str, channels: int = 1) -> Path:
    """Encode ``samples`` (1-D, copied to every channel, or (channels, n)) at ``rate`` into ``path``.

    ``container`` is an FFmpeg muxer name (``wav``, ``flac``, ``mp3``, ``ogg``, ``ipod``/``mp4`` for m4a,
    ``webm``); ``codec`` a logical codec name from ``_ENCODERS`` or a raw encoder name.
    """
    data = _as_channels(samples, channels)
    with av.open(str(path), "w", format=container) as output:
        stream = _add_audio_stream(output, codec, rate, channels)
        _encode_audio(output, stream, data, rate, channels)
    return Path(path)


def _video_encoder() -> str:
    # h264 (libx264) is what real phone/screen recordings carry; mpeg4 part 2 is always built into FFmpeg.
    for codec in ("h264", "mpeg4"):
        name = encoder_for(codec)
        if name is not None:
            return name
    raise RuntimeError("this PyAV build has no h264 or mpeg4 encoder")


def _add_video_stream(output, fps: int):
    stream = output.add_stream(_video_encoder(), rate=fps)
    stream.width, stream.height = 64, 48  # tiny, but even sizes as yuv420p needs
    stream.pix_fmt = "yuv420p"
    return stream


def _video_frames(n: int):
    for i in range(n):
        image = np.full((48, 64, 3), (i * 37) % 256, dtype=np.uint8)
        yield av.VideoFrame.from_ndarray(image, format="rgb24")


def write_video_with_audio(path: Path, samples: np.ndarray, rate: int, *, fps: int = 5) -> Path:
    """An mp4 with a small video stream (covering the audio's duration) and an AAC stereo audio stream."""
    data = _as_channels(samples, 2)
    n_frames = max(1, int(np.ceil(data.shape[1] / rate * fps)))
    with av.open(str(path), "w", format="mp4") as output:
        video = _add_video_stream(output, fps)
        audio = _add_audio_stream(output, "aac", rate, 2)
        for i, frame in enumerate(_video_frames(n_frames)):
            frame.pts = i
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        _encode_audio(output, audio, data, rate, 2)
    return Path(path)


def write_video_only(path: Path, *, frames: int = 10, fps: int = 5) -> Path:
    """An mp4 with a video stream and no audio stream at all."""
    with av.open(str(path), "w", format="mp4") as output:
        video = _add_video_stream(output, fps)
        for i, frame in enumerate(_video_frames(frames)):
            frame.pts = i
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    return Path(path)


def write_empty_audio_stream(path: Path, *, rate: int = 16_000) -> Path:
    """A Matroska file that declares an audio stream (FLAC) but holds no audio packets at all."""
    with av.open(str(path), "w", format="matroska") as output:
        stream = _add_audio_stream(output, "flac", rate, 1)
        output.mux(stream.encode(None))
    return Path(path)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


__all__ = [
    "JFK",
    "SAMPLE_RATE",
    "encoder_for",
    "has_encoder",
    "load_jfk",
    "resample",
    "tone",
    "write_audio",
    "write_empty_audio_stream",
    "write_video_only",
    "write_video_with_audio",
]
