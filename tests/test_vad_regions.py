"""Voice activity regions: from speech probabilities to padded, merged sample ranges, and back onto the timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.non_speech import NON_SPEECH
from tests.support.audio_factory import load_jfk
from worker.audio import SAMPLE_RATE
from worker.audio.speech import CHUNK, Speech, Timeline, VadOptions, joined, padded, regions_from, voice_activity
from worker.engine.gating import on_timeline
from worker.transcript import Segment, Transcript, Word

S = SAMPLE_RATE


def probs(pattern: list[tuple[float, float]], seconds: float) -> np.ndarray:
    """Per-chunk probabilities: 0.9 inside each (start, end) in seconds, 0.05 elsewhere."""
    out = np.full(int(seconds * S) // CHUNK, 0.05, dtype=np.float32)
    for start, end in pattern:
        out[int(start * S) // CHUNK : int(end * S) // CHUNK] = 0.9
    return out


def test_padding_widens_each_region_within_the_audio_and_merges_those_that_touch() -> None:
    assert padded([(1000, 2000), (2500, 3000), (9000, 9500)], 300, 9600) == [(700, 3300), (8700, 9600)]
    assert padded([(0, 100)], 50, 1000) == [(0, 150)]
    assert padded([], 50, 1000) == []


def test_short_pauses_stay_inside_one_region_and_long_ones_split_it() -> None:
    options = VadOptions(min_silence_ms=2000, speech_pad_ms=0)
    one = regions_from(probs([(1, 4), (5, 8)], 20), options, 20 * S)  # a 1 s pause: one region
    assert len(one.regions) == 1 and abs(one.regions[0][0] / S - 1) < 0.05 and abs(one.regions[0][1] / S - 8) < 0.05
    two = regions_from(probs([(1, 4), (7, 9)], 20), options, 20 * S)  # a 3 s pause: two regions
    assert [(round(a / S), round(b / S)) for a, b in two.regions] == [(1, 4), (7, 9)]
    assert abs(two.seconds - 5.0) < 0.1  # speech found, before padding


def test_bursts_shorter_than_min_speech_are_dropped_and_speech_is_padded() -> None:
    found = regions_from(probs([(2, 2.1), (5, 7)], 10), VadOptions(min_speech_ms=250, speech_pad_ms=400), 10 * S)
    [(start, end)] = found.regions
    assert abs(start / S - 4.6) < 0.05 and abs(end / S - 7.4) < 0.05
    assert abs(found.seconds - 2.0) < 0.1


def test_speech_running_to_the_end_ends_with_the_audio() -> None:
    found = regions_from(probs([(3, 10)], 10), VadOptions(), 10 * S - 100)
    assert found.regions[-1][1] == 10 * S - 100


def test_timeline_maps_joined_times_back_onto_the_recording() -> None:
    timeline = Timeline([(2 * S, 5 * S), (10 * S, 12 * S)])  # joined: 0-3 s is 2-5 s, 3-5 s is 10-12 s
    assert timeline.original(0.0) == 2.0
    assert timeline.original(1.5) == 3.5
    assert timeline.original(3.0) == 10.0  # a start on the join belongs to the region after it
    assert timeline.original(3.0, is_end=True) == 5.0  # an end on the join, to the region before it
    assert timeline.original(4.0) == 11.0
    assert timeline.original(9.0) == 12.0  # never past a region's end


def test_a_transcript_of_joined_speech_lands_on_the_original_timeline() -> None:
    speech = Speech([(2 * S, 5 * S), (10 * S, 12 * S)], 4.2)
    words = [Word(" one", 0.5, 1.0, 0.9), Word(" two", 3.5, 4.0, 0.9)]
    joined_transcript = Transcript("one two", "en", 5.0, [Segment(0, 0.5, 4.0, " one two", words=words)])
    mapped = on_timeline(joined_transcript, speech, 20.0)
    [segment] = mapped.segments
    assert (segment.start, segment.end) == (2.5, 11.0)
    assert [(w.start, w.end) for w in segment.words or []] == [(2.5, 3.0), (10.5, 11.0)]
    assert mapped.duration == 20.0 and mapped.speech_seconds == 4.2


def test_joined_takes_the_regions_samples_in_order() -> None:
    audio = np.arange(100, dtype=np.float32)
    assert joined(audio, [(10, 12), (50, 53)]).tolist() == [10, 11, 50, 51, 52]
    assert joined(audio, []).size == 0


def test_the_detector_finds_speech_in_real_speech_and_none_in_generated_non_speech() -> None:
    vad = voice_activity()
    jfk = load_jfk()
    gap = NON_SPEECH["low_noise"](6.0)
    found = vad.speech(np.concatenate([gap, jfk, gap]), VadOptions())
    assert found.regions and 8.0 < found.seconds < 11.5
    first, last = found.regions[0][0] / S, found.regions[-1][1] / S
    assert 5.0 < first < 6.5 and 15.5 < last < 17.5  # the clip sits at 6-17 s; padding keeps its edges
    for name, make in NON_SPEECH.items():
        assert vad.speech(make(20.0), VadOptions()).regions == [], name


def test_digital_silence_is_never_given_to_the_model() -> None:
    probabilities = voice_activity().probabilities(np.zeros(600 * S, dtype=np.float32))
    assert probabilities.size == 600 * S // CHUNK and not probabilities.any()


def test_the_job_contract_takes_vad_as_a_switch_or_tunables_and_defaults_it_on() -> None:
    from worker.contract import ContractError, parse_message
    from worker.engine.gating import vad_options

    def vad(**fields: object) -> VadOptions | None:
        return vad_options(parse_message(json.dumps({"job_id": "j", "audio": "s3://b/k", **fields})).vad)

    assert vad() == VadOptions() and vad(vad=True) == VadOptions()
    assert vad(vad=False) is None
    assert vad(vad={"min_silence_ms": 500, "threshold": 0.3}) == VadOptions(threshold=0.3, min_silence_ms=500)
    for wrong in ({"threshold": 1.5}, {"pad": 1}, "yes"):
        with pytest.raises(ContractError) as caught:
            vad(vad=wrong)
        assert all(item["field"].startswith("vad") for item in caught.value.errors)
