"""Split a decoded window back into the pieces it holds, and judge whether its text can be kept.

Each decoded segment goes to the piece it overlaps, its times moved onto that piece's own timeline. A segment
across two pieces, or a piece the decoder skipped, sends those pieces back to be decoded alone; speech the
decoder defers ("it starts here but runs on") sends the rest of its piece back, and so does speech after the
decoder's last segment when it stopped early (each rest is shorter than its piece, so this ends). Text that fails
openai-whisper's checks (too repetitive, too improbable) is decoded again, as ``transcribe()`` does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from whisper.tokenizer import Tokenizer

from worker.audio import SAMPLE_RATE
from worker.engine.greedy import Generated
from worker.engine.windows import Piece, Window, speaks

TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # transcribe()'s fallback ladder after greedy
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
STRADDLE_SECONDS = 0.5  # a segment reaching this far into a second piece belongs to neither alone
# In a window shared by several jobs, a segment must lie mostly inside one piece to be given to it. Timestamps are
# coarse (often whole seconds): a segment placed mostly in the silence between two jobs' pieces may be either's
# words, and giving it to the wrong one moves one job's text into another's transcript.
OWN_SHARE = 0.5
TIME_PRECISION = 0.02
GAP_REACH = 1.0  # how far past a piece's edge a misplaced segment may still be its words
UNHEARD_SECONDS = 3.0  # speech left after the decoder's last segment, at least this long, is decoded again


@dataclass
class Span:
    start: float  # seconds in the window
    end: float | None  # None: the window ended before the segment's closing timestamp
    tokens: list[int]


def spans_of(tokens: list[int], begin: int) -> tuple[list[Span], float | None]:
    """Segments from ``<|t0|> text <|t1|><|t1'|> text <|t2|>...``; text before any timestamp starts at 0.

    Also the time of a last, lone timestamp: Whisper's way of saying speech starts there but runs past what
    it was shown, to be transcribed from there in a window of its own."""
    spans: list[Span] = []
    start: float | None = None
    text: list[int] = []
    for token in tokens:
        if token >= begin:
            at = (token - begin) * TIME_PRECISION
            if text:
                spans.append(Span(start or 0.0, at, text))
                text, start = [], None
            else:
                start = at
        else:
            if start is None:
                start = spans[-1].end if spans and spans[-1].end is not None else 0.0
            text.append(token)
    if text:
        spans.append(Span(start or 0.0, None, text))
        return spans, None
    return spans, start  # a timestamp after a closed segment, then the end: resume from there


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def acceptable(decoded: Generated, text: str) -> bool:
    if silent(decoded):
        return True  # transcribe() drops silence, and so do we
    return compression_ratio(text) <= COMPRESSION_RATIO_LIMIT and decoded.avg_logprob >= LOGPROB_LIMIT


def silent(decoded: Generated) -> bool:
    return decoded.no_speech_prob > NO_SPEECH_LIMIT and decoded.avg_logprob < LOGPROB_LIMIT


@dataclass
class PieceText:
    """What one piece said: (start, end, text, the decoding it came from), times in the piece."""

    spans: list[tuple[float, float, str, Generated]] = field(default_factory=list)


class Split:
    """Split one decoded window back into its pieces, or say which pieces need their own window."""

    def __init__(
        self,
        window: Window,
        decoded: Generated,
        tokenizer: Tokenizer,
        samples: Callable[[Piece], np.ndarray] | None = None,
    ) -> None:
        """``samples`` gives a piece's audio, to tell speech the decoder never reached from silence."""
        self.window = window
        self.decoded = decoded
        self.tokenizer = tokenizer
        self.samples = samples

    def run(self) -> tuple[dict[Piece, PieceText], list[Piece]]:
        placed = [(p, off / SAMPLE_RATE, (off + p.samples) / SAMPLE_RATE) for p, off in self.window.placements]
        found: dict[Piece, PieceText] = {p: PieceText() for p, _ in self.window.placements}
        redo: set[Piece] = set()
        spans, tail = spans_of(self.decoded.tokens, self.tokenizer.timestamp_begin)
        shared = len({p.job for p, _, _ in placed}) > 1
        for span in spans:
            end = span.end if span.end is not None else placed[-1][2] if len(placed) == 1 else None
            if end is None:  # unfinished last segment in a shared window: whose it is cannot be told
                end = max(hi for _, _, hi in placed)
                redo.update(p for p, lo, hi in placed if hi > span.start)
                continue
            overlaps = sorted(
                ((min(end, hi) - max(span.start, lo), p, lo, hi) for p, lo, hi in placed),
                key=lambda item: item[0],
                reverse=True,
            )
            best, piece, lo, hi = overlaps[0]
            if len(overlaps) > 1 and overlaps[1][0] > STRADDLE_SECONDS:
                redo.update({piece, overlaps[1][1]})
                continue
            if shared and (best <= 0 or best < OWN_SHARE * (end - span.start)):
                redo.update(p for p, lo_, hi_ in placed if lo_ - GAP_REACH <= end and hi_ + GAP_REACH >= span.start)
                continue
            if best <= 0 and len(placed) > 1:
                # text in the silence between pieces: the nearest piece's, if close enough
                nearest = min(placed, key=lambda item: min(abs(span.start - item[2]), abs(end - item[1])))
                piece, lo, hi = nearest
                if min(abs(span.start - hi), abs(end - lo)) > 1.0:
                    continue
            text = self.tokenizer.decode(span.tokens)
            start = min(max(span.start, lo), hi) - lo
            found[piece].spans.append((start, min(max(end, lo), hi) - lo, text, self.decoded))
        rest: list[Piece] = []
        for piece, lo, hi in placed:
            if piece in redo:
                continue
            if tail is not None and hi - max(tail, lo) >= 1.0 and found[piece].spans and tail > lo + 0.5:
                # transcribed up to ``tail``: the rest of this piece gets a window of its own
                rest.append(Piece(piece.job, piece.start + int((tail - lo) * SAMPLE_RATE), piece.end))
            elif not found[piece].spans and hi - lo >= 1.0 and len(placed) > 1:
                redo.add(piece)  # a piece the decoder skipped, or said it would come back to
            elif (unheard := self._unheard(piece, found[piece])) is not None:
                rest.append(unheard)
        for piece in redo:
            found.pop(piece, None)
        return found, sorted([*redo, *rest], key=lambda p: (p.job, p.start))

    def _unheard(self, piece: Piece, text: PieceText) -> Piece | None:
        """The rest of ``piece`` when the decoder ended early (it sometimes stops mid-window, as if the rest were
        silent) and that rest holds speech: decoded again in a window of its own rather than lost."""
        if self.samples is None or not text.spans:
            return None
        heard = max(end for _, end, _, _ in text.spans)
        offset = int(heard * SAMPLE_RATE)
        if heard < 0.5 or piece.samples - offset < UNHEARD_SECONDS * SAMPLE_RATE:
            return None
        if not speaks(self.samples(piece)[offset:]):
            return None
        return Piece(piece.job, piece.start + offset, piece.end)
