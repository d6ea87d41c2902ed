"""Scores for ``bench.diarization``: DER with pyannote.metrics, word error rates with meeteval.

* DER: ``DiarizationErrorRate(collar=0.25, skip_overlap=False)`` over the whole recording (its UEM is 0 to its
  length, not the union of the two annotations), kept as seconds of missed speech, false alarm and confusion so that
  totals are sums of seconds, as pyannote's own accumulation is.
* cpWER: each speaker's words against each reference speaker's, under the best one-to-one mapping of speakers
  (meeteval's ``cp_word_error_rate``); words no turn claims count as a speaker of their own (``(none)``).
* WER: the speakers' words ignored. Against the reference in time order where it has times (STM, assembled
  conversations); otherwise (per-speaker text files, no times, speech overlapping) MIMO-WER: the speakers'
  sentences may interleave in any order, each speaker's own order kept.

Both sides go through Whisper's English normaliser (``bench.wer.normalise``) first, and AMI's spelled letters
(``L_C_D_``) are joined into the word Whisper writes (``LCD``). pyannote.metrics and meeteval are imported inside the
functions that use them: the rest of ``bench`` and its tests run without them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from bench.references import Recording
from bench.wer import normalise
from worker.diarization.turns import Turn
from worker.transcript import Transcript

COLLAR = 0.25  # seconds either side of each reference boundary left unscored
NO_SPEAKER = "(none)"
_SPELLED = re.compile(r"\b(?:[A-Za-z]_)+")  # AMI: one letter and an underscore per spelled letter
_CLAUSE_END = re.compile(r"(?<=[.?!,;:])\s+")


def score_text(text: str) -> str:
    """What both sides are scored on: AMI's spelled letters joined, then Whisper's English normaliser."""
    return normalise(_SPELLED.sub(lambda m: m.group(0).replace("_", ""), text))


def speaker_texts(transcript: Transcript) -> dict[str, str]:
    """Each hypothesis speaker's words, in segment order, as the worker labels them (unnormalised)."""
    texts: dict[str, list[str]] = {}
    for segment in transcript.segments:
        texts.setdefault(segment.speaker or NO_SPEAKER, []).append(segment.text.strip())
    return {speaker: " ".join(t for t in parts if t) for speaker, parts in texts.items()}


def exclusive(turns: list[Turn]) -> list[Turn]:
    """Reference turns without overlap, for ``attribute`` (which expects one speaker at a time, as the diarizers
    return): where turns overlap, the one that started last holds the floor (an interjection inside a long turn),
    and the long turn resumes after it. Ties go to the shorter turn."""
    bounds = sorted({t.start for t in turns} | {t.end for t in turns})
    out: list[Turn] = []
    for start, end in pairwise(bounds):
        covering = [t for t in turns if t.start <= start and t.end >= end]
        if not covering:
            continue
        speaker = max(covering, key=lambda t: (t.start, -t.seconds)).speaker
        if out and out[-1].speaker == speaker and out[-1].end == start:
            out[-1] = Turn(out[-1].start, end, speaker)
        else:
            out.append(Turn(start, end, speaker))
    return out


def _scored(texts: dict[str, str]) -> dict[str, str]:
    """Normalised, without the speakers left with no words (a cough's label, a filler-only reference)."""
    out = {speaker: score_text(text) for speaker, text in texts.items()}
    return {speaker: text for speaker, text in out.items() if text}


# ---------------------------------------------------------------------------------------------- DER


@dataclass
class DerParts:
    """Seconds of each kind of error, and the scored reference speech they are rates of."""

    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    total: float = 0.0

    @property
    def rate(self) -> float | None:
        return (self.missed + self.false_alarm + self.confusion) / self.total if self.total else None

    @classmethod
    def sum(cls, parts: Iterable[DerParts]) -> DerParts:
        out = cls()
        for part in parts:
            out.missed += part.missed
            out.false_alarm += part.false_alarm
            out.confusion += part.confusion
            out.total += part.total
        return out


def _annotation(turns: list[Turn]) -> Any:
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for index, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), index] = turn.speaker  # track per turn: overlaps stay
    return annotation


def der(reference: list[Turn], hypothesis: list[Turn], seconds: float) -> DerParts:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    uem = Timeline([Segment(0.0, max(seconds, *(t.end for t in reference), 0.0))])
    parts = metric(_annotation(reference), _annotation(hypothesis), uem=uem, detailed=True)
    return DerParts(parts["missed detection"], parts["false alarm"], parts["confusion"], parts["total"])


# ---------------------------------------------------------------------------------------------- words


@dataclass
class WordErrors:
    errors: int = 0
    length: int = 0
    insertions: int = 0
    deletions: int = 0
    substitutions: int = 0
    detail: dict[str, Any] = field(default_factory=dict)  # cpWER: speakers missed / falsely found, the mapping

    @property
    def rate(self) -> float | None:
        return self.errors / self.length if self.length else None

    @classmethod
    def of(cls, result: Any, **detail: Any) -> WordErrors:
        return cls(
            result.errors, result.length, result.insertions, result.deletions, result.substitutions, dict(detail)
        )

    @classmethod
    def sum(cls, parts: Iterable[WordErrors]) -> WordErrors:
        out = cls()
        for part in parts:
            out.errors += part.errors
            out.length += part.length
            out.insertions += part.insertions
            out.deletions += part.deletions
            out.substitutions += part.substitutions
        return out


def cp_wer(reference: dict[str, str], hypothesis: dict[str, str]) -> WordErrors:
    """cpWER of per-speaker hypothesis text against per-speaker reference text (both unnormalised)."""
    from meeteval.wer import cp_word_error_rate

    ref, hyp = _scored(reference), _scored(hypothesis) or {NO_SPEAKER: ""}
    # No times in these dicts: sorting off says so, rather than meeteval logging that it assumed it.
    result = cp_word_error_rate(ref, hyp, reference_sort=False, hypothesis_sort=False)
    return WordErrors.of(
        result,
        missed_speakers=result.missed_speaker,
        false_speakers=result.falarm_speaker,
        mapping=[list(pair) for pair in result.assignment],
    )


def wer(recording: Recording, hypothesis: str) -> WordErrors:
    """Speaker-agnostic WER: plain against the time-ordered reference, else MIMO-WER over sentences."""
    from meeteval.wer import mimo_word_error_rate, siso_word_error_rate

    ordered = recording.ordered_text()
    if ordered is not None:
        return WordErrors.of(siso_word_error_rate(score_text(ordered), score_text(hypothesis)), kind="plain")
    reference = [
        {"session_id": recording.name, "speaker": speaker, "words": words}
        for speaker, text in recording.speaker_texts().items()
        for sentence in _CLAUSE_END.split(text)
        if (words := score_text(sentence))
    ]
    hyp = [{"session_id": recording.name, "speaker": "all", "words": score_text(hypothesis)}]
    return WordErrors.of(mimo_word_error_rate(reference, hyp, reference_sort=False, hypothesis_sort=False), kind="mimo")
