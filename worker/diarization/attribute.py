"""Speakers onto a transcript: each word to the turn it overlaps most, each segment to its words' speaker.

A segment whose words change speaker is split at that word boundary; without word timings a segment goes whole
to the speaker who talks most during it. Text that falls in no turn (a VAD gap) takes the nearest turn.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from dataclasses import replace

from worker.diarization.turns import Turn, talk_time
from worker.transcript import Segment, Transcript, Word

NEAREST_TURN_SECONDS = 1.0  # farther than this from any turn, text has no speaker


def attribute(transcript: Transcript, turns: list[Turn]) -> Transcript:
    finder = _Speakers(turns)
    segments: list[Segment] = []
    for segment in transcript.segments:
        if segment.words:
            words = [replace(w, speaker=finder.at(w.start, w.end)) for w in segment.words]
            segments += _split(segment, words)
        else:
            segments.append(replace(segment, speaker=finder.at(segment.start, segment.end)))
    segments = [replace(segment, id=index) for index, segment in enumerate(segments)]
    return replace(transcript, segments=segments, speakers={k: round(v, 3) for k, v in talk_time(turns).items()})


class _Speakers:
    def __init__(self, turns: list[Turn]) -> None:
        self.turns = sorted(turns, key=lambda t: t.start)
        # The latest end among each turn and those before it: where to start looking, even when turns overlap.
        self.reach = list(itertools.accumulate((t.end for t in self.turns), max))

    def at(self, start: float, end: float) -> str | None:
        if not self.turns:
            return None
        overlap: dict[str, float] = {}
        for turn in self.turns[bisect_right(self.reach, start) :]:
            if turn.start >= end:
                break
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=lambda name: overlap[name])
        distance, nearest = min((_gap(turn, start, end), turn.speaker) for turn in self.turns)
        return nearest if distance <= NEAREST_TURN_SECONDS else None


def _gap(turn: Turn, start: float, end: float) -> float:
    return max(turn.start - end, start - turn.end, 0.0)


def _split(segment: Segment, words: list[Word]) -> list[Segment]:
    runs: list[list[Word]] = []
    for word in words:
        if runs and (word.speaker == runs[-1][-1].speaker or word.speaker is None):
            runs[-1].append(replace(word, speaker=runs[-1][-1].speaker))
        else:
            runs.append([word])
    if len(runs) == 1:
        return [replace(segment, words=runs[0], speaker=runs[0][0].speaker)]
    return [
        replace(
            segment,
            start=run[0].start if index else segment.start,
            end=run[-1].end if index < len(runs) - 1 else segment.end,
            text="".join(w.word for w in run),
            words=run,
            speaker=run[0].speaker,
        )
        for index, run in enumerate(runs)
    ]
