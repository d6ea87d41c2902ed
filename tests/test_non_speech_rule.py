"""Whisper's no-speech rule in the batched engine: a decoding that hears no speech speaks for its whole piece."""

from __future__ import annotations

import numpy as np
from whisper.tokenizer import get_tokenizer

from worker.audio import SAMPLE_RATE
from worker.engine.greedy import Generated
from worker.engine.splitback import Split, acceptable, silent
from worker.engine.windows import Piece

TOKENIZER = get_tokenizer(False)


def decoding(text: str, no_speech: float, logprob: float) -> Generated:
    """``<|0.00|> text <|5.00|>`` then a lone ``<|6.00|>``: Whisper's "more speech from 6 s on"."""
    begin = TOKENIZER.timestamp_begin
    return Generated([begin, *TOKENIZER.encode(text), begin + 250, begin + 300], logprob, no_speech)


def noise(piece: Piece) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(piece.samples) * 0.1).astype(np.float32)


def test_a_silent_decoding_gives_its_piece_no_text_and_sends_nothing_back() -> None:
    piece = Piece(0, 0, 20 * SAMPLE_RATE)
    quiet = decoding(" you", no_speech=0.8, logprob=-1.5)
    assert silent(quiet)
    text, rests = Split(piece, 0, quiet, TOKENIZER, noise).run()
    assert text.spans == [] and rests == []


def test_a_decoding_that_hears_speech_keeps_its_text_and_its_rest() -> None:
    piece = Piece(0, 0, 20 * SAMPLE_RATE)
    heard = decoding(" hello there", no_speech=0.1, logprob=-0.3)
    text, rests = Split(piece, 0, heard, TOKENIZER, noise).run()
    assert [span[2] for span in text.spans] == [" hello there"]
    assert rests == [Piece(0, 6 * SAMPLE_RATE, 20 * SAMPLE_RATE)]


def test_a_decoding_that_says_no_speech_is_not_sampled_again_as_in_transcribe() -> None:
    repetitive = " a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a"
    assert acceptable(decoding(repetitive, no_speech=0.7, logprob=-0.2), repetitive)  # kept or dropped, not resampled
    assert not acceptable(decoding(repetitive, no_speech=0.3, logprob=-0.2), repetitive)
    assert not acceptable(decoding(" words", no_speech=0.3, logprob=-1.4), " words")
