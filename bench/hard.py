"""A hard corpus made from real clips: the conditions where Whisper falls back to sampling at raised temperature.

``python -m bench.hard --clips ../shared/audio/dev --out /tmp/hard`` writes, for each clip with a ``.txt`` reference,
variants a backend meets in calls, voicemail and field recordings, each a 16 kHz WAV with the clip's reference:

    noise0   pink noise at 0 dB SNR (as loud as the speech)
    noise5   pink noise at 5 dB SNR
    quiet    the speech 30 dB down, over a -70 dBFS noise floor (a far, quiet microphone)
    fast     1.4 times the tempo, pitch kept (ffmpeg's atempo): fast talkers
    clipped  driven 12 dB into hard clipping: a hot microphone

The result is a corpus ``python -m bench.run --corpus`` reads. Deterministic: the noise is seeded from the clip's
name, so every run hears the same audio.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.corpus import from_directory
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav

TEMPO = 1.4
MAX_SECONDS = 600.0


def pink_noise(samples: int, seed: int) -> np.ndarray:
    """Noise whose power falls 3 dB an octave, as room and street noise roughly does (shaped white noise)."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, n=samples)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _rms(audio: np.ndarray) -> float:
    loud = audio[np.abs(audio) > 1e-4]  # speech, not the silences around it
    return float(np.sqrt(np.mean(loud**2))) if loud.size else 0.0


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = pink_noise(audio.size, seed) * _rms(audio) / 10 ** (snr_db / 20)
    mixed = audio + noise
    return mixed / max(1.0, float(np.abs(mixed).max()))


def quiet(audio: np.ndarray, seed: int) -> np.ndarray:
    floor = pink_noise(audio.size, seed) * 10 ** (-70 / 20)
    return audio * 10 ** (-30 / 20) + floor


def clipped(audio: np.ndarray, seed: int) -> np.ndarray:
    return np.clip(audio / max(float(np.abs(audio).max()), 1e-6) * 10 ** (12 / 20), -1.0, 1.0)


def faster(path: Path, out: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(path), "-af", f"atempo={TEMPO}", "-ac", "1", "-ar", str(SAMPLE_RATE),
         str(out)],
        check=True,
    )  # fmt: skip


VARIANTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "noise0": lambda audio, seed: with_noise(audio, 0.0, seed),
    "noise5": lambda audio, seed: with_noise(audio, 5.0, seed),
    "quiet": quiet,
    "clipped": clipped,
}


def build(clips: Path, out: Path) -> int:
    """Write every variant of every clip into ``out``; returns the number of files written."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed for the fast variant: make ffmpeg")
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for item in from_directory(clips).items:
        source, reference = item.audio, item.text + "\n"
        audio = decode_audio(source, max_seconds=MAX_SECONDS).astype(np.float64)
        seed = int.from_bytes(hashlib.sha256(source.name.encode()).digest()[:4], "big")
        for name, make in VARIANTS.items():
            target = out / f"{source.stem}.{name}.wav"
            write_wav(target, make(audio, seed).astype(np.float32))
            target.with_suffix(".txt").write_text(reference)
            written += 1
        target = out / f"{source.stem}.fast.wav"
        faster(source, target)
        target.with_suffix(".txt").write_text(reference)
        written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, required=True, help="a corpus directory: audio with .txt references")
    parser.add_argument("--out", type=Path, required=True, help="where the hard corpus goes")
    args = parser.parse_args(argv)
    written = build(args.clips, args.out)
    print(f"wrote {written} clips to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
