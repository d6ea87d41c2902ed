"""A subtitle readability checker written from the published rules, independent of the cue builder: it parses the
SRT or WebVTT text a user receives and measures it against a job's ``subtitles`` limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.contract import Subtitles

TOLERANCE = 0.0015  # times are written in whole milliseconds
_TIME = r"(?:(\d+):)?(\d\d):(\d\d)[,.](\d{3})"  # WebVTT may leave the hours out
_TIMING = re.compile(rf"^{_TIME} --> {_TIME}(?: .*)?$")
_TAG = re.compile(r"<[^>]*>")
_VOICE = re.compile(r"^<v ([^>]+)>")
_LABEL = re.compile(r"^\[([^\]]+)\] ")


@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]  # as a viewer sees them: tags removed, entities decoded
    voice: str | None  # the WebVTT voice span's name
    label: str | None  # a visible "[SPEAKER_00]" at the start

    @property
    def chars(self) -> int:
        return sum(len(line) for line in self.lines)


@dataclass
class Report:
    cues: int
    over_width: list[str] = field(default_factory=list)
    over_lines: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)  # shorter than min_duration with free time beside it
    close: list[str] = field(default_factory=list)  # less than min_gap after the cue before
    too_long: list[str] = field(default_factory=list)
    fast_forced: list[str] = field(default_factory=list)  # over the reading speed with no free time to grow into
    fast_unforced: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return self.over_width + self.over_lines + self.too_short + self.close + self.too_long + self.fast_unforced


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse(text: str) -> list[Cue]:
    """The cues of an SRT or WebVTT document (blocks of a timing line and text lines)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        at = next((i for i, line in enumerate(lines) if _TIMING.match(line)), None)
        if at is None:
            continue
        g = _TIMING.match(lines[at])
        assert g is not None
        body = lines[at + 1 :]
        voice = _VOICE.match(body[0]) if body else None
        shown = [_TAG.sub("", line).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for line in body]
        label = _LABEL.match(shown[0]) if shown else None
        cues.append(
            Cue(
                _seconds(*g.groups()[:4]),
                _seconds(*g.groups()[4:]),
                shown,
                voice.group(1) if voice else None,
                label.group(1) if label else None,
            )
        )
    return cues


def check(cues: list[Cue], limits: Subtitles) -> Report:
    report = Report(len(cues))
    for index, cue in enumerate(cues):
        name = f"cue {index + 1} {cue.start:.3f}-{cue.end:.3f} {' / '.join(cue.lines)!r}"
        duration = cue.end - cue.start
        before = cues[index - 1].end if index else None
        after = cues[index + 1].start if index + 1 < len(cues) else None
        room_before = cue.start > TOLERANCE if before is None else cue.start - before > limits.min_gap + TOLERANCE
        room_after = after is None or after - cue.end > limits.min_gap + TOLERANCE
        if any(len(line) > limits.max_line_width and " " in line for line in cue.lines):
            report.over_width.append(name)
        if len(cue.lines) > limits.max_line_count:
            report.over_lines.append(name)
        if duration < limits.min_duration - TOLERANCE and (room_before or room_after):
            report.too_short.append(name)
        if before is not None and cue.start - before < limits.min_gap - TOLERANCE:
            report.close.append(name)
        if duration > limits.max_duration + TOLERANCE:
            report.too_long.append(name)
        if cue.chars / max(duration, 0.001) > limits.max_chars_per_second + 0.05:
            at_limit = duration >= limits.max_duration - TOLERANCE
            (report.fast_unforced if room_after and not at_limit else report.fast_forced).append(name)
    return report
