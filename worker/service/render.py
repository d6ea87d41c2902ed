"""Turn a Transcript into the text of each output format; pure functions, no I/O.

Every format goes through one table, so the worker, the S3 keys and the Content-Type headers
cannot disagree about which formats exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from worker.contract import OUTPUT_FORMATS, Subtitles
from worker.service.subtitles import Cue, build_cues
from worker.transcript import Segment, Transcript, Word

Renderer = Callable[[Transcript], str]
SUBTITLE_FORMATS = frozenset({"srt", "vtt"})  # the formats ``Subtitles`` shapes


def _ms(seconds: float) -> int:
    # Round once, to whole milliseconds, and split that integer afterwards: rounding each field
    # separately is how ",1000" and 59.9995 -> "00:00:59,1000" happen. round() is half-even.
    return round(max(seconds, 0.0) * 1000)


def _sec(seconds: float) -> float:
    # JSON times go through the same integer ms, so every format agrees on every boundary
    # (round(4.9995, 3) alone gives 4.999 while the SRT says 00:00:05,000).
    return _ms(seconds) / 1000


def timestamp(seconds: float, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal="."``, ``HH:MM:SS.mmm`` (WebVTT).

    Hours never wrap into minutes, so 6000 s is ``01:40:00,000`` and 100 h is ``100:00:00,000``;
    negative times clamp to zero rather than yield a malformed ``00:00:-1,…``.
    """
    hours, rest = divmod(_ms(seconds), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _line(text: str) -> str:
    # One segment must stay one line / one cue: a newline or blank line in the text would start a
    # new row or end the cue early, and a tab would add a TSV column.
    return " ".join(text.split())


def _turns(transcript: Transcript, *, prefix: bool = True) -> list[tuple[Segment, str]]:
    """Non-empty segments with their one-line text, prefixed ``[SPEAKER_00] `` where a speaker's turn begins."""
    out: list[tuple[Segment, str]] = []
    previous: str | None = None
    for seg in transcript.segments:
        text = _line(seg.text)
        if not text:
            continue
        if prefix and seg.speaker is not None and seg.speaker != previous:
            text = f"[{seg.speaker}] {text}"
        previous = seg.speaker
        out.append((seg, text))
    return out


def _cues(transcript: Transcript, *, decimal: str, numbered: bool, html: bool) -> list[str]:
    cues = []
    # An empty cue is invalid in some players and useless in all; VTT names speakers in voice spans instead.
    for seg, line in _turns(transcript, prefix=not html):
        text = line.replace("-->", "->")  # "-->" in the payload would read as a timing line
        if html:  # WebVTT cue text is markup: a bare "<" or "&" would be parsed as a tag or entity
            text = text.replace("&", "&amp;").replace("<", "&lt;")  # ">" is legal; "->" stays readable
            if seg.speaker is not None:  # a voice span names the speaker of every cue
                text = f"<v {seg.speaker}>{text}"
        timing = f"{timestamp(seg.start, decimal)} --> {timestamp(seg.end, decimal)}"
        cues.append(f"{len(cues) + 1}\n{timing}\n{text}\n" if numbered else f"{timing}\n{text}\n")
    return cues


def render_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues from 1, comma before the milliseconds."""
    return "\n".join(_cues(transcript, decimal=",", numbered=True, html=False))


def render_vtt(transcript: Transcript) -> str:
    """WebVTT: a header, unnumbered cues, a dot before the milliseconds."""
    return "WEBVTT\n\n" + "\n".join(_cues(transcript, decimal=".", numbered=False, html=True))


def _cue_text(cue: Cue, *, html: bool, underline: int | None = None) -> str:
    """The cue's lines; ``underline`` is the index (among the cue's words) of the word to emphasise."""
    label = f"{cue.label} " if cue.label else ""
    lines, index = [], 0
    for number, line in enumerate(cue.lines):
        words = []
        for token in line:
            text = token.text
            if html:  # WebVTT cue text is markup; SRT players read only a few tags, "&" and "<" stay literal
                text = text.replace("&", "&amp;").replace("<", "&lt;")
            words.append(f"<u>{text}</u>" if index == underline else text)
            index += 1
        lines.append((label if number == 0 and not cue.label_alone else "") + " ".join(words))
    if cue.label and cue.label_alone:
        lines.insert(0, cue.label)
    text = "\n".join(lines)
    if html and cue.speaker is not None:  # the voice span names every cue's speaker, visible label or not
        text = f"<v {cue.speaker}>{text}"
    return text


def _frames(cue: Cue, highlight: bool) -> list[tuple[float, float, int | None]]:
    """(start, end, underlined word) for each cue shown: one per word while it is spoken when highlighting."""
    if not highlight:
        return [(cue.start, cue.end, None)]
    frames = []
    for index, token in enumerate(cue.tokens):
        start = cue.start if index == 0 else min(max(token.start, frames[-1][0]), cue.end)
        if index:
            frames[-1] = (frames[-1][0], start, frames[-1][2])
        frames.append((start, cue.end, index))
    return [frame for frame in frames if frame[1] > frame[0]]


def readable_cues(transcript: Transcript, options: Subtitles, *, vtt: bool) -> list[str]:
    """Cues built by ``worker.service.subtitles``; SRT defaults to a visible speaker on every cue (it has no voice
    markup), WebVTT to none (its voice spans name them)."""
    labels = options.speaker_labels or ("none" if vtt else "every_cue")
    decimal = "." if vtt else ","
    out: list[str] = []
    for cue in build_cues(transcript, options, labels):
        for start, end, underline in _frames(cue, options.highlight_words):
            timing = f"{timestamp(start, decimal)} --> {timestamp(end, decimal)}"
            text = _cue_text(cue, html=vtt, underline=underline)
            out.append(f"{timing}\n{text}\n" if vtt else f"{len(out) + 1}\n{timing}\n{text}\n")
    return out


def render_txt(transcript: Transcript) -> str:
    """Plain text, one line per non-empty segment; ``[SPEAKER_00]`` where a speaker's turn begins."""
    return "".join(f"{text}\n" for _, text in _turns(transcript))


def render_tsv(transcript: Transcript) -> str:
    """Integer milliseconds like openai-whisper's WriteTSV, for spreadsheet and script users."""
    if transcript.speakers is None:
        rows = ["start\tend\ttext\n"]
        rows += [f"{_ms(s.start)}\t{_ms(s.end)}\t{text}\n" for s in transcript.segments if (text := _line(s.text))]
        return "".join(rows)
    rows = ["start\tend\tspeaker\ttext\n"]  # diarized: a speaker column, empty where nobody is identified
    rows += [
        f"{_ms(s.start)}\t{_ms(s.end)}\t{s.speaker or ''}\t{text}\n"
        for s in transcript.segments
        if (text := _line(s.text))
    ]
    return "".join(rows)


def _word(word: Word, diarized: bool) -> dict[str, Any]:
    out = {
        "word": word.word,
        "start": _sec(word.start),
        "end": _sec(word.end),
        "probability": round(word.probability, 4),
    }
    if diarized:
        out["speaker"] = word.speaker
    return out


def _segment(seg: Segment, diarized: bool) -> dict[str, Any]:
    # OpenAI verbose_json keys minus "seek" and "tokens", which this engine does not keep.
    out: dict[str, Any] = {
        "id": seg.id,
        "start": _sec(seg.start),
        "end": _sec(seg.end),
        "text": seg.text,
        "temperature": round(seg.temperature, 4),
        "avg_logprob": round(seg.avg_logprob, 4),
        "compression_ratio": round(seg.compression_ratio, 4),
        "no_speech_prob": round(seg.no_speech_prob, 4),
    }
    if diarized:
        out["speaker"] = seg.speaker
    if seg.words:
        out["words"] = [_word(w, diarized) for w in seg.words]
    return out


def speaker_summary(transcript: Transcript) -> list[dict[str, Any]] | None:
    """Each speaker with their talk time, as result.json, the callback and the JSON transcript list them."""
    if transcript.speakers is None:
        return None
    return [{"speaker": name, "seconds": _sec(seconds)} for name, seconds in transcript.speakers.items()]


def render_json(transcript: Transcript) -> str:
    """OpenAI ``verbose_json``-compatible; ``words`` only when word timestamps were asked for, ``speaker`` and
    ``speakers`` only when diarized, ``speech_seconds`` only when voice activity detection ran."""
    diarized = transcript.speakers is not None
    doc: dict[str, Any] = {
        "task": transcript.task,
        "language": transcript.language,
        "duration": _sec(transcript.duration),
        "text": transcript.text,
        "segments": [_segment(seg, diarized) for seg in transcript.segments],
    }
    if transcript.speech_seconds is not None:  # voice activity detection ran: the speech it found
        doc["speech_seconds"] = _sec(transcript.speech_seconds)
    if diarized:
        doc["speakers"] = speaker_summary(transcript)
    if any(seg.words for seg in transcript.segments):
        doc["words"] = [_word(w, diarized) for seg in transcript.segments for w in seg.words or ()]
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


RENDERERS: dict[str, Renderer] = {
    "json": render_json,
    "srt": render_srt,
    "vtt": render_vtt,
    "txt": render_txt,
    "tsv": render_tsv,
}

CONTENT_TYPES: dict[str, str] = {
    "json": "application/json; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}

# The contract names the formats; every one has a renderer and a content type.
assert set(RENDERERS) == set(CONTENT_TYPES) == set(OUTPUT_FORMATS), "a format without a renderer"


DEFAULT_SUBTITLES = Subtitles()


def needs_words(formats: list[str], subtitles: Subtitles) -> bool:
    """Whether the job's subtitles need word timings the engine must then compute: readable SRT or WebVTT cues.

    Readable cues are cut at words (and highlighting shows them one by one); without timings each segment's words
    would share its time by length. This is cheap now: the batched engines align a job's words themselves, in one
    extra forward pass per 30 s of speech, rather than moving the job onto openai-whisper's transcribe() (about 5x
    the CPU time). JSON, TSV and TXT still show words only when the job asked for ``word_timestamps``
    (``without_words``)."""
    return subtitles.style == "readable" and not SUBTITLE_FORMATS.isdisjoint(formats)


def without_words(transcript: Transcript) -> Transcript:
    """The transcript as a job that did not ask for word timings gets it in JSON, TSV and TXT."""
    return replace(transcript, segments=[replace(seg, words=None) for seg in transcript.segments])


def render(transcript: Transcript, fmt: str, subtitles: Subtitles = DEFAULT_SUBTITLES) -> str:
    """Render ``transcript`` as ``fmt``; ValueError, not KeyError, so callers treat it as bad input.

    SRT and WebVTT follow ``subtitles``: readable cues from word timings, or with ``style="segments"`` the table's
    one cue per segment."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(OUTPUT_FORMATS)}")
    if fmt in SUBTITLE_FORMATS and subtitles.style == "readable":
        cues = readable_cues(transcript, subtitles, vtt=fmt == "vtt")
        return "WEBVTT\n\n" + "\n".join(cues) if fmt == "vtt" else "\n".join(cues)
    return renderer(transcript)
