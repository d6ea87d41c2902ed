"""Give a decoded piece its text on its own timeline, and judge whether the text can be kept.

Each piece is decoded as if alone (its own window, or its own row of a shared window), so every segment of the
decoding is the piece's. Speech the decoder defers ("it starts here but runs on") sends the rest of the piece
back, and so does speech after the decoder's last segment when it stopped early; a long segment with too few
words for the speech under it sends its stretch back in two halves (each rest is shorter than its piece, so this
ends). Text that fails openai-whisper's checks (too repetitive, too improbable) is decoded again,
as ``transcribe()`` does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from whisper.tokenizer import Tokenizer

from worker.audio import SAMPLE_RATE
from worker.engine.greedy import Generated
from worker.engine.windows import Piece, quietest, speaks

TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # transcribe()'s fallback ladder after greedy
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
TIME_PRECISION = 0.02
UNHEARD_SECONDS = 3.0  # speech left after the decoder's last segment, at least this long, is decoded again
# Whisper sometimes jumps from a window's start to speech far into it and stamps one segment as if it covered
# everything between: a segment this long, with fewer words than this a second and speech under at least half of
# it, skipped some. Segments of real speech run at 1.5 to 3.5 words a second; the skips seen, under 1.
SPARSE_SECONDS = 10.0
SPARSE_WORDS_PER_SECOND = 1.0


@dataclass
class Span:
    start: float  # seconds in the window
    end: float | None  # None: the window ended before the segment's closing timestamp
    tokens: list[int]


def spans_of(tokens: list[int], begin: int) -> tuple[list[Span], float | None]:
    """Segments from ``<|t0|> text <|t1|><|t1'|> text <|t2|>...``; text before any timestamp starts at 0.

    Also the time of a last, lone timestamp: Whisper's way of saying speech starts there but runs past what
    it was shown, to be transcribed from there in a later pass."""
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
    """Whether the decoding stands, as in ``transcribe()``: one that hears no speech is never sampled again (were it
    sampled, some draw would read words into the noise); it is then kept or dropped by ``silent``."""
    return decoded.no_speech_prob > NO_SPEECH_LIMIT or reads_well(decoded, text)


def reads_well(decoded: Generated, text: str) -> bool:
    """The text's own checks, whatever the no-speech probability says."""
    return compression_ratio(text) <= COMPRESSION_RATIO_LIMIT and decoded.avg_logprob >= LOGPROB_LIMIT


def silent(decoded: Generated) -> bool:
    return decoded.no_speech_prob > NO_SPEECH_LIMIT and decoded.avg_logprob < LOGPROB_LIMIT


@dataclass
class PieceText:
    """What one piece said: (start, end, text, the decoding it came from), times in the piece."""

    spans: list[tuple[float, float, str, Generated]] = field(default_factory=list)


class Split:
    """Give one piece its text from a decoding that saw it alone (its own window, or its own row of a shared
    one, see ``isolate``), or say which rest of it must be decoded again."""

    def __init__(
        self,
        piece: Piece,
        offset: int,
        decoded: Generated,
        tokenizer: Tokenizer,
        samples: Callable[[Piece], np.ndarray] | None = None,
    ) -> None:
        """``offset``: the piece's place in its window; ``samples`` gives a piece's audio, to tell speech the
        decoder never reached from silence."""
        self.piece = piece
        self.offset = offset
        self.decoded = decoded
        self.tokenizer = tokenizer
        self.samples = samples

    def run(self) -> tuple[PieceText, list[Piece]]:
        """The piece's text, and the rests of it to decode again (none, one, or a skipped stretch's two halves).
        A decoding that hears no speech (``silent``) speaks for the whole piece: no text, nothing decoded again."""
        if silent(self.decoded):
            return PieceText(), []
        piece = self.piece
        lo = self.offset / SAMPLE_RATE
        hi = lo + piece.samples / SAMPLE_RATE
        found = PieceText()
        spans, tail = spans_of(self.decoded.tokens, self.tokenizer.timestamp_begin)
        for span in spans:
            end = hi if span.end is None else span.end
            text = self.tokenizer.decode(span.tokens)
            found.spans.append((min(max(span.start, lo), hi) - lo, min(max(end, lo), hi) - lo, text, self.decoded))
        skipped = self._skipped(found)
        if skipped is not None:
            return skipped
        if tail is not None and hi - max(tail, lo) >= 1.0 and found.spans and tail > lo + 0.5:
            # transcribed up to ``tail``: the rest of this piece is decoded again
            return found, [Piece(piece.job, piece.start + int((tail - lo) * SAMPLE_RATE), piece.end)]
        unheard = self._unheard(found)
        return found, [] if unheard is None else [unheard]

    def _skipped(self, found: PieceText) -> tuple[PieceText, list[Piece]] | None:
        """The text before the first segment that skipped speech, and that segment's stretch to the piece's end in
        two halves, cut at the quietest point of its middle third, each to be decoded on its own; None when no
        segment skipped any."""
        if self.samples is None:
            return None
        audio = None
        for n, (start, end, text, _) in enumerate(found.spans):
            if end - start < SPARSE_SECONDS:
                continue
            if len(text.split()) >= SPARSE_WORDS_PER_SECOND * (end - start):
                continue
            audio = self.samples(self.piece) if audio is None else audio
            first, last = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
            if not speaks(audio[first:last], seconds=(end - start) / 2):
                continue  # a long pause inside the segment, not speech passed over
            third = (last - first) // 3
            cut = quietest(audio, first + third, last - third)
            job, at = self.piece.job, self.piece.start
            kept = PieceText(found.spans[:n])
            return kept, [Piece(job, at + first, at + cut), Piece(job, at + cut, self.piece.end)]
        return None

    def _unheard(self, text: PieceText) -> Piece | None:
        """The rest of ``piece`` when the decoder ended early (it sometimes stops mid-window, as if the rest were
        silent) and that rest holds speech: decoded again rather than lost."""
        piece = self.piece
        if self.samples is None or not text.spans:
            return None
        heard = max(end for _, end, _, _ in text.spans)
        offset = int(heard * SAMPLE_RATE)
        if heard < 0.5 or piece.samples - offset < UNHEARD_SECONDS * SAMPLE_RATE:
            return None
        if not speaks(self.samples(piece)[offset:]):
            return None
        return Piece(piece.job, piece.start + offset, piece.end)
