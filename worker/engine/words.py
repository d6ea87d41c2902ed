"""Word timings for a batched engine's transcript, found after the job's segments are assembled.

Consecutive segments that fit one 30-s window form a span. Each span's stretch of the recording (from its first
segment's start to just after its last one's end, on the recording's own timeline, VAD or not) is encoded alone,
as a piece decoded on its own is (``isolate``), and decoded once with the span's text forced; the alignment heads'
cross-attention is matched to the audio by dynamic time warping, as ``transcribe(word_timestamps=True)`` does
(``whisper.timing``), and its rules trim words stretched over pauses. Spans are aligned in batches of the
backend's size. Each segment's words come from its own tokens, so they join to its text; as in transcribe(), a
segment's start and end then become its words' (the decoder's timestamps are coarse), within limits (``_bounds``),
and its words stay inside them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from whisper.audio import HOP_LENGTH, N_FRAMES, TOKENS_PER_SECOND
from whisper.timing import WordTiming, merge_punctuations
from whisper.tokenizer import Tokenizer

from worker.audio import SAMPLE_RATE
from worker.transcript import Segment, Transcript, Word

WINDOW_SAMPLES = N_FRAMES * HOP_LENGTH  # 30 s
# A span's window opens at its first segment's start (not before: with what came before it in the window, noise or
# the previous speaker, the same words came out up to 0.2 s apart) and reads this much past its last segment's end,
# where the last word may still be sounding.
TAIL_SECONDS = 0.5
# The decoder's context is 448 tokens; the prompt and the end token take a few of them.
MAX_SPAN_TOKENS = 440
# transcribe()'s defaults: punctuation joined to the word after it, and to the word before it.
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"  # noqa: RUF001 (full-width marks are meant)


@dataclass
class Alignment:
    """One row's text matched to its window: where each text token starts (seconds into the window), then where
    the text ends; and each token's probability under the forced decoding."""

    starts: np.ndarray
    probabilities: list[float]


class Aligner(Protocol):
    """What a backend offers for word timings (``backends``)."""

    batch_windows: int

    def align(
        self, windows: np.ndarray, tokenizer: Tokenizer, texts: list[list[int]], num_frames: list[int]
    ) -> list[Alignment]:
        """Each window's text (its tokens, without prompt or end token) matched to the window's first
        ``num_frames`` mel frames."""
        ...


def token_starts(text_indices: np.ndarray, time_indices: np.ndarray) -> np.ndarray:
    """The DTW path read as the time each text token starts (and, last, where the end token starts): the frame at
    which the path first reaches the token's row."""
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    return time_indices[jumps] / TOKENS_PER_SECOND


@dataclass
class _Span:
    start: int  # the sample where its window opens
    segments: list[int]  # indices into the transcript's segments
    tokens: list[list[int]]  # each segment's text tokens
    frames: int  # mel frames the alignment reads


def _spans(segments: list[Segment], tokens: list[list[int]], samples: int) -> list[_Span]:
    """Segments grouped in order, each group as many as fit one window with the tail."""
    spans: list[_Span] = []
    previous_end = 0.0
    for index, (segment, text) in enumerate(zip(segments, tokens, strict=True)):
        if not text:
            continue
        span = spans[-1] if spans else None
        reach = segment.end + TAIL_SECONDS
        if (
            span is None
            or reach - span.start / SAMPLE_RATE > WINDOW_SAMPLES / SAMPLE_RATE
            or sum(map(len, span.tokens)) + len(text) > MAX_SPAN_TOKENS
        ):
            opens = max(previous_end, segment.start)
            span = _Span(min(int(opens * SAMPLE_RATE), max(0, samples - 1)), [], [], 0)
            spans.append(span)
        span.segments.append(index)
        span.tokens.append(text)
        # up to the tail, within the window and the recording
        end = min(samples, int(reach * SAMPLE_RATE), span.start + WINDOW_SAMPLES)
        span.frames = max(2, min(N_FRAMES, -(-(end - span.start) // HOP_LENGTH)))
        previous_end = max(previous_end, segment.end)
    return spans


def _window(audio: np.ndarray, span: _Span) -> np.ndarray:
    """The span's stretch of the recording, then silence, as a piece decoded alone is seen: what follows it (noise,
    the next speaker) does not move its words."""
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    seen = audio[span.start : span.start + span.frames * HOP_LENGTH]
    window[: seen.size] = seen
    return window


def _timings(span: _Span, aligned: Alignment, tokenizer: Tokenizer) -> list[list[WordTiming]]:
    """Each segment's words (from its own tokens: a word never straddles two segments), on the recording's
    timeline."""
    base, at = span.start / SAMPLE_RATE, 0
    per_segment = []
    for text in span.tokens:
        timings = []
        for word, tokens in zip(*tokenizer.split_to_word_tokens(text), strict=True):
            end = at + len(tokens)
            start_time, end_time = base + float(aligned.starts[at]), base + float(aligned.starts[end])
            timings.append(
                WordTiming(word, tokens, start_time, end_time, float(np.mean(aligned.probabilities[at:end])))
            )
            at = end
        per_segment.append(timings)
    return per_segment


def _typical(timings: list[WordTiming]) -> float:
    """transcribe()'s measure of a normal word's length in a window: the median, at most 0.7 s."""
    durations = [t.end - t.start for t in timings if t.end > t.start]
    return min(0.7, float(np.median(durations))) if durations else 0.0


def _shorten_at_sentence_ends(timings: list[WordTiming], longest: float) -> None:
    """transcribe()'s rule: a word at a sentence boundary is not longer than ``longest`` (DTW gives the pause after
    a full stop to the stop, or the pause before a sentence to its first word)."""
    marks = ".。!！?？"  # noqa: RUF001 (full-width marks are meant)
    for previous, timing in itertools.pairwise(timings):
        if timing.end - timing.start > longest:
            if timing.word in marks:
                timing.end = timing.start + longest
            elif previous.word in marks:
                timing.start = timing.end - longest


def _shorten_after_pause(timings: list[WordTiming], last_speech: float, typical: float, longest: float) -> None:
    """transcribe()'s rule: the first words after a pause are not longer than ``longest``; DTW often stretches the
    first word back over the silence before it."""
    if not timings or timings[0].end - last_speech <= typical * 4:
        return
    first, second = timings[0], timings[1] if len(timings) > 1 else None
    if first.end - first.start > longest or (second is not None and second.end - first.start > longest * 2):
        if second is not None and second.end - second.start > longest:
            first.end = second.start = max(second.end / 2, second.end - longest)
        first.start = max(0.0, first.end - longest)


def _bounds(segment: Segment, timings: list[WordTiming], longest: float, floor: float) -> tuple[float, float]:
    """A segment's start and end from its words': the decoder's timestamps are coarse, and a segment often ends
    before its last word does. As in transcribe(), a first word starting more than half a second before the
    segment is cut at the segment's start. DTW gives a last word the pause after it (it ends where the next word
    starts): it ends no later than ``longest`` after its start, or the segment's own end if that is later. Never
    before ``floor``, the previous segment's end."""
    first, last = timings[0], timings[-1]
    start = segment.start if segment.start < first.end and segment.start - 0.5 > first.start else first.start
    end = min(last.end, max(segment.end, last.start + longest))
    start = max(round(start, 3), floor)
    return start, max(round(end, 3), start)


def _inside(timings: list[WordTiming], start: float, end: float) -> list[Word]:
    """The words kept within ``start`` and ``end``, rounded as segments' times are, starts never going back."""
    words: list[Word] = []
    floor = start
    for timing in timings:
        word_start = min(max(round(timing.start, 3), floor), end)
        word_end = min(max(round(timing.end, 3), word_start), end)
        words.append(Word(timing.word, word_start, word_end, round(timing.probability, 4)))
        floor = word_start
    return words


def _span_words(
    span: _Span, aligned: Alignment, segments: list[Segment], tokenizer: Tokenizer, last_speech: float
) -> tuple[dict[int, Segment], float]:
    """The span's segments with their words, trimmed as ``whisper.timing.add_word_timestamps`` trims them, and
    where the speech last ended (for the next span's pause rule)."""
    per_segment = _timings(span, aligned, tokenizer)
    flat = [t for timings in per_segment for t in timings]
    typical = _typical(flat)
    if typical:
        _shorten_at_sentence_ends(flat, typical * 2)
    found = {}
    for index, timings in zip(span.segments, per_segment, strict=True):
        merge_punctuations(timings, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        timings = [t for t in timings if t.word]  # the rest were merged into a neighbour
        _shorten_after_pause(timings, last_speech, typical, typical * 2)
        start, end = _bounds(segments[index], timings, typical * 2, last_speech)
        found[index] = replace(segments[index], start=start, end=end, words=_inside(timings, start, end))
        last_speech = end
    return found, last_speech


def with_words(transcript: Transcript, audio: np.ndarray, aligner: Aligner, tokenizer: Tokenizer) -> Transcript:
    """``transcript`` with every segment's words, aligned against ``audio`` (the recording its times are on)."""
    segments = transcript.segments
    tokens = [tokenizer.encode(segment.text) for segment in segments]
    spans = _spans(segments, tokens, audio.size)
    aligned_segments: dict[int, Segment] = {}
    last_speech = 0.0
    size = max(1, aligner.batch_windows)
    for first in range(0, len(spans), size):
        batch = spans[first : first + size]
        aligned = aligner.align(
            np.stack([_window(audio, span) for span in batch]),
            tokenizer,
            [[t for text in span.tokens for t in text] for span in batch],
            [span.frames for span in batch],
        )
        for span, alignment in zip(batch, aligned, strict=True):
            found, last_speech = _span_words(span, alignment, segments, tokenizer, last_speech)
            aligned_segments.update(found)
    return replace(transcript, segments=[aligned_segments.get(i, replace(s, words=[])) for i, s in enumerate(segments)])
