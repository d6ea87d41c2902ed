"""Speaker diarization: the built-in diarizer on real voices, the bounds a job sets, and speakers on transcripts."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests.support.conversation import conversation, runs
from tests.support.samples import JFK
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.diarization import SpeakerBounds, Turn
from worker.diarization.attribute import attribute
from worker.diarization.clustering import cluster, merge_to
from worker.diarization.embedding import EmbeddingDiarizer
from worker.diarization.pyannote import PipelineUnavailable, PyannoteDiarizer
from worker.diarization.turns import labelled, talk_time
from worker.diarization.weights import BUILT_IN, PackagedWeights, WeightsUnavailable, verified
from worker.engine.transcript import Segment, Transcript, Word


@pytest.fixture(scope="module")
def diarizer() -> EmbeddingDiarizer:
    return EmbeddingDiarizer("cpu")


# --- the built-in diarizer on real speech ------------------------------------------------------------------


def test_two_speakers_get_two_labels_in_the_order_they_speak(diarizer: EmbeddingDiarizer) -> None:
    talk = conversation()
    turns = diarizer.diarize(talk.audio, SpeakerBounds())
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert runs([t.speaker for t in turns]) == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01"]
    names = {"p225": "SPEAKER_00", "p226": "SPEAKER_01"}
    right = sum(
        max(0.0, min(t.end, end) - max(t.start, start))
        for t in turns
        for start, end, who in talk.turns
        if names[who] == t.speaker
    )
    speech = sum(end - start for start, end, _ in talk.turns)
    assert right / speech > 0.9  # VAD trims leading and trailing silence inside the clips


def test_one_speaker_gets_one_label(diarizer: EmbeddingDiarizer) -> None:
    turns = diarizer.diarize(decode_audio(JFK, max_seconds=60), SpeakerBounds())
    assert turns and {t.speaker for t in turns} == {"SPEAKER_00"}
    assert 7.0 < sum(talk_time(turns).values()) < 11.0


def test_more_voices_than_the_maximum_are_merged_to_it(diarizer: EmbeddingDiarizer) -> None:
    turns = diarizer.diarize(conversation().audio, SpeakerBounds(high=1))
    assert {t.speaker for t in turns} == {"SPEAKER_00"}


def test_an_exact_count_is_honoured(diarizer: EmbeddingDiarizer) -> None:
    turns = diarizer.diarize(conversation().audio, SpeakerBounds(exact=2))
    assert runs([t.speaker for t in turns]) == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01"]


@pytest.mark.parametrize("kind", ["silence", "tone", "noise"])
def test_audio_without_speech_has_no_speakers(diarizer: EmbeddingDiarizer, kind: str) -> None:
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    audio = {
        "silence": np.zeros_like(t),
        "tone": 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 2 * t),
        "noise": 0.01 * np.random.default_rng(0).standard_normal(len(t)),
    }[kind].astype(np.float32)
    assert diarizer.diarize(audio, SpeakerBounds()) == []


def test_a_clip_shorter_than_a_window_still_gets_a_speaker(diarizer: EmbeddingDiarizer) -> None:
    audio = decode_audio(JFK, max_seconds=60)[int(0.2 * SAMPLE_RATE) : int(1.4 * SAMPLE_RATE)]
    assert {t.speaker for t in diarizer.diarize(audio, SpeakerBounds())} == {"SPEAKER_00"}


# --- clustering within bounds ------------------------------------------------------------------------------


def _voices(counts: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(counts), 192)) * 3
    return np.concatenate([c + rng.standard_normal((n, 192)) for c, n in zip(centres, counts, strict=True)])


def test_clustering_finds_distinct_voices_and_keeps_to_the_bounds() -> None:
    embeddings = _voices([20, 20, 20])
    assert len(set(cluster(embeddings, SpeakerBounds()))) == 3
    assert len(set(cluster(embeddings, SpeakerBounds(high=2)))) == 2
    assert len(set(cluster(embeddings, SpeakerBounds(exact=3)))) == 3
    assert len(set(cluster(_voices([4, 3]), SpeakerBounds()))) == 1  # too few windows to tell voices apart
    assert len(set(cluster(_voices([4, 3]), SpeakerBounds(low=2)))) == 2  # unless the job says there are two
    assert cluster(np.zeros((0, 192)), SpeakerBounds()).size == 0


def test_merging_joins_the_closest_voices_and_places_outliers() -> None:
    a, b, c = np.eye(3)[0], np.eye(3)[1], np.eye(3)[0] * 0.9 + np.eye(3)[2] * 0.1
    embeddings = np.stack([a, a, b, b, c, c, b])
    labels = merge_to(np.array([0, 0, 1, 1, 2, 2, -1]), embeddings, 2)
    assert labels.tolist() == [0, 0, 1, 1, 0, 0, 1]


def test_labels_follow_first_appearance_and_overlaps_are_cut_in_the_middle() -> None:
    turns = labelled([(5.0, 7.0, 3), (0.0, 2.0, 9), (1.5, 3.0, 3), (3.0, 4.0, 3)])
    assert turns == [Turn(0.0, 1.75, "SPEAKER_00"), Turn(1.75, 4.0, "SPEAKER_01"), Turn(5.0, 7.0, "SPEAKER_01")]
    assert talk_time(turns) == {"SPEAKER_00": 1.75, "SPEAKER_01": 4.25}


def test_a_turn_inside_another_speakers_turn_interrupts_it() -> None:
    turns = labelled([(0.0, 30.0, "a"), (5.0, 6.0, "b")])
    assert turns == [Turn(0.0, 5.0, "SPEAKER_00"), Turn(5.0, 6.0, "SPEAKER_01"), Turn(6.0, 30.0, "SPEAKER_00")]


# --- speakers onto transcripts -----------------------------------------------------------------------------


def _words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end, 0.9) for text, start, end in spec]


def test_a_segment_that_spans_a_change_of_speaker_is_split_at_the_word_boundary() -> None:
    words = _words((" Hello", 0.0, 0.5), (" there.", 0.5, 1.0), (" Hi", 1.2, 1.5), (" back.", 1.5, 2.0))
    transcript = Transcript(
        " Hello there. Hi back.", "en", 2.0, [Segment(0, 0.0, 2.0, " Hello there. Hi back.", words=words)]
    )
    turns = [Turn(0.0, 1.1, "SPEAKER_00"), Turn(1.1, 2.0, "SPEAKER_01")]
    out = attribute(transcript, turns)
    assert [(s.id, s.start, s.end, s.text, s.speaker) for s in out.segments] == [
        (0, 0.0, 1.0, " Hello there.", "SPEAKER_00"),
        (1, 1.2, 2.0, " Hi back.", "SPEAKER_01"),
    ]
    assert [w.speaker for s in out.segments for w in s.words or []] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 2
    assert out.speakers == {"SPEAKER_00": 1.1, "SPEAKER_01": 0.9}


def test_without_word_timings_a_segment_goes_to_who_talks_most_in_it() -> None:
    transcript = Transcript("a b", "en", 4.0, [Segment(0, 0.0, 3.0, " a"), Segment(1, 3.0, 4.0, " b")])
    out = attribute(transcript, [Turn(0.0, 1.0, "SPEAKER_00"), Turn(1.0, 4.0, "SPEAKER_01")])
    assert [s.speaker for s in out.segments] == ["SPEAKER_01", "SPEAKER_01"]


def test_a_long_turn_that_began_earlier_still_counts_when_turns_overlap() -> None:
    transcript = Transcript("a", "en", 30.0, [Segment(0, 10.0, 12.0, " a")])
    out = attribute(transcript, [Turn(0.0, 30.0, "SPEAKER_00"), Turn(9.5, 10.5, "SPEAKER_01")])
    assert out.segments[0].speaker == "SPEAKER_00"


def test_text_in_a_pause_takes_the_nearest_turn_and_far_text_none() -> None:
    transcript = Transcript("a b", "en", 9.0, [Segment(0, 1.2, 1.5, " a"), Segment(1, 7.0, 9.0, " b")])
    out = attribute(transcript, [Turn(0.0, 1.0, "SPEAKER_00")])
    assert [s.speaker for s in out.segments] == ["SPEAKER_00", None]
    nobody = attribute(transcript, [])
    assert [s.speaker for s in nobody.segments] == [None, None] and nobody.speakers == {}


# --- weights and backends ----------------------------------------------------------------------------------


def test_built_in_weights_match_their_pinned_hashes() -> None:
    for weights in BUILT_IN:
        assert verified(weights).is_file()


def test_changed_or_missing_weights_are_refused_with_what_to_do() -> None:
    changed = PackagedWeights("jfk", "tests", "data/jfk.flac", "0" * 64, "MIT")
    with pytest.raises(WeightsUnavailable, match="expected 0000000000000000"):
        verified(changed)
    with pytest.raises(WeightsUnavailable, match=r"whisper-batch\[diarize\]"):
        verified(PackagedWeights("gone", "no_such_package_here", "x.pt", "0" * 64, "MIT"))


def test_a_pipeline_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineUnavailable, match=r"no config\.yaml"):
        PyannoteDiarizer(tmp_path)


def test_a_pyannote_pipeline_gets_the_bounds_and_its_labels_are_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyannote.audio is not a dependency here: a stand-in with its API checks the adapter's side of it."""
    calls: list[dict] = []

    class Track:
        def __init__(self, start: float, end: float) -> None:
            self.start, self.end = start, end

    class Annotation:
        def itertracks(self, yield_label: bool) -> list:
            return [(Track(2.0, 3.0), "A", "spk_b"), (Track(0.0, 1.5), "B", "spk_a")]

    class Pipeline:
        @staticmethod
        def from_pretrained(path: Path) -> Pipeline:
            assert Path(path) == tmp_path / "config.yaml"
            return Pipeline()

        def to(self, device: object) -> Pipeline:
            return self

        def __call__(self, audio: dict, **options: int) -> types.SimpleNamespace:
            calls.append({"shape": tuple(audio["waveform"].shape), "rate": audio["sample_rate"], **options})
            return types.SimpleNamespace(speaker_diarization=Annotation())

    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    module = types.ModuleType("pyannote.audio")
    module.Pipeline = Pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyannote.audio", module)
    monkeypatch.setitem(sys.modules, "pyannote", types.ModuleType("pyannote"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    turns = PyannoteDiarizer(tmp_path).diarize(np.zeros(16000, np.float32), SpeakerBounds(low=1, high=3))
    assert turns == [Turn(0.0, 1.5, "SPEAKER_00"), Turn(2.0, 3.0, "SPEAKER_01")]
    assert calls == [{"shape": (1, 16000), "rate": 16000, "min_speakers": 1, "max_speakers": 3}]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
