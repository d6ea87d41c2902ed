"""The readable cue builder on hand-made word lists: wrapping, fragments, speakers, timing and word highlighting,
read back the way a user gets them (the SRT/WebVTT text) through tests/support/readability.py."""

from __future__ import annotations

import itertools
import json
import re

import jsonschema
import pytest

from infra.schema import to_draft4
from tests.support.readability import check, parse
from worker.contract import ContractError, Subtitles, json_schema, parse_message
from worker.diarization.attribute import smooth
from worker.service.render import RENDERERS, needs_words, render, without_words
from worker.transcript import Segment, Transcript, Word

LIMITS = Subtitles()
LONG = (
    "We walked down to the old harbour at dawn, and the fishing boats were already far out on the grey water. "
    "Nobody on the quay had seen them leave, because the fog was thick until eight. By noon the sun had burnt it "
    "away and the whole bay shone."
)


def words(text: str, start: float = 0.0, step: float = 0.35, speaker: str | None = None, gap: float = 0.05) -> list:
    out, at = [], start
    for item in text.split():
        out.append(Word(" " + item, at, at + step - gap, 0.9, speaker))
        at += step
    return out


def transcript(*runs: list[Word]) -> Transcript:
    segments = [
        Segment(i, run[0].start, run[-1].end, "".join(w.word for w in run), words=run) for i, run in enumerate(runs)
    ]
    speakers = {w.speaker for run in runs for w in run if w.speaker}
    return Transcript(
        text=" ".join(s.text.strip() for s in segments),
        language="en",
        duration=segments[-1].end + 1 if segments else 0.0,
        segments=segments,
        speakers={name: 1.0 for name in sorted(speakers)} if speakers else None,
    )


def shown(text: str) -> str:
    return " ".join(" ".join(c.lines) for c in parse(text))


# --- wrapping ---------------------------------------------------------------------------------------------------------


def test_long_speech_is_wrapped_within_the_limits_without_losing_or_splitting_a_word() -> None:
    srt = render(transcript(words(LONG)), "srt")
    cues = parse(srt)
    report = check(cues, LIMITS)
    assert len(cues) >= 4 and report.problems() == [], report
    assert shown(srt) == LONG  # every word once, in order, none cut
    assert all(len(line) <= 42 for cue in cues for line in cue.lines)


def test_cues_and_lines_break_at_punctuation_and_clauses() -> None:
    cues = parse(render(transcript(words(LONG)), "srt"))
    ends = [cue.lines[-1].split()[-1] for cue in cues]
    assert sum(end[-1] in ".,;" for end in ends) >= len(ends) - 1, ends
    for cue in cues:  # a cue never opens with the last words of the sentence before it
        first_sentence = re.split(r"(?<=[.?!]) ", " ".join(cue.lines))[0]
        assert len(first_sentence.split()) > 3 or cue is cues[0], cue.lines


def test_other_limits_are_honoured() -> None:
    limits = Subtitles(max_line_width=30, max_line_count=1, max_duration=3.0)
    cues = parse(render(transcript(words(LONG)), "vtt", limits))
    assert check(cues, limits).problems() == []
    assert all(len(cue.lines) == 1 and len(cue.lines[0]) <= 30 for cue in cues)


def test_a_word_longer_than_a_line_stays_whole_on_its_own_line() -> None:
    url = "https://example.com/a/very/long/address/that/cannot/be/broken"
    cues = parse(render(transcript(words(f"Please open {url} now.")), "srt"))
    assert url in [line for cue in cues for line in cue.lines]


# --- fragments --------------------------------------------------------------------------------------------------------


def test_punctuation_alone_joins_a_word_and_is_never_a_cue() -> None:
    said = words("Well I think so")
    said.insert(2, Word(" -", said[1].end, said[1].end + 0.2, 0.3))
    text = render(transcript(said), "srt")
    assert shown(text) == "Well I - think so"
    assert all(re.search(r"\w", " ".join(c.lines)) for c in parse(text))


def test_a_lone_doubtful_word_does_not_change_the_speaker() -> None:
    said = words("I really think we should go", speaker="SPEAKER_00")
    said[3] = Word(" we", said[3].start, said[3].end, 0.2, "SPEAKER_01")  # the diarizer's guess, Whisper unsure
    stutter = words("and f- then", start=3.0, speaker="SPEAKER_00")
    stutter[1].speaker = "SPEAKER_01"  # a false start, however sure
    smoothed = smooth(said + stutter)
    assert {w.speaker for w in smoothed} == {"SPEAKER_00"}
    sure = words("Yes", start=3.0, speaker="SPEAKER_01")  # a confident one-word answer is a real turn
    assert smooth(said[:3] + sure)[-1].speaker == "SPEAKER_01"


def test_a_turn_boundary_inside_a_sentence_moves_to_its_edge() -> None:
    a = words("It is obvious when you are", speaker="SPEAKER_00")
    b = words("doing. Actually that raises a point.", start=a[-1].end + 0.1, speaker="SPEAKER_01")
    assert [w.speaker for w in smooth(a + b)][:7] == ["SPEAKER_00"] * 7  # "doing." stays with its sentence
    c = words("They call me a Yankee here. So what", speaker="SPEAKER_00")
    d = words("kind of thing was that?", start=c[-1].end + 0.1, speaker="SPEAKER_01")
    moved = smooth(c + d)
    assert [w.speaker for w in moved][6:] == ["SPEAKER_01"] * 7  # "So what" goes on with "kind of thing"


# --- speakers ---------------------------------------------------------------------------------------------------------


def conversation() -> Transcript:
    first = words(LONG, speaker="SPEAKER_00")
    second = words("Yes, I saw them too.", start=first[-1].end + 0.3, speaker="SPEAKER_01")
    third = words("Did you?", start=second[-1].end + 0.3, speaker="SPEAKER_00")
    return transcript(first, second, third)


def test_a_cue_never_mixes_speakers_and_vtt_names_every_cues_voice() -> None:
    vtt = render(conversation(), "vtt")
    cues = parse(vtt)
    assert all(cue.voice for cue in cues) and all(cue.label is None for cue in cues)  # labels only when asked
    voices = [cue.voice for cue in cues]
    assert voices[-2:] == ["SPEAKER_01", "SPEAKER_00"] and set(voices[:-2]) == {"SPEAKER_00"}
    assert any(" ".join(c.lines) == "Yes, I saw them too." for c in cues)
    assert check(cues, LIMITS).problems() == []


@pytest.mark.parametrize(
    ("fmt", "labels", "expected"),
    [
        ("srt", None, "every"),  # SRT has no voice markup: the default shows the speaker on every cue
        ("srt", "every_cue", "every"),
        ("srt", "changes", "changes"),
        ("srt", "none", "none"),
        ("vtt", None, "none"),  # WebVTT's voice spans name the speaker
        ("vtt", "changes", "changes"),
        ("vtt", "every_cue", "every"),
    ],
)
def test_speaker_labels(fmt: str, labels: str | None, expected: str) -> None:
    limits = Subtitles(speaker_labels=labels)
    cues = parse(render(conversation(), fmt, limits))
    speakers = [cue.voice for cue in cues] if fmt == "vtt" else None
    got = [cue.label for cue in cues]
    if expected == "every":
        assert all(got) and len(set(got)) == 2
    elif expected == "none":
        assert not any(got)
    else:
        assert got[0] == "SPEAKER_00" and got[-2:] == ["SPEAKER_01", "SPEAKER_00"] and not any(got[1:-2])
    if speakers:
        assert all(speakers)
    assert check(cues, limits).problems() == []  # the label counts toward the line width


def test_a_label_that_leaves_no_room_for_the_first_word_takes_a_line_of_its_own() -> None:
    url = "https://example.com/a/long/address/here"  # 39 characters: no room beside "[SPEAKER_00] "
    said = words(f"{url} is where it is.", speaker="SPEAKER_00")
    cues = parse(render(transcript(said), "srt"))
    assert cues[0].lines[0] == "[SPEAKER_00]" and cues[0].lines[1].startswith(url)
    assert check(cues, LIMITS).problems() == []


# --- timing -----------------------------------------------------------------------------------------------------------


def test_a_short_answer_is_held_for_the_minimum_and_read_in_the_pause_after_it() -> None:
    yes = [Word(" Yes.", 1.0, 1.3, 0.9)]
    later = words("That is what I said before the others came in.", start=4.0)
    cues = parse(render(transcript(yes, later), "srt"))
    assert cues[0].end - cues[0].start >= 1.0 and cues[0].start == 1.0
    assert check(cues, LIMITS).problems() == []


def test_cues_that_touch_are_kept_apart_and_a_crowded_short_cue_is_forced() -> None:
    a = words("One two three four five six.", start=0.0, gap=0.0)
    b = words("Seven.", start=a[-1].end, speaker=None, gap=0.0)
    c = words("Eight nine ten eleven twelve.", start=b[-1].end, gap=0.0)
    for w in b:
        w.speaker = "SPEAKER_01"
    for w in a + c:
        w.speaker = "SPEAKER_00"
    for w in b:
        w.probability = 0.99
    cues = parse(render(transcript(a, b, c), "srt", Subtitles(speaker_labels="none")))
    report = check(cues, LIMITS)
    assert len(cues) == 3 and report.close == [] and report.problems() == []
    assert cues[1].end - cues[1].start < 1.0  # the speech leaves no room: allowed, and reported as such


def test_reading_speed_holds_a_cue_into_free_time() -> None:
    quick = words("Absolutely everything depends upon extraordinary circumstances.", step=0.15)
    cue = parse(render(transcript(quick), "srt"))[0]
    assert cue.chars / (cue.end - cue.start) <= 20.05


def test_a_cue_never_outlasts_max_duration() -> None:
    drawn = [Word(" Hmmmm.", 0.0, 12.0, 0.9)]  # Whisper sometimes stretches a word over a silence
    cues = parse(render(transcript(drawn), "vtt"))
    assert cues[0].end - cues[0].start <= 7.0


# --- highlighting -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_highlight_underlines_each_word_while_it_is_spoken(fmt: str) -> None:
    said = words("And so my fellow Americans")
    text = render(transcript(said), fmt, Subtitles(highlight_words=True))
    blocks = [b for b in text.split("\n\n") if "-->" in b]
    assert len(blocks) == 5
    assert [re.findall(r"<u>(.*?)</u>", b) for b in blocks] == [[w.word.strip()] for w in said]
    cues = parse(text)
    assert all(" ".join(c.lines) == "And so my fellow Americans" for c in cues)
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert all(a.end == b.start for a, b in itertools.pairwise(cues))


# --- styles, words and the contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_segments_style_is_one_cue_per_segment_as_before(fmt: str) -> None:
    t = conversation()
    assert render(t, fmt, Subtitles(style="segments")) == RENDERERS[fmt](t)


def test_a_segment_without_word_timings_still_renders_readably() -> None:
    t = Transcript(LONG, "en", 20.0, [Segment(0, 0.0, 18.0, " " + LONG)])
    cues = parse(render(t, "srt"))
    assert shown(render(t, "srt")) == LONG and check(cues, LIMITS).problems() == []


def test_words_are_computed_for_readable_subtitles_and_shown_only_where_asked() -> None:
    # Readable cues are cut at word timings: the batched engines align them in a pass of their own.
    assert needs_words(["json", "srt"], LIMITS) and needs_words(["vtt"], LIMITS)
    highlight = LIMITS.model_copy(update={"highlight_words": True})
    assert needs_words(["srt"], highlight) and needs_words(["json", "vtt"], highlight)
    assert not needs_words(["json", "txt", "tsv"], highlight) and not needs_words(["json"], LIMITS)
    assert not needs_words(["srt"], Subtitles(style="segments", highlight_words=True))
    assert not needs_words(["srt", "vtt"], Subtitles(style="segments"))
    bare = without_words(conversation())
    assert all(seg.words is None for seg in bare.segments) and '"words"' not in render(bare, "json")


def test_the_contract_takes_subtitles_with_broadcast_defaults() -> None:
    job = parse_message('{"job_id": "a", "audio": "s3://b/k"}')
    assert job.subtitles == Subtitles()
    assert (job.subtitles.max_line_width, job.subtitles.max_line_count, job.subtitles.style) == (42, 2, "readable")
    job = parse_message(
        '{"job_id": "a", "audio": "s3://b/k", "subtitles": {"max_line_width": 32, "style": "segments"}}'
    )
    assert job.subtitles.max_line_width == 32 and job.subtitles.min_gap == 0.08
    schema = json_schema()
    assert schema["properties"]["subtitles"]["$ref"] == "#/$defs/Subtitles"
    assert schema["$defs"]["Subtitles"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("subtitles", "field"),
    [
        ({"max_line_width": 5}, "subtitles.max_line_width"),
        ({"min_duration": True}, "subtitles.min_duration"),
        ({"min_duration": "1"}, "subtitles.min_duration"),
        ({"speaker_labels": "always"}, "subtitles.speaker_labels"),
        ({"colour": "red"}, "subtitles.colour"),
        ({"min_duration": 5.0, "max_duration": 2.0}, "subtitles"),
    ],
)
def test_bad_subtitle_options_are_refused_naming_the_field(subtitles: dict, field: str) -> None:
    body = {"job_id": "a", "audio": "s3://b/k", "subtitles": subtitles}
    with pytest.raises(ContractError) as info:
        parse_message(json.dumps(body))
    assert [e["field"] for e in info.value.errors] == [field]


def test_the_https_api_schema_checks_subtitles_too() -> None:
    validator = jsonschema.Draft4Validator(to_draft4(json_schema()))
    job = {"job_id": "a", "audio": "s3://b/k", "subtitles": {"max_line_width": 37, "speaker_labels": "changes"}}
    assert list(validator.iter_errors(job)) == []
    bad = {**job, "subtitles": {"max_line_width": 5, "colour": "red"}}
    assert len(list(validator.iter_errors(bad))) == 2
