"""Speakers onto a transcript: each word to the turn it overlaps most, each segment to its words' speaker.

A lone doubtful word (low probability, or a fragment) between other speakers' words takes theirs (``smooth``).

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
DOUBTFUL_PROBABILITY = 0.5  # a lone word Whisper is less sure of than this cannot change the speaker alone


def attribute(transcript: Transcript, turns: list[Turn]) -> Transcript:
    finder = _Speakers(turns)
    heard = smooth([replace(w, speaker=finder.at(w.start, w.end)) for s in transcript.segments for w in s.words or ()])
    segments: list[Segment] = []
    for segment in transcript.segments:
        if segment.words:
            words, heard = heard[: len(segment.words)], heard[len(segment.words) :]
            segments += _split(segment, words)
        else:
            segments.append(replace(segment, speaker=finder.at(segment.start, segment.end)))
    segments = [replace(segment, id=index) for index, segment in enumerate(segments)]
    return replace(transcript, segments=segments, speakers={k: round(v, 3) for k, v in talk_time(turns).items()})


def smooth(words: list[Word]) -> list[Word]:
    """A change of speaker that rests on one doubtful word (Whisper unsure of it, or a fragment such as "f-" or
    "-") is no change: the word goes to the speaker of the words around it, the nearer in time when they differ.
    Otherwise the transcript would split there and a subtitle flash a quarter-second fragment under another name."""
    out = list(words)
    for index, word in enumerate(out):
        before = out[index - 1] if index else None
        after = out[index + 1] if index + 1 < len(out) else None
        if word.speaker is None or not _doubtful(word):
            continue
        if (before is None or before.speaker != word.speaker) and (after is None or after.speaker != word.speaker):
            near = [w for w in (before, after) if w is not None and w.speaker is not None]
            if near:
                closest = min(near, key=lambda w: max(w.start - word.end, word.start - w.end, 0.0))
                out[index] = replace(word, speaker=closest.speaker)
    return _shift_sentence_ends(out)


def _shift_sentence_ends(words: list[Word]) -> list[Word]:
    """Where the speaker changes inside a sentence, the turn boundary moves to the sentence's edge when one or two
    words stand on the wrong side: a turn does not begin with the last words of another's sentence ("doing.") nor end
    with the first words of a sentence the next speaker goes on with ("So, what" | "kind of thing.")."""
    out = list(words)
    for index in range(1, len(out)):
        before, after = out[index - 1], out[index]
        if before.speaker == after.speaker or before.speaker is None or after.speaker is None:
            continue
        head = _head(out, index)  # the new turn's words up to its first sentence end
        if head and not _ends_sentence(before.word):
            out[index : index + head] = [replace(w, speaker=before.speaker) for w in out[index : index + head]]
            continue
        tail = _tail(out, index)  # the old turn's words after its last sentence end
        if tail and after.word.strip()[:1].islower():
            out[index - tail : index] = [replace(w, speaker=after.speaker) for w in out[index - tail : index]]
    return out


def _head(words: list[Word], index: int) -> int:
    for count in (1, 2):
        end = index + count
        if end > len(words) or words[end - 1].speaker != words[index].speaker:
            return 0
        if _ends_sentence(words[end - 1].word):
            return count if end < len(words) and words[end].speaker == words[index].speaker else 0
    return 0


def _tail(words: list[Word], index: int) -> int:
    for count in (1, 2):
        first = index - count
        if first <= 0 or words[first].speaker != words[index - 1].speaker:
            return 0
        if _ends_sentence(words[first - 1].word) and words[first - 1].speaker == words[index - 1].speaker:
            return count
    return 0


def _ends_sentence(text: str) -> bool:
    return text.strip().rstrip("\"')]").endswith((".", "?", "!"))


def _doubtful(word: Word) -> bool:
    text = word.word.strip()
    fragment = not any(c.isalnum() for c in text) or (text.endswith("-") and len(text) <= 3)
    return fragment or word.probability < DOUBTFUL_PROBABILITY


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
