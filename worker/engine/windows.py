"""Plan the model's 30-second windows: cut long audio at pauses, pack short pieces together.

Whisper's encoder always consumes 30 seconds. Cutting long audio blindly every 30 s splits words, which costs
accuracy; cutting at the quietest stretch near the end of each window does not. A 6-second clip alone would
waste four fifths of its window, so short pieces share windows, separated by silence, and are then kept
apart in the encoder and the decoder (see ``isolate``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from worker.audio import SAMPLE_RATE

WINDOW_SECONDS = 30.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
# Silence after each packed piece, inside its stretch of the window (see ``isolate``): a piece alone ends in
# silence too. Measured on real clips: 2.5 to 5 s gaps were no more accurate, and pack worse; 1 s packed 6 %
# fewer windows at the same WER, but a clip cut off mid-phrase then gained words that were never said.
PACK_GAP_SECONDS = 1.5
# A cut is looked for in the last part of each window: shorter windows would waste encoder work.
MIN_CUT_SECONDS = 18.0
# Speech that runs into a window's last seconds reads to Whisper as cut off by the window: it was trained to
# give only that speech's start time, for the next window to transcribe. So every window ends in 2 s of silence.
MAX_CUT_SECONDS = 28.0
_FRAME = SAMPLE_RATE // 50  # 20 ms energy frames
_SMOOTH_FRAMES = 15  # 300 ms: a pause between phrases, not the gap inside a plosive
# RMS (-80 dBFS): quieter than this is silence whatever its surroundings. Low, because some recordings are
# quiet throughout (peaks near -46 dBFS) and Whisper, which normalises every window, still hears their speech.
SPEECH_FLOOR = 0.0001


@dataclass(frozen=True)
class Piece:
    """Samples ``start:end`` of one job's audio; ``job`` indexes the caller's list of audios."""

    job: int
    start: int
    end: int

    @property
    def samples(self) -> int:
        return self.end - self.start


@dataclass
class Window:
    """Up to 30 s of model input: pieces placed at sample offsets, silence between and after them."""

    placements: list[tuple[Piece, int]] = field(default_factory=list)

    @property
    def used(self) -> int:
        return max((offset + piece.samples for piece, offset in self.placements), default=0)

    def audio(self, audios: Mapping[int, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
        buffer = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        for piece, offset in self.placements:
            buffer[offset : offset + piece.samples] = audios[piece.job][piece.start : piece.end]
        return buffer


def _smoothed_energy(audio: np.ndarray) -> np.ndarray:
    frames = audio[: audio.size // _FRAME * _FRAME].reshape(-1, _FRAME)
    energy = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    kernel = np.ones(_SMOOTH_FRAMES) / _SMOOTH_FRAMES
    return np.convolve(energy, kernel, mode="same")


def speaks(audio: np.ndarray, *, seconds: float = 0.5) -> bool:
    """Whether ``audio`` holds at least ``seconds`` of sound well above its own floor: speech, not room tone."""
    energy = _smoothed_energy(audio)
    if energy.size == 0:
        return False
    loud = energy > max(SPEECH_FLOOR, 4 * float(np.percentile(energy, 10)))
    return int(loud.sum()) * _FRAME >= seconds * SAMPLE_RATE


def quietest(audio: np.ndarray, lo: int, hi: int) -> int:
    """The sample offset, between ``lo`` and ``hi``, of the quietest stretch of ``audio``: where to cut it."""
    energy = _smoothed_energy(audio[lo:hi])
    return lo + int(np.argmin(energy)) * _FRAME if energy.size else (lo + hi) // 2


def cut_points(audio: np.ndarray) -> list[int]:
    """Sample offsets where ``audio`` is cut into pieces of at most ``MAX_CUT_SECONDS``, each at a pause."""
    total = audio.size
    limit = int(MAX_CUT_SECONDS * SAMPLE_RATE)
    if total <= limit:
        return []
    energy = _smoothed_energy(audio)
    cuts: list[int] = []
    start = 0
    while total - start > limit:
        lo = (start + int(MIN_CUT_SECONDS * SAMPLE_RATE)) // _FRAME
        hi = (start + limit) // _FRAME
        span = energy[lo:hi]
        floor, typical = float(span.min()), float(np.median(span))
        # The latest frame about as quiet as the quietest: the longest window that still ends in a pause.
        quiet = np.flatnonzero(span <= floor + 0.1 * (typical - floor))
        cut = (lo + int(quiet[-1])) * _FRAME
        cuts.append(cut)
        start = cut
    return cuts


def pieces_of(job: int, audio: np.ndarray) -> list[Piece]:
    bounds = [0, *cut_points(audio), audio.size]
    return [Piece(job, a, b) for a, b in itertools.pairwise(bounds) if b > a]


def pack(pieces: list[Piece], *, gap_seconds: float = PACK_GAP_SECONDS) -> list[Window]:
    """First-fit decreasing: the fewest windows for the pieces, each piece whole in one window."""
    gap = int(gap_seconds * SAMPLE_RATE)
    capacity = int(MAX_CUT_SECONDS * SAMPLE_RATE)
    windows: list[Window] = []
    for piece in sorted(pieces, key=lambda p: p.samples, reverse=True):
        for window in windows:
            offset = window.used + gap
            if offset + piece.samples <= capacity:
                window.placements.append((piece, offset))
                break
        else:
            windows.append(Window([(piece, 0)]))
    return windows
