"""``bench.diarization``'s results and its two plain-text tables: who spoke when (DER, speakers found, speed) and
what each speaker said (WER, cpWER), a row per recording and totals per group. No scoring packages needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.diarization_scores import DerParts, WordErrors
from bench.references import Recording
from worker.diarization.turns import Turn

BOUNDS = ("estimated", "oracle")  # SpeakerBounds() and SpeakerBounds(exact=reference count)
ATTRIBUTIONS = ("estimated", "oracle", "reference")  # whose turns put speakers on the words
GRANULARITIES = ("segments", "words")  # the worker's default attribution, and with word_timestamps: true
LEGEND = (
    "DER: pyannote.metrics, collar 0.25 s, overlap scored; miss / FA / conf: its parts (estimated count), % of "
    "reference speech",
    "found: speakers the diarizer returned; x RT: audio s / diarize() wall s (model loaded and warmed up)",
    "estimated: SpeakerBounds() (the diarizer picks the count); oracle: SpeakerBounds(exact=reference count)",
    "WER: speakers ignored, vs the reference in time order (* MIMO-WER: per-speaker references without times)",
    "cpWER: meeteval, best speaker mapping; seg: the attribution a diarize: true job gets; word: with "
    "word_timestamps: true (which the worker serves with its sequential engine, so the words may differ too)",
    "est / orc: the diarizer's turns (estimated / oracle count); ref: the reference RTTM's turns, overlaps given to "
    "the later turn (the attribution floor)",
    "text: both sides through whisper's EnglishTextNormalizer (AMI's L_C_D_ joined to LCD)",
)


@dataclass
class Diarized:
    """One ``diarize()`` call: its turns, its wall clock and its DER."""

    turns: list[Turn]
    seconds: float
    der: DerParts

    @property
    def found(self) -> int:
        return len({turn.speaker for turn in self.turns})


@dataclass
class Scored:
    recording: Recording
    diarized: dict[str, Diarized] = field(default_factory=dict)  # by BOUNDS
    wer: WordErrors | None = None  # None: no text reference
    cpwer: dict[str, dict[str, WordErrors]] = field(default_factory=dict)  # granularity -> attribution -> errors
    extra: dict[str, Any] = field(default_factory=dict)  # hypothesis texts and transcription times, for the JSON


@dataclass
class Totals:
    """A group's numbers: seconds are summed, so rates are over all its speech or words, not means of rates."""

    label: str
    audio_seconds: float = 0.0
    speakers: str = ""
    der: dict[str, DerParts] = field(default_factory=dict)
    diarize_seconds: dict[str, float] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)
    wer: WordErrors | None = None
    wer_kind: str = "plain"
    cpwer: dict[str, dict[str, WordErrors]] = field(default_factory=dict)

    def realtime(self, bounds: str) -> float | None:
        wall = self.diarize_seconds.get(bounds)
        return self.audio_seconds / wall if wall else None


def row_of(scored: Scored) -> Totals:
    rec = scored.recording
    out = Totals(rec.name, rec.seconds, str(rec.speakers))
    for bounds, d in scored.diarized.items():
        out.der[bounds], out.diarize_seconds[bounds], out.found[bounds] = d.der, d.seconds, str(d.found)
    out.wer = scored.wer
    out.wer_kind = scored.wer.detail.get("kind", "plain") if scored.wer else "plain"
    out.cpwer = scored.cpwer
    return out


def total_of(label: str, group: Sequence[Scored]) -> Totals:
    out = Totals(label, sum(s.recording.seconds for s in group))
    for bounds in BOUNDS:
        done = [s.diarized[bounds] for s in group if bounds in s.diarized]
        if done:
            out.der[bounds] = DerParts.sum(d.der for d in done)
            out.diarize_seconds[bounds] = sum(d.seconds for d in done)
            right = sum(1 for s in group if bounds in s.diarized and s.diarized[bounds].found == s.recording.speakers)
            out.found[bounds] = f"{right}/{len(done)}"  # recordings where the count came out right
    scored_words = [s for s in group if s.wer is not None]
    if scored_words:
        out.wer = WordErrors.sum(s.wer for s in scored_words if s.wer is not None)
        out.wer_kind = "mixed" if any(s.wer and s.wer.detail.get("kind") == "mimo" for s in scored_words) else "plain"
        out.cpwer = {
            g: {a: WordErrors.sum(s.cpwer[g][a] for s in scored_words if a in s.cpwer.get(g, {})) for a in ATTRIBUTIONS}
            for g in GRANULARITIES
        }
    return out


def groups(results: Sequence[Scored]) -> list[Totals]:
    """Totals for the recordings, the conversations, conversations by speaker count, and everything."""
    out = []
    recordings = [s for s in results if s.recording.kind == "recording"]
    conversations = [s for s in results if s.recording.kind == "conversation"]
    if recordings:
        out.append(total_of(f"recordings ({len(recordings)})", recordings))
    if conversations:
        out.append(total_of(f"conversations ({len(conversations)})", conversations))
        for count in sorted({s.recording.speakers for s in conversations}):
            same = [s for s in conversations if s.recording.speakers == count]
            out.append(total_of(f"  {count} speakers ({len(same)})", same))
    if recordings and conversations:
        out.append(total_of(f"all ({len(results)})", results))
    return out


# ---------------------------------------------------------------------------------------------- text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _share(parts: DerParts | None, attr: str) -> float | None:
    return getattr(parts, attr) / parts.total if parts and parts.total else None


WHO_COLUMNS = (  # (header, width); the first is left-aligned, the rest right-aligned
    ("recording", 26),
    ("audio s", 8),
    ("spk", 4),
    ("est found", 9),
    ("DER %", 6),
    ("conf %", 6),
    ("miss %", 6),
    ("FA %", 5),
    ("x RT", 7),
    ("orc found", 9),
    ("DER %", 6),
    ("conf %", 6),
    ("x RT", 7),
)
WHAT_COLUMNS = (
    ("recording", 26),
    ("audio s", 8),
    ("WER %", 7),
    ("seg est", 8),
    ("seg orc", 8),
    ("seg ref", 8),
    ("word est", 8),
    ("word orc", 8),
    ("word ref", 8),
)


def _line(cells: Sequence[str], columns: Sequence[tuple[str, int]]) -> str:
    parts = [f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, columns, strict=True))]
    return "  ".join(parts).rstrip()


def _who(t: Totals) -> list[str]:
    est, orc = t.der.get("estimated"), t.der.get("oracle")
    return [
        t.label,
        f"{t.audio_seconds:.1f}",
        t.speakers,
        t.found.get("estimated", "-"),
        _pct(est.rate if est else None),
        _pct(_share(est, "confusion")),
        _pct(_share(est, "missed")),
        _pct(_share(est, "false_alarm")),
        _x(t.realtime("estimated")),
        t.found.get("oracle", "-"),
        _pct(orc.rate if orc else None),
        _pct(_share(orc, "confusion")),
        _x(t.realtime("oracle")),
    ]


def _what(t: Totals) -> list[str]:
    wer = "-" if t.wer is None else _pct(t.wer.rate) + ("*" if t.wer_kind in ("mimo", "mixed") else "")
    cells = [t.label, f"{t.audio_seconds:.1f}", wer]
    for g in GRANULARITIES:
        cells += [_pct(t.cpwer[g][a].rate) if a in t.cpwer.get(g, {}) else "-" for a in ATTRIBUTIONS]
    return cells


def _table(columns: Sequence[tuple[str, int]], rows: list[list[str]], totals: list[list[str]]) -> list[str]:
    lines = [_line([h for h, _ in columns], columns), _line(["-" * w for _, w in columns], columns)]
    lines += [_line(r, columns) for r in rows]
    if totals:
        lines.append(_line(["-" * w for _, w in columns], columns))
        lines += [_line(r, columns) for r in totals]
    return lines


def format_tables(results: Sequence[Scored]) -> str:
    rows = [row_of(s) for s in results]
    totals = groups(results)
    who = _table(WHO_COLUMNS, [_who(r) for r in rows], [_who(t) for t in totals])
    parts = ["who spoke when (est = estimated count, orc = oracle count)", *who, ""]
    if any(s.wer is not None for s in results):
        what = _table(WHAT_COLUMNS, [_what(r) for r in rows if r.wer is not None], [_what(t) for t in totals])
        parts += ["what each said: cpWER % by attribution (seg / word granularity; est / orc / ref turns)", *what]
        parts.append("")
    parts += [f"  {line}" for line in LEGEND]
    return "\n".join(parts)


def format_report(results: Sequence[Scored], header: Sequence[str]) -> str:
    return "\n".join([*header, "", format_tables(results)])
