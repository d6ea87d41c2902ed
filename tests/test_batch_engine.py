"""The batched engine on real tiny.en weights: same tokens as openai-whisper, packing split back per job."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import torch
from whisper.decoding import DecodingOptions, decode
from whisper.normalizers import EnglishTextNormalizer
from whisper.tokenizer import get_tokenizer

from tests.support.audio_factory import JFK
from tests.support.conversation import conversation
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.engine.batched import BatchedEngine
from worker.engine.choose import resolve_engine
from worker.engine.greedy import Generated, generate_greedy, log_mel
from worker.engine.isolate import MARGIN_SECONDS, TAIL_SAMPLES, encode_apart, isolate, parts_of, rows_for
from worker.engine.options import Cancelled, TranscribeOptions
from worker.engine.splitback import Split, spans_of
from worker.engine.windows import (
    MAX_CUT_SECONDS,
    PACK_GAP_SECONDS,
    WINDOW_SAMPLES,
    Piece,
    Window,
    cut_points,
    pack,
)
from worker.service.app import build_engine
from worker.service.settings import Settings, SettingsError

SENTENCE = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
EN = TranscribeOptions(language="en")
normalise = EnglishTextNormalizer()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK, max_seconds=60)


def _engine(model_dir: Path, name: str) -> BatchedEngine:
    engine = build_engine(Settings(model_dir=model_dir, default_model="tiny.en", device="cpu", engine=name))
    assert isinstance(engine, BatchedEngine)
    return engine


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> BatchedEngine:
    return _engine(tmp_path_factory.mktemp("models"), "batched")


def _words(text: str) -> str:
    return normalise(text)


def test_greedy_decoder_gives_openai_whispers_tokens(batched: BatchedEngine, jfk: np.ndarray) -> None:
    model = batched.reference.models.get("tiny.en")
    windows = np.zeros((2, WINDOW_SAMPLES), dtype=np.float32)
    windows[0, : jfk.size] = jfk
    windows[1, : 5 * SAMPLE_RATE] = jfk[: 5 * SAMPLE_RATE]
    mel = log_mel(torch.from_numpy(windows), model.dims.n_mels)
    tokenizer = get_tokenizer(False)
    ours = generate_greedy(model, mel, tokenizer)
    theirs = decode(model, mel, DecodingOptions(language="en", without_timestamps=False, fp16=False))
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.tokens == list(reference.tokens)
        assert mine.avg_logprob == pytest.approx(reference.avg_logprob, abs=1e-4)
        assert mine.no_speech_prob == pytest.approx(reference.no_speech_prob, abs=1e-4)


def test_packed_clips_come_back_to_their_own_jobs(batched: BatchedEngine, jfk: np.ndarray) -> None:
    first, second = jfk[: int(4.6 * SAMPLE_RATE)], jfk[int(7.7 * SAMPLE_RATE) :]
    assert len(pack([Piece(0, 0, jfk.size), Piece(1, 0, first.size), Piece(2, 0, second.size)])) == 1
    whole, opening, closing = batched.transcribe_many("tiny.en", [jfk, first, second], EN)
    assert _words(whole.text) == SENTENCE
    assert jiwer.wer("and so my fellow americans ask not", _words(opening.text)) <= 0.15
    assert jiwer.wer("ask what you can do for your country", _words(closing.text)) <= 0.15
    assert "fellow" not in closing.text and "country" not in opening.text.split()[-1:]
    for transcript, audio in ((whole, jfk), (opening, first), (closing, second)):
        assert transcript.duration == pytest.approx(audio.size / SAMPLE_RATE, abs=0.01)
        assert all(0 <= s.start <= s.end <= transcript.duration for s in transcript.segments)


def test_long_audio_is_cut_at_pauses_and_keeps_its_timeline(batched: BatchedEngine, jfk: np.ndarray) -> None:
    # Pauses long enough that no window holds the sentence twice: repeated text is what transcribe()'s
    # compression check rejects, and this test is about cutting, not about that check.
    pause = np.zeros(12 * SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([jfk, pause, jfk, pause, jfk])  # 57 s
    cuts = cut_points(audio)
    loud = float(np.sqrt(np.mean(audio**2)))
    quiet = [float(np.sqrt(np.mean(audio[c - 1600 : c + 1600] ** 2))) for c in cuts]
    assert len(cuts) >= 1 and all(q < loud / 5 for q in quiet), "cuts land in pauses, not in words"
    (transcript,) = batched.transcribe_many("tiny.en", [audio], EN)
    assert jiwer.wer(" ".join([SENTENCE] * 3), _words(transcript.text)) <= 0.1
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end <= transcript.duration
    assert transcript.segments[-1].start > 46.0, "the last sentence sits late in the file's timeline"


def test_a_short_clip_alone_is_read_from_its_own_frames(batched: BatchedEngine, jfk: np.ndarray) -> None:
    """A message that arrives alone gets a pass of its own: a short clip is then read like a packed one (the
    encoder over the clip and the silence after it), a long piece as a whole window."""
    backend = batched._backend("tiny.en")
    apart: list[bool] = []
    original = backend.generate

    def recording(windows: np.ndarray, tokenizer: object, shared: list | None = None) -> list[Generated]:
        apart.append(bool(shared) and shared[0] is not None)
        return original(windows, tokenizer, shared)

    backend.generate = recording  # type: ignore[method-assign]
    # the long piece says four different things: a sentence said twice compresses too well for greedy decoding to
    # pass, and the sampled fallback that then reads it differs from run to run
    talk = conversation()
    try:
        (short,) = batched.transcribe_many("tiny.en", [jfk], EN)
        (long,) = batched.transcribe_many("tiny.en", [talk.audio], EN)
    finally:
        backend.generate = original  # type: ignore[method-assign]
    assert apart == [True, False]  # 11 s: its own frames; 27 s: a whole window
    assert jiwer.wer(SENTENCE, _words(short.text)) <= 0.1 and short.segments[0].start < 0.5
    assert jiwer.wer(_words(talk.text), _words(long.text)) <= 0.1
    assert {s.temperature for s in [*short.segments, *long.segments]} == {0.0}


def test_no_audio_is_no_transcripts_at_once(batched: BatchedEngine) -> None:
    done: list[list] = []
    caller = threading.Thread(target=lambda: done.append(batched.transcribe_many("tiny.en", [], EN)), daemon=True)
    caller.start()
    caller.join(10)  # it used to wait for its deadline, ten minutes, with no job to settle it
    assert done == [[]]


def test_calls_from_several_threads_share_forward_passes(batched: BatchedEngine, jfk: np.ndarray) -> None:
    backend = batched._backend("tiny.en")
    calls: list[int] = []
    original = backend.generate

    def counting(windows: np.ndarray, tokenizer: object, shared: object = None) -> list[Generated]:
        calls.append(len(windows))
        return original(windows, tokenizer, shared)

    backend.generate = counting  # type: ignore[method-assign]
    try:
        clips = [jfk[: int(s * SAMPLE_RATE)] for s in (4.6, 4.6, 4.6, 4.6, 4.6)]
        results: dict[int, str] = {}
        gate = threading.Barrier(len(clips))

        def job(i: int) -> None:
            gate.wait()
            results[i] = batched.transcribe("tiny.en", clips[i], EN).text

        threads = [threading.Thread(target=job, args=(i,)) for i in range(len(clips))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        backend.generate = original  # type: ignore[method-assign]
    assert len(results) == len(clips)
    assert all(jiwer.wer("and so my fellow americans ask not", _words(t)) <= 0.15 for t in results.values())
    assert len(calls) < len(clips), f"five calls took {len(calls)} forward passes"


def test_a_cancelled_job_ends_while_the_engine_works_and_the_engine_serves_the_next(
    batched: BatchedEngine, jfk: np.ndarray
) -> None:
    """What a spot notice does to a job it hands back: the engine stops spending passes on it."""
    long = np.concatenate([jfk] * 30)  # five and a half minutes: many windows
    cancel, started, percents, outcome = threading.Event(), threading.Event(), [], {}

    def progress(percent: float) -> None:
        percents.append(percent)
        started.set()

    def run() -> None:
        try:
            outcome["transcript"] = batched.transcribe("tiny.en", long, TranscribeOptions(), progress, cancel)
        except Cancelled as exc:
            outcome["cancelled"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(timeout=60)
    cancel.set()
    thread.join(timeout=120)
    assert not thread.is_alive() and "cancelled" in outcome, outcome
    assert max(percents) < 100.0, "it ended before the engine got through its audio"
    again = batched.transcribe("tiny.en", jfk, TranscribeOptions())
    assert "ask not what your country" in again.text.lower()


def test_options_the_batch_cannot_honour_take_the_reference_path(batched: BatchedEngine, jfk: np.ndarray) -> None:
    reference_calls: list[np.ndarray] = []
    original = batched.reference.transcribe

    def counting(model_name: str, audio: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        reference_calls.append(audio)
        return original(model_name, audio, *args, **kwargs)

    batched.reference.transcribe = counting  # type: ignore[method-assign]
    try:
        options = TranscribeOptions(language="en", beam_size=2)
        (transcript,) = batched.transcribe_many("tiny.en", [jfk], options)
    finally:
        batched.reference.transcribe = original  # type: ignore[method-assign]
    assert len(reference_calls) == 1 and reference_calls[0] is jfk  # openai-whisper's transcribe() ran, once
    assert "ask not what your country" in _words(transcript.text)


def test_ctranslate2_engine_reads_the_same_speech(tmp_path: Path, jfk: np.ndarray) -> None:
    engine = _engine(tmp_path, "ctranslate2")
    whole, opening = engine.transcribe_many("tiny.en", [jfk, jfk[: int(4.6 * SAMPLE_RATE)]], EN)
    assert _words(whole.text) == SENTENCE
    assert jiwer.wer("and so my fellow americans ask not", _words(opening.text)) <= 0.15


def test_engine_names_are_checked() -> None:
    assert resolve_engine("batched", "cuda") == "batched"
    assert resolve_engine("auto", "cuda") == "batched"
    with pytest.raises(SettingsError, match="WHISPER_ENGINE"):
        resolve_engine("fastest", "cpu")


# --- splitting a decoded shared window back, on made-up tokens --------------------------------------

TOKENIZER = get_tokenizer(False)
BEGIN = TOKENIZER.timestamp_begin


def _ts(seconds: float) -> int:
    return BEGIN + round(seconds / 0.02)


def _text(words: str) -> list[int]:
    return TOKENIZER.encode(" " + words)


def _split(tokens: list[int], offset_seconds: float = 6.5) -> tuple[list, Piece | None]:
    # a 3.5 s piece at 6.5 s into its window: its own row of a shared window
    piece = Piece(1, 0, int(3.5 * SAMPLE_RATE))
    found, rests = Split(piece, int(offset_seconds * SAMPLE_RATE), Generated(tokens, -0.2, 0.01), TOKENIZER).run()
    assert len(rests) <= 1
    return found.spans, rests[0] if rests else None


def test_spans_parse_timestamp_pairs() -> None:
    tokens = [_ts(0), *_text("hello there"), _ts(2.0), _ts(2.4), *_text("again"), _ts(3.0), *_text("cut")]
    spans, tail = spans_of(tokens, BEGIN)
    assert [(s.start, s.end) for s in spans] == [(0.0, 2.0), (2.4, 3.0), (3.0, None)] and tail is None
    spans, tail = spans_of([_ts(0), *_text("hello"), _ts(2.0), _ts(6.0)], BEGIN)
    assert [(s.start, s.end) for s in spans] == [(0.0, 2.0)] and tail == pytest.approx(6.0)


def test_a_pieces_segments_move_onto_its_own_timeline() -> None:
    spans, rest = _split([_ts(6.6), *_text("second clip"), _ts(9.9)])
    assert rest is None and [s[2] for s in spans] == [" second clip"]
    assert spans[0][0] == pytest.approx(0.1) and spans[0][1] == pytest.approx(3.4)
    spans, _ = _split([_ts(6.6), *_text("runs past the end"), _ts(11.0)])  # clamped to the piece
    assert spans[0][1] == pytest.approx(3.5)


def test_speech_the_decoder_defers_gets_a_window_of_its_own() -> None:
    # "speech starts at 8.4 s but runs on": the piece's rest, from 1.9 s into it, is decoded again
    spans, rest = _split([_ts(6.6), *_text("second"), _ts(8.0), _ts(8.4)])
    assert rest is not None and rest.job == 1
    assert rest.start == int((8.4 - 6.5) * SAMPLE_RATE) and rest.end == int(3.5 * SAMPLE_RATE)
    assert [span[2] for span in spans] == [" second"]


def test_speech_after_a_decoder_that_stopped_early_is_decoded_again_and_silence_is_not() -> None:
    piece = Piece(3, 0, 20 * SAMPLE_RATE)
    tokens = [_ts(0), *_text("the first five seconds"), _ts(5.0)]  # then end of text: 15 s never transcribed
    talk = conversation().audio  # real voices, pauses between them
    voice = talk[: piece.samples]
    quiet = voice.copy()
    quiet[5 * SAMPLE_RATE :] = 0
    for audio, expected in ((voice, Piece(3, 5 * SAMPLE_RATE, 20 * SAMPLE_RATE)), (quiet, None)):
        found, rests = Split(piece, 0, Generated(tokens, -0.2, 0.01), TOKENIZER, lambda p, a=audio: a).run()
        assert rests == ([expected] if expected else []) and [t for _, _, t, _ in found.spans] == [
            " the first five seconds"
        ]
    # a recording quiet throughout (peaks near -46 dBFS) still speaks
    found, rests = Split(piece, 0, Generated(tokens, -0.2, 0.01), TOKENIZER, lambda p: voice * 0.005).run()
    assert rests == [Piece(3, 5 * SAMPLE_RATE, 20 * SAMPLE_RATE)]


def test_a_long_segment_with_too_few_words_for_its_speech_is_decoded_again_in_halves() -> None:
    # Whisper's jump: "<|0.00|> the words of the last clip <|26.00|>" over 26 s of four people reading in turn
    talk = conversation().audio
    piece = Piece(2, 16_000, 16_000 + 26 * SAMPLE_RATE)
    voice = talk[: piece.samples]
    tokens = [_ts(0), *_text("hello"), _ts(1.0), _ts(1.0), *_text("when a man looks for something beyond"), _ts(26.0)]
    found, rests = Split(piece, 0, Generated(tokens, -0.2, 0.01), TOKENIZER, lambda p: voice).run()
    assert [t for _, _, t, _ in found.spans] == [" hello"]  # kept: the text before the segment that skipped
    (first, cut), (again, end) = [(r.start, r.end) for r in rests]
    assert all(r.job == 2 for r in rests) and first == piece.start + SAMPLE_RATE and again == cut and end == piece.end
    third = 25 * SAMPLE_RATE // 3
    assert first + third <= cut <= first + 2 * third  # in the middle third ...
    local = cut - piece.start
    quiet = float(np.sqrt(np.mean(voice[local - 800 : local + 800] ** 2)))
    assert quiet < float(np.sqrt(np.mean(voice**2))) / 5  # ... at a pause, not in a word
    # the same words over a stretch that is mostly silence, or enough words for the speech: nothing to decode again
    hushed = voice.copy()
    hushed[4 * SAMPLE_RATE :] = 0
    many = [_ts(0), *_text(" ".join(["word"] * 30)), _ts(26.0)]
    for audio, said in ((hushed, tokens), (voice, many)):
        _, rests = Split(piece, 0, Generated(said, -0.2, 0.01), TOKENIZER, lambda p, a=audio: a).run()
        assert rests == []


def test_each_piece_of_a_shared_window_gets_its_own_row() -> None:
    window = Window([(Piece(0, 0, 5 * SAMPLE_RATE), 0), (Piece(1, 0, 3 * SAMPLE_RATE), int(6.5 * SAMPLE_RATE))])
    rows = rows_for([None, window], BEGIN)
    assert [(r.window, r.start) for r in rows] == [(0, None), (1, _ts(0)), (1, _ts(6.5))]
    assert rows[2].first == int((6.5 - MARGIN_SECONDS) * 50) and rows[2].last == int((9.5 + MARGIN_SECONDS) * 50) + 1
    encoded = np.arange(2 * 1500 * 2, dtype=np.float32).reshape(2, 1500, 2)
    silence = np.full((1500, 2), -1.0, dtype=np.float32)
    mixed = isolate(encoded, rows, silence)
    assert np.array_equal(mixed[0], encoded[0])  # decoded whole: untouched
    inside, outside = rows[2].first + 5, rows[2].first - 5
    assert np.array_equal(mixed[2, inside], encoded[1, inside]) and np.array_equal(mixed[2, outside], silence[0])
    assert np.array_equal(isolate(torch.from_numpy(encoded), rows, torch.from_numpy(silence)).numpy(), mixed)


def test_a_pieces_encoder_frames_do_not_hear_its_neighbour(batched: BatchedEngine, jfk: np.ndarray) -> None:
    encoder = batched.reference.models.get("tiny.en").encoder
    first, second = jfk[: 5 * SAMPLE_RATE], jfk[5 * SAMPLE_RATE : 10 * SAMPLE_RATE]
    window = Window([(Piece(0, 0, first.size), 0), (Piece(1, 0, second.size), 6 * SAMPLE_RATE)])
    audio = np.stack([window.audio([first, second]), window.audio([first, np.zeros_like(second)])])
    parts = parts_of([window, window])
    mel = log_mel(torch.from_numpy(audio), 80, parts)
    with torch.inference_mode():
        apart, masked = (encode_apart(encoder, mel, parts, masked=m) for m in (False, True))
        whole = encoder(mel)
    own = slice(0, 6 * 50 - 10)  # the first piece's stretch, clear of the convolutions' reach into the next
    assert torch.allclose(apart[0, own], apart[1, own], atol=1e-4)  # the neighbour's voice changes nothing
    assert not torch.allclose(whole[0, own], whole[1, own], atol=1e-2)  # as it would with attention unmasked
    assert torch.allclose(apart, masked, atol=1e-2)  # the GPU's single masked kernel computes the same frames
    alone = log_mel(torch.from_numpy(audio[:1]), 80)
    with torch.inference_mode():
        assert torch.allclose(encode_apart(encoder, alone, None), encoder(alone), atol=1e-4)


def test_a_windows_last_piece_hears_a_gaps_worth_of_silence(batched: BatchedEngine, jfk: np.ndarray) -> None:
    """Past the last piece and the silence after it, no row reads the encoder's output: it is not computed."""
    encoder = batched.reference.models.get("tiny.en").encoder
    first, second = jfk[: 5 * SAMPLE_RATE], jfk[5 * SAMPLE_RATE : 10 * SAMPLE_RATE]
    alone = Window([(Piece(0, 0, first.size), 0)])
    followed = Window([*alone.placements, (Piece(1, 0, second.size), first.size + int(PACK_GAP_SECONDS * SAMPLE_RATE))])
    parts = parts_of([alone, followed])
    mel = log_mel(torch.from_numpy(np.stack([alone.audio([first]), followed.audio([first, second])])), 80, parts)
    with torch.inference_mode():
        apart, masked = (encode_apart(encoder, mel, parts, masked=m) for m in (False, True))
    end = -(-(first.size + TAIL_SAMPLES) // 320)  # encoder frames are 320 samples apart
    assert not apart[0, end:].any() and not masked[0, end:].any()
    assert apart[0, :end].norm(dim=-1).min() > 1  # every frame up to there is computed
    # what the piece hears is the silence a piece followed by another hears, not the rest of the window
    own = slice(0, first.size // 320 + 15)
    assert torch.allclose(apart[0, own], apart[1, own], atol=0.1)
    assert torch.allclose(apart, masked, atol=1e-2)


def test_a_quiet_piece_beside_a_loud_one_keeps_its_own_spectrogram(jfk: np.ndarray) -> None:
    quiet, loud = jfk[: 5 * SAMPLE_RATE] * 0.01, jfk[5 * SAMPLE_RATE : 10 * SAMPLE_RATE]
    window = Window([(Piece(0, 0, quiet.size), 0), (Piece(1, 0, loud.size), 6 * SAMPLE_RATE)])
    audio = torch.from_numpy(window.audio([quiet, loud])[None])
    alone = log_mel(torch.from_numpy(Window([(Piece(0, 0, quiet.size), 0)]).audio([quiet])[None]), 80)
    shared = log_mel(audio, 80, parts_of([window]))
    frames = quiet.size // 160 - 2  # clear of the STFT's reach into the neighbour
    assert torch.allclose(shared[0, :, :frames], alone[0, :, :frames], atol=1e-5)
    assert not torch.allclose(log_mel(audio, 80)[0, :, :frames], alone[0, :, :frames], atol=1e-2)


def test_a_quiet_recording_packed_beside_a_loud_one_is_heard(batched: BatchedEngine, jfk: np.ndarray) -> None:
    quiet, loud = jfk * 0.005, jfk[: int(4.6 * SAMPLE_RATE)]
    assert len(pack([Piece(0, 0, quiet.size), Piece(1, 0, loud.size)])) == 1
    soft, opening = batched.transcribe_many("tiny.en", [quiet, loud], EN)
    assert jiwer.wer(SENTENCE, _words(soft.text)) <= 0.15, soft.text
    assert jiwer.wer("and so my fellow americans ask not", _words(opening.text)) <= 0.15


def test_pack_and_cut_limits() -> None:
    pieces = [Piece(i, 0, int(s * SAMPLE_RATE)) for i, s in enumerate((20, 8, 5, 12, 27))]
    windows = pack(pieces)
    assert sorted(p.job for w in windows for p, _ in w.placements) == [0, 1, 2, 3, 4]
    assert all(w.used <= MAX_CUT_SECONDS * SAMPLE_RATE for w in windows)
    assert len(windows) == 3
    rng = np.random.default_rng(3)
    speech = [rng.normal(0, 0.1, int(s * SAMPLE_RATE)).astype(np.float32) for s in (12, 14, 9, 16, 11)]
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    audio = np.concatenate([x for s in speech for x in (s, gap)])
    cuts = cut_points(audio)
    bounds = [0, *cuts, audio.size]
    assert all(b - a <= MAX_CUT_SECONDS * SAMPLE_RATE for a, b in itertools.pairwise(bounds))
    assert all(not np.any(audio[c - 80 : c + 80]) for c in cuts)
