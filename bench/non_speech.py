"""Recordings without speech, and speech with long gaps of non-speech, generated with numpy.

Whisper invents words on these ("you", ". You of a a a", whole sentences over music); the tests and the benchmark's
non-speech tiers use the same generator, so a figure in docs/performance.md is what a test checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from worker.audio import SAMPLE_RATE

# Major triads (root frequencies in Hz), a slow progression: C, F, G, C, each held CHORD_SECONDS.
CHORD_ROOTS = (261.63, 349.23, 392.00, 261.63)
CHORD_SECONDS = 4.0


def silence(seconds: float, seed: int = 0) -> np.ndarray:
    """Digital silence."""
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def low_noise(seconds: float, seed: int = 0) -> np.ndarray:
    """White noise at about -50 dBFS: a quiet room through a cheap microphone."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.003).astype(np.float32)


def hum(seconds: float, seed: int = 0, mains: float = 50.0) -> np.ndarray:
    """Mains hum: ``mains`` Hz and its harmonics (100, 150 Hz for 50 Hz mains), with a little noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.05 * np.sin(2 * np.pi * mains * t) + 0.03 * np.sin(2 * np.pi * 2 * mains * t)
    wave += 0.01 * np.sin(2 * np.pi * 3 * mains * t)
    return (wave + low_noise(seconds, seed) * 0.3).astype(np.float32)


def chords(seconds: float, seed: int = 0) -> np.ndarray:
    """Slow major chords (root, third, fifth, each with two overtones), a soft attack and release on each."""
    held = int(CHORD_SECONDS * SAMPLE_RATE)
    t = np.arange(held) / SAMPLE_RATE
    envelope = np.minimum(1.0, np.minimum(t / 0.1, (CHORD_SECONDS - t) / 0.5))
    bars = []
    for root in CHORD_ROOTS:
        tone = np.zeros(held)
        for ratio in (1.0, 1.26, 1.5):  # a major triad, equal temperament near enough
            for overtone, gain in ((1, 1.0), (2, 0.4), (3, 0.2)):
                tone += gain * np.sin(2 * np.pi * root * ratio * overtone * t)
        bars.append(0.06 * tone * envelope)
    bar = np.concatenate(bars)
    repeats = int(np.ceil(seconds * SAMPLE_RATE / bar.size))
    return np.tile(bar, repeats)[: int(seconds * SAMPLE_RATE)].astype(np.float32)


NON_SPEECH: dict[str, Callable[..., np.ndarray]] = {
    "silence": silence,
    "low_noise": low_noise,
    "hum_50hz": hum,
    "hum_100hz": lambda seconds, seed=0: hum(seconds, seed, mains=100.0),
    "chords": chords,
}


def with_gaps(clips: Sequence[np.ndarray], gap_seconds: float, kinds: Sequence[str] = tuple(NON_SPEECH)) -> np.ndarray:
    """``clips`` one after another, each followed by ``gap_seconds`` of the next kind of non-speech in turn; a gap
    also comes first."""
    parts = [NON_SPEECH[kinds[0]](gap_seconds, 0)]
    for n, clip in enumerate(clips):
        parts.append(clip.astype(np.float32))
        parts.append(NON_SPEECH[kinds[(n + 1) % len(kinds)]](gap_seconds, n + 1))
    return np.concatenate(parts)
