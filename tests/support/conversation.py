"""A two-speaker conversation joined from real recordings in tests/data, so its reference turns are exact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.audio.wav import write_wav

DATA = Path(__file__).resolve().parents[1] / "data"
# VCTK p225 (female) and p226 (male) taking turns; see tests/data/SOURCES.md.
TURNS = (
    ("p225", "vctk_p225_003.flac"),
    ("p226", "vctk_p226_005.flac"),
    ("p225", "vctk_p225_008.flac"),
    ("p226", "vctk_p226_011.flac"),
)
GAP_SECONDS = 0.5
PROMPTS = {  # tests/data/SOURCES.md: the VCTK prompts these clips read
    "vctk_p225_003": "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her "
    "brother Bob.",
    "vctk_p225_008": "These take the shape of a long round arch, with its path high above, and its two ends apparently "
    "beyond the horizon.",
    "vctk_p226_005": "She can scoop these things into three red bags, and we will go meet her Wednesday at the train "
    "station.",
    "vctk_p226_011": "When a man looks for something beyond his reach, his friends say he is looking for the pot of "
    "gold at the end of the rainbow.",
}


@dataclass(frozen=True)
class Conversation:
    audio: np.ndarray
    turns: list[tuple[float, float, str]]  # reference (start, end, speaker)
    text: str  # what is said, in order

    def speaker_at(self, moment: float) -> str | None:
        return next((who for start, end, who in self.turns if start <= moment <= end), None)

    def speaker_order(self) -> list[str]:
        return [who for _, _, who in self.turns]

    def save(self, path: Path) -> Path:
        return write_wav(path, self.audio)


def conversation() -> Conversation:
    parts: list[np.ndarray] = []
    turns: list[tuple[float, float, str]] = []
    at = 0.0
    for speaker, name in TURNS:
        clip = decode_audio(DATA / name, max_seconds=60)
        turns.append((at, at + len(clip) / SAMPLE_RATE, speaker))
        parts += [clip, np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)]
        at += len(clip) / SAMPLE_RATE + GAP_SECONDS
    text = " ".join(PROMPTS[Path(name).stem] for _, name in TURNS)
    return Conversation(np.concatenate(parts), turns, text)


def runs(labels: list[str | None]) -> list[str | None]:
    """Consecutive repeats collapsed: the order in which speakers take turns."""
    return [label for i, label in enumerate(labels) if i == 0 or label != labels[i - 1]]
