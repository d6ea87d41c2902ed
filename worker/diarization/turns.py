"""Speaker turns and the bounds a job puts on their number; standard library only."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)


@dataclass(frozen=True)
class SpeakerBounds:
    """``exact`` when the caller knows the count, else an optional range; ``None`` means unbounded."""

    exact: int | None = None
    low: int | None = None
    high: int | None = None

    @property
    def fewest(self) -> int:
        return self.exact or self.low or 1

    def most(self, default: int) -> int:
        return self.exact or self.high or max(default, self.fewest)


def label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


def labelled(spans: Iterable[tuple[float, float, Hashable]]) -> list[Turn]:
    """Time-ordered spans with arbitrary cluster ids → turns named ``SPEAKER_00``… in order of first appearance,
    overlapping spans of different speakers cut at their midpoint (a span inside another's turn interrupts it),
    adjacent spans of one speaker joined."""
    turns: list[Turn] = []
    for start, end, cluster in sorted(spans, key=lambda span: (span[0], span[1])):
        speaker = str(cluster)
        if turns and start < turns[-1].end:
            last = turns[-1]
            if last.speaker == speaker:
                turns[-1] = Turn(last.start, max(last.end, end), speaker)
                continue
            if end < last.end:  # inside another speaker's turn (pyannote's overlapped speech): that turn resumes
                turns[-1] = Turn(last.start, start, last.speaker)
                turns += [Turn(start, end, speaker), Turn(end, last.end, last.speaker)]
                continue
            middle = (start + last.end) / 2
            turns[-1] = Turn(last.start, middle, last.speaker)
            start = middle
        if turns and turns[-1].speaker == speaker and start - turns[-1].end < 1e-6:
            turns[-1] = Turn(turns[-1].start, end, speaker)
        elif end > start:
            turns.append(Turn(start, end, speaker))
    names: dict[str, str] = {}  # numbered only now: a span cut away entirely must not take a number
    return [Turn(t.start, t.end, names.setdefault(t.speaker, label(len(names)))) for t in turns if t.end > t.start]


def talk_time(turns: Iterable[Turn]) -> dict[str, float]:
    """Seconds each speaker holds the floor, in label order."""
    seconds: dict[str, float] = {}
    for turn in turns:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.seconds
    return dict(sorted(seconds.items()))
