"""Word timings from the batched engines (torch and CTranslate2) on real speech and real tiny.en weights: every
segment's words, inside it, in order, spelling its text, and starting where openai-whisper's transcribe() puts them."""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import replace

import numpy as np
import pytest

from bench.corpus import DEV_CORPUS
from tests.support.samples import DATA, JFK, TEST_MODEL
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.engine.batched import BatchedEngine
from worker.engine.gating import vad_options
from worker.engine.options import TranscribeOptions
from worker.engine.words import WINDOW_SAMPLES, _spans
from worker.service.app import build_engine
from worker.service.settings import Settings
from worker.transcript import Segment, Transcript, Word

ENGINES = ("batched", "ctranslate2")
PLAIN = TranscribeOptions(language="en", word_timestamps=True)
VAD = replace(PLAIN, vad=vad_options(True))
# transcribe() cuts its windows and segments elsewhere, and its rules trim the first word after a segment's pause,
# so a word starts where it puts it give or take this, on average within the mean; in a single sentence every word
# does, in longer speech (where the two cut segments differently) nine in ten
START_DIFFERENCE = 0.3
MEAN_START_DIFFERENCE = 0.1
WITHIN = {"jfk": 1.0, "padded": 1.0, "long": 0.9}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BatchedEngine]:
    model_dir = tmp_path_factory.mktemp("models")
    built = {}
    for name in ENGINES:
        engine = build_engine(Settings(model_dir=model_dir, default_model=TEST_MODEL, device="cpu", engine=name))
        assert isinstance(engine, BatchedEngine)
        built[name] = engine
    return built


@functools.cache
def _audio(name: str) -> np.ndarray:
    jfk = decode_audio(JFK, max_seconds=60)
    if name == "jfk":
        return jfk
    if name == "padded":  # silence around the speech: with VAD the pieces start 4 s into the recording
        return np.concatenate([np.zeros(4 * SAMPLE_RATE, np.float32), jfk, np.zeros(3 * SAMPLE_RATE, np.float32)])
    assert name == "long"  # five speakers, 41 s: more than one window to align
    gap = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    clips = [jfk] + [decode_audio(path, max_seconds=60) for path in sorted(DATA.glob("vctk_*.flac"))]
    return np.concatenate([part for clip in clips for part in (clip, gap)])


@pytest.fixture(scope="module")
def reference(engines: dict[str, BatchedEngine]) -> functools._lru_cache_wrapper[Transcript]:
    @functools.cache
    def words_of(audio: str, vad: bool) -> Transcript:
        return engines["batched"].reference.transcribe(TEST_MODEL, _audio(audio), VAD if vad else PLAIN)

    return words_of


def _key(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def _start_differences(words: list[Word], reference: list[Word]) -> tuple[list[float], int]:
    ours, theirs = [_key(w.word) for w in words], [_key(w.word) for w in reference]
    blocks = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False).get_matching_blocks()
    pairs = [(words[b.a + k], reference[b.b + k]) for b in blocks for k in range(b.size)]
    return [abs(a.start - b.start) for a, b in pairs], len(pairs)


def _check_words(segment: Segment) -> None:
    assert segment.words, f"segment without words: {segment.text!r}"
    assert re.sub(r"\s", "", "".join(w.word for w in segment.words)) == re.sub(r"\s", "", segment.text)
    for word in segment.words:
        assert segment.start <= word.start <= word.end <= segment.end, (word, segment.start, segment.end)
        assert 0.0 <= word.probability <= 1.0


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(("audio", "vad"), [("jfk", False), ("padded", True), ("padded", False), ("long", True)])
def test_batched_engines_time_every_word_as_transcribe_does(
    engines: dict[str, BatchedEngine],
    reference: functools._lru_cache_wrapper[Transcript],
    name: str,
    audio: str,
    vad: bool,
) -> None:
    engine = engines[name]
    before = engine.stats.snapshot()
    transcript = engine.transcribe(TEST_MODEL, _audio(audio), VAD if vad else PLAIN)
    after = engine.stats.snapshot()
    # the batched path ran (the reference loop counts nothing), and aligned this job's words
    assert after["aligned_jobs"] == before.get("aligned_jobs", 0) + 1
    assert after["passes"] > before.get("passes", 0)
    assert transcript.segments and "ask not what your country" in transcript.text.lower()
    for segment in transcript.segments:
        _check_words(segment)
    words = [w for s in transcript.segments for w in s.words or []]
    starts = [w.start for w in words]
    assert starts == sorted(starts), "words go back in time"
    if audio == "padded":  # on the recording's timeline, VAD or not
        assert 3.9 <= words[0].start <= 4.5, words[0]
    expected = [w for s in reference(audio, vad).segments for w in s.words or []]
    differences, matched = _start_differences(words, expected)
    assert matched >= 0.9 * len(expected), (matched, len(expected))
    close = sum(d <= START_DIFFERENCE for d in differences)
    assert close >= WITHIN[audio] * len(differences), sorted(differences)[-5:]
    assert float(np.mean(differences)) <= MEAN_START_DIFFERENCE, np.mean(differences)


def test_several_jobs_in_one_batch_each_get_their_own_words(engines: dict[str, BatchedEngine]) -> None:
    engine = engines["ctranslate2"]
    before = engine.stats.snapshot().get("aligned_jobs", 0)
    jfk, padded = engine.transcribe_many(TEST_MODEL, [_audio("jfk"), _audio("padded")], VAD)
    assert engine.stats.snapshot()["aligned_jobs"] == before + 2
    for transcript in (jfk, padded):
        for segment in transcript.segments:
            _check_words(segment)
    first_jfk = jfk.segments[0].words[0].start  # type: ignore[index]
    first_padded = padded.segments[0].words[0].start  # type: ignore[index]
    assert abs(first_padded - first_jfk - 4.0) <= 0.2, (first_jfk, first_padded)


def test_jobs_without_word_timestamps_are_not_aligned(engines: dict[str, BatchedEngine]) -> None:
    engine = engines["ctranslate2"]
    before = engine.stats.snapshot().get("aligned_jobs", 0)
    transcript = engine.transcribe(TEST_MODEL, _audio("jfk"), replace(PLAIN, word_timestamps=False))
    assert all(s.words is None for s in transcript.segments)
    assert engine.stats.snapshot().get("aligned_jobs", 0) == before


def test_spans_fit_one_window_each_and_keep_every_segment() -> None:
    # a segment every 4 s for two minutes: spans of at most 30 s, in order, each segment in exactly one
    segments = [Segment(i, 4.0 * i, 4.0 * i + 3.5, " word") for i in range(30)]
    spans = _spans(segments, [[1, 2]] * len(segments), 120 * SAMPLE_RATE)
    assert [i for span in spans for i in span.segments] == list(range(30))
    for span in spans:
        last = segments[span.segments[-1]]
        assert last.end * SAMPLE_RATE - span.start <= WINDOW_SAMPLES
        assert span.start <= segments[span.segments[0]].start * SAMPLE_RATE
        assert span.frames <= 3000
    assert len(spans) == 5  # 7 segments (28 s) fit a window with the tail, 8 would not


def test_options_that_need_the_reference_loop_still_take_it() -> None:
    assert BatchedEngine.batchable(PLAIN) and BatchedEngine.batchable(VAD)
    assert not BatchedEngine.batchable(replace(PLAIN, beam_size=5))
    assert not BatchedEngine.batchable(replace(PLAIN, initial_prompt="Kennedy's inaugural address."))


@pytest.mark.skipif(not DEV_CORPUS.is_dir(), reason="the dev speech corpus is not here")
def test_a_real_reading_gets_words_from_both_engines(engines: dict[str, BatchedEngine]) -> None:
    audio = decode_audio(DEV_CORPUS / "librispeech_1221-135766-0001.flac", max_seconds=60)
    texts = []
    for engine in engines.values():
        transcript = engine.transcribe(TEST_MODEL, audio, VAD)
        for segment in transcript.segments:
            _check_words(segment)
        texts.append([_key(w.word) for s in transcript.segments for w in s.words or []])
    assert len(texts[0]) > 30 and difflib.SequenceMatcher(a=texts[0], b=texts[1]).ratio() > 0.9
