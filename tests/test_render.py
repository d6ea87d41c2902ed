"""Renderers against hand-checked golden files, plus the timestamp edge cases behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.contract import OUTPUT_FORMATS as FORMATS
from worker.contract import Subtitles
from worker.engine.transcript import Segment, Transcript, Word
from worker.service.render import CONTENT_TYPES, RENDERERS, render, timestamp

GOLDEN = Path(__file__).parent / "golden"

SEGMENT_KEYS = {
    "id",
    "start",
    "end",
    "text",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


def sample() -> Transcript:
    words = [
        Word(" And", 0.0, 0.32, 0.91234567),
        Word(" so,", 0.32, 0.6, 0.88),
        Word(" my", 0.6, 0.9, 0.99999),
        Word(" fellow", 0.9, 1.4, 0.7),
        Word(" Americans,", 1.4, 2.5, 0.95),
    ]
    segments = [
        Segment(0, 0.0, 2.5, " And so, my fellow Americans,", -0.2345678, 0.0123456, 1.3333333, 0.0, words),
        # 4.9995 s is 4999.5 ms exactly, which rounds half-even to 00:00:05,000 (and 5.0 in JSON).
        Segment(1, 2.5, 4.9995, " na\u00efve caf\u00e9 \u2014 \u6771\u4eac ", -0.5, 0.05, 1.1, 0.2),
        Segment(2, 5.0, 7.25, " Press A --> B, then Tom & Jerry <3", -0.3, 0.01, 1.2, 0.0),
        Segment(3, 7.25, 7.25, "   ", -1.0, 0.9, 0.0, 0.0),
        Segment(4, 5999.5, 6001.25, " Over ninety-nine\tminutes\nin.", -0.25, 0.02, 1.05, 0.4),
    ]
    text = (
        "And so, my fellow Americans, na\u00efve caf\u00e9 \u2014 \u6771\u4eac "
        "Press A --> B, then Tom & Jerry <3 Over ninety-nine minutes in."
    )
    return Transcript(text=text, language="en", duration=6001.25, segments=segments)


@pytest.mark.parametrize("fmt", FORMATS)
def test_matches_golden(fmt: str) -> None:
    # One cue per segment: the subtitles of earlier versions (readable cues: tests/test_subtitles.py).
    expected = (GOLDEN / f"sample.{fmt}").read_bytes()
    assert render(sample(), fmt, Subtitles(style="segments")).encode("utf-8") == expected


@pytest.mark.parametrize(
    ("seconds", "srt"),
    [
        (0, "00:00:00,000"),
        (59.999, "00:00:59,999"),
        (3600, "01:00:00,000"),
        (6000, "01:40:00,000"),
        (360000, "100:00:00,000"),
        (0.9995, "00:00:01,000"),  # 999.5 ms, half-even up to 1000
        (1.0005, "00:00:01,000"),  # 1000.5 ms, half-even down to 1000
        (1.9995, "00:00:02,000"),
        (59.9995, "00:01:00,000"),  # never "00:00:59,1000"
        (3599.9999, "01:00:00,000"),
        (0.0005, "00:00:00,000"),
        (-1.5, "00:00:00,000"),
    ],
)
def test_timestamp(seconds: float, srt: str) -> None:
    assert timestamp(seconds) == srt
    assert timestamp(seconds, ".") == srt.replace(",", ".")


def test_every_format_has_a_content_type() -> None:
    assert set(CONTENT_TYPES) == set(RENDERERS) == set(FORMATS)
    assert all(ct.endswith("; charset=utf-8") for ct in CONTENT_TYPES.values())


def test_unknown_format_names_it_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'docx'.*json, srt, vtt, txt, tsv") as info:
        render(sample(), "docx")
    assert info.value.__context__ is None


def test_json_shape() -> None:
    doc = json.loads(render(sample(), "json"))
    assert {"task", "language", "duration", "text", "segments", "words"} == set(doc)
    assert all(set(seg) - {"words"} == SEGMENT_KEYS for seg in doc["segments"])
    assert [("words" in seg) for seg in doc["segments"]] == [True, False, False, False, False]
    assert [w["word"] for w in doc["words"]] == [" And", " so,", " my", " fellow", " Americans,"]


def test_json_without_words_has_no_words_key() -> None:
    t = sample()
    for seg in t.segments:
        seg.words = None
    doc = json.loads(render(t, "json"))
    assert "words" not in doc
    assert all(set(seg) == SEGMENT_KEYS for seg in doc["segments"])


def test_empty_transcript() -> None:
    t = Transcript(text="", language="en", duration=0.0)
    assert render(t, "srt") == ""
    assert render(t, "vtt") == "WEBVTT\n\n"
    assert render(t, "txt") == ""
    assert render(t, "tsv") == "start\tend\ttext\n"
    assert json.loads(render(t, "json"))["segments"] == []
