"""Readable subtitle cues from word timings: pure functions, no I/O.

    build_cues(transcript, options, labels) -> list[Cue]

A transcript's words are cut into cues of one speaker each, at the cheapest points a dynamic programme finds
(sentence ends, then clause punctuation, conjunctions and pauses; never inside a word), within the line width,
line count and longest duration; each cue is wrapped into balanced lines. Then cues are timed: held on screen
into the free time after them until they can be read (``max_chars_per_second``) and for ``min_duration``, kept
``min_gap`` apart, and cut at ``max_duration``. Segments without word timings get words spread over the segment
by length, so a transcript of any engine renders.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Final

from worker.contract.message import SpeakerLabels, Subtitles
from worker.transcript import Transcript

PAUSE_SPLIT: Final = 2.0  # a silence this long always ends a cue: its text would otherwise show that long early
DANGLING_WORDS: Final = 3  # so few words of another sentence at a cue's edge read as a fragment
JOIN_GAP: Final = 1.0  # punctuation on its own joins a word at most this far away
_CONJUNCTION_WORDS: Final = "and but or so because that which who whom whose when where while if then though"
CONJUNCTIONS: Final = frozenset(f"{_CONJUNCTION_WORDS} although unless until since as after before than".split(" "))
_BOUND: Final = "a an the to of in on at by for from with my your his her its our their this these those"
BOUND_WORDS: Final = frozenset(_BOUND.split(" "))  # words that lean on the next: no break after them
_SENTENCE_END = re.compile(r"[.?!…][\"')\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013][\"')\]]*$")  # also em and en dashes
_WORDLIKE = re.compile(r"\w")
_NO_SPACE_BEFORE = re.compile(r"^[,.;:!?…%)\]}'\"]")


@dataclass
class Token:
    """One word as shown: text without surrounding space, its speech time, its speaker."""

    text: str
    start: float
    end: float
    speaker: str | None


@dataclass
class Cue:
    start: float
    end: float
    lines: list[list[Token]]  # wrapped lines of words; the label, if any, goes before the first
    speaker: str | None
    label: str | None = None  # visible speaker name, e.g. "[SPEAKER_00]"
    label_alone: bool = False  # on a line of its own: the first word is too long to stand beside it
    tokens: list[Token] = field(default_factory=list)

    def text_lines(self) -> list[str]:
        lines = [" ".join(t.text for t in line) for line in self.lines]
        if self.label and self.label_alone:
            lines.insert(0, self.label)
        elif self.label:
            lines[0] = f"{self.label} {lines[0]}"
        return lines

    @property
    def chars(self) -> int:
        return sum(len(line) for line in self.text_lines())


def build_cues(transcript: Transcript, options: Subtitles, labels: SpeakerLabels) -> list[Cue]:
    """Cues of one speaker each, wrapped and timed to ``options``; ``labels`` decides which show the speaker."""
    tokens = _tokens(transcript)
    runs = _runs(tokens)
    cues: list[Cue] = []
    previous: str | None = None
    width = options.max_line_width
    for index, run in enumerate(runs):
        until = runs[index + 1][0].start if index + 1 < len(runs) else float("inf")
        speaker = run[0].speaker
        first, later = _label(speaker, labels, previous), _label(speaker, labels, speaker)
        for number, piece in enumerate(_cut(run, until, options, first, later)):
            label = later if number else first
            lines = _wrap([t.text for t in piece], label, options) or [[t.text for t in piece]]
            alone = bool(label) and options.max_line_count > 1 and len(label or "") + len(piece[0].text) >= width
            cues.append(Cue(piece[0].start, piece[-1].end, _lines(piece, lines), speaker, label, alone, piece))
        previous = speaker
    _time(cues, options)
    return cues


def _label(speaker: str | None, labels: SpeakerLabels, previous: str | None) -> str | None:
    if speaker is None or labels == "none" or (labels == "changes" and speaker == previous):
        return None
    return f"[{speaker}]"


# --- words ---------------------------------------------------------------------------------------------------------


def _tokens(transcript: Transcript) -> list[Token]:
    tokens: list[Token] = []
    for seg in transcript.segments:
        if seg.words:
            words = [(w.word, w.start, w.end, w.speaker if w.speaker is not None else seg.speaker) for w in seg.words]
        else:
            words = _spread(seg.text, seg.start, seg.end, seg.speaker)
        for text, start, end, speaker in words:
            text = " ".join(text.replace("-->", "->").split())
            if text:
                tokens.append(Token(text, start, max(end, start), speaker))
    return _glue(tokens)


def _spread(text: str, start: float, end: float, speaker: str | None) -> list[tuple[str, float, float, str | None]]:
    """A segment without word timings: its words share its time in proportion to their length."""
    words = text.split()
    total = sum(len(w) + 1 for w in words) or 1
    out, at = [], start
    for word in words:
        step = (end - start) * (len(word) + 1) / total
        out.append((word, at, at + step, speaker))
        at += step
    return out


def _glue(tokens: list[Token]) -> list[Token]:
    """Punctuation alone ("-", "...") is no word to show by itself: it joins the word before it (or after it)."""
    out: list[Token] = []
    pending: Token | None = None  # punctuation that opens the transcript or follows a long pause
    for token in tokens:
        if not _WORDLIKE.search(token.text):
            if out and token.start - out[-1].end <= JOIN_GAP:
                prev = out[-1]
                space = "" if _NO_SPACE_BEFORE.match(token.text) else " "
                out[-1] = Token(prev.text + space + token.text, prev.start, max(prev.end, token.end), prev.speaker)
            else:
                pending = token if pending is None else pending
            continue
        if pending is not None:
            if token.start - pending.end <= JOIN_GAP:
                token = Token(f"{pending.text} {token.text}", pending.start, token.end, token.speaker)
            pending = None
        out.append(token)
    return out


def _runs(tokens: list[Token]) -> list[list[Token]]:
    """Stretches of one speaker without a long silence: no cue crosses their ends."""
    runs: list[list[Token]] = []
    for token in tokens:
        if runs and token.speaker == runs[-1][-1].speaker and token.start - runs[-1][-1].end < PAUSE_SPLIT:
            runs[-1].append(token)
        else:
            runs.append([token])
    return runs


# --- cutting a run into cues ---------------------------------------------------------------------------------------


def _cut(
    run: list[Token], until: float, options: Subtitles, first_label: str | None, later_label: str | None
) -> list[list[Token]]:
    """The cheapest division of ``run`` into cues that each fit the limits (dynamic programme over cut points)."""
    n = len(run)
    best: list[float] = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for i in range(n):
        if best[i] == float("inf"):
            continue
        label = first_label if i == 0 else later_label
        for j in range(i + 1, n + 1):
            if j - i > 1 and not _fits(run, i, j, label, options):
                break
            cost = best[i] + _cost(run, i, j, until, label, options)
            if cost < best[j]:
                best[j], back[j] = cost, i
    cuts, j = [], n
    while j > 0:
        cuts.append((back[j], j))
        j = back[j]
    return [run[i:j] for i, j in reversed(cuts)]


def _fits(run: list[Token], i: int, j: int, label: str | None, options: Subtitles) -> bool:
    if run[j - 1].end - run[i].start > options.max_duration:
        return False
    prefix = len(label) + 1 if label else 0
    lines = options.max_line_count
    return _line_count([len(t.text) for t in run[i:j]], prefix, options.max_line_width, lines) <= lines


def _cost(run: list[Token], i: int, j: int, until: float, label: str | None, options: Subtitles) -> float:
    first, last = run[i], run[j - 1]
    cost = 1.0  # each cue: fewer, fuller cues read better than many short ones
    ends = [k for k in range(i, j - 1) if _SENTENCE_END.search(run[k].text)]  # sentence ends inside the cue
    if j < len(run):
        cost += _break_cost(last, run[j])
        if ends and j - 1 - ends[-1] <= DANGLING_WORDS:
            cost += 2.5  # the next sentence's first words left dangling at the end
    if i > 0 and ends and ends[0] - i + 1 <= DANGLING_WORDS:
        cost += 2.5  # the last words of a sentence dangling at the start
    if j - i == 1 and (first.text.endswith("-") or len(first.text) <= 2):
        cost += 3.0  # a fragment alone
    cost += sum(max(0.0, run[k + 1].start - run[k].end - 0.5) * 2.0 for k in range(i, j - 1))  # pauses inside
    following = run[j].start if j < len(run) else until
    room = min(following - options.min_gap, first.start + options.max_duration) - first.start
    room = max(room, last.end - first.start, 0.01)
    if room < options.min_duration:
        cost += 2.0 * (options.min_duration - room)
    chars = sum(len(t.text) + 1 for t in run[i:j]) + (len(label) + 1 if label else 0)
    speed = chars / room
    if speed > options.max_chars_per_second:
        cost += 3.0 * (speed - options.max_chars_per_second) / options.max_chars_per_second
    return cost


def _break_cost(before: Token, after: Token) -> float:
    """How bad a cut (or a line break) between two words reads: sentence ends are free, mid-phrase cuts dear."""
    if _SENTENCE_END.search(before.text):
        cost = 0.0
    elif _CLAUSE_END.search(before.text):
        cost = 0.5
    elif after.text.lower().strip("\"'(") in CONJUNCTIONS:
        cost = 1.0
    else:
        cost = 3.0
    if before.text.lower() in BOUND_WORDS or _SENTENCE_END.search(after.text):
        cost += 1.5  # "a | remote", "look | at.": a word torn from the one it leans on
    if after.start - before.end >= 0.3:
        cost = max(0.0, cost - 0.5)
    return cost


# --- lines ----------------------------------------------------------------------------------------------------------


def _line_count(lengths: list[int], prefix: int, width: int, max_lines: int) -> int:
    """How many lines words of these lengths fill at the least, greedily (a word wider than a line gets its own)."""
    if prefix and lengths and prefix + lengths[0] > width and max_lines > 1:  # the label alone on the first line
        return 1 + _line_count(lengths, 0, width, max_lines)
    count, used, empty = 1, prefix - 1, True
    for size in lengths:
        if not empty and used + 1 + size > width:
            count, used = count + 1, size
        else:
            used += 1 + size
        empty = False
    return count


def _wrap(words: list[str], label: str | None, options: Subtitles) -> list[list[str]] | None:
    """``words`` in the fewest lines of at most ``max_line_width`` characters, balanced and broken at natural points;
    None when they need more than ``max_line_count`` lines. A word longer than a line is left whole on its own."""
    width, prefix = options.max_line_width, (len(label) + 1 if label else 0)
    if prefix and words and prefix + len(words[0]) > width and options.max_line_count > 1:  # label on its own
        return _wrap(words, None, options.model_copy(update={"max_line_count": options.max_line_count - 1}))
    ends = list(itertools.accumulate((len(w) for w in words), initial=0))

    def length(a: int, b: int) -> int:
        return ends[b] - ends[a] + (b - a - 1) + (prefix if a == 0 else 0)

    def fits(a: int, b: int) -> bool:
        return b - a == 1 or length(a, b) <= width

    n = len(words)
    # The fewest lines; balancing below keeps this count.
    count = _line_count([len(w) for w in words], prefix, width, options.max_line_count)
    if count > options.max_line_count:
        return None
    if count == 1:
        return [words]
    target = (length(0, n) - (count - 1)) / count
    tokens = [Token(w, 0.0, 0.0, None) for w in words]
    # best[k][b]: cheapest k lines covering words[:b]
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(count + 1)]
    back = [[0] * (n + 1) for _ in range(count + 1)]
    best[0][0] = 0.0
    for k in range(1, count + 1):
        for b in range(1, n + 1):
            for a in range(b - 1, -1, -1):
                if not fits(a, b):
                    break
                if best[k - 1][a] == inf:
                    continue
                cost = ((length(a, b) - target) / width) ** 2 * 4
                if b < n:
                    cost += _break_cost(tokens[b - 1], tokens[b]) * 0.4
                if best[k - 1][a] + cost < best[k][b]:
                    best[k][b], back[k][b] = best[k - 1][a] + cost, a
    lines, b = [], n
    for k in range(count, 0, -1):
        a = back[k][b]
        lines.append(words[a:b])
        b = a
    return list(reversed(lines))


def _lines(piece: list[Token], lines: list[list[str]]) -> list[list[Token]]:
    out, at = [], 0
    for line in lines:
        out.append(piece[at : at + len(line)])
        at += len(line)
    return out


# --- timing ---------------------------------------------------------------------------------------------------------


def _time(cues: list[Cue], options: Subtitles) -> None:
    """Gaps, then reading time: hold each cue into the free time after it (and, to reach ``min_duration``, before
    it), never closer than ``min_gap`` to a neighbour nor longer than ``max_duration``."""
    gap = options.min_gap
    for prev, cue in itertools.pairwise(cues):  # overlapping or touching speech: the earlier cue yields
        if cue.start - prev.end < gap:
            prev.end = max(prev.start + 0.01, cue.start - gap)
            cue.start = max(cue.start, prev.end + gap)
            cue.end = max(cue.end, cue.start + 0.01)
    for index, cue in enumerate(cues):
        before = cues[index - 1].end + gap if index else 0.0
        after = cues[index + 1].start - gap if index + 1 < len(cues) else float("inf")
        want = min(max(options.min_duration, cue.chars / options.max_chars_per_second), options.max_duration)
        if cue.end - cue.start < want:
            cue.end = max(cue.end, min(cue.start + want, after))
        if cue.end - cue.start < options.min_duration:
            cue.start = min(cue.start, max(before, cue.end - options.min_duration))
        cue.end = min(cue.end, cue.start + options.max_duration)
