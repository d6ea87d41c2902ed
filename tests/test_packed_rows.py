"""A shared window's row does not decide its piece's fate: a row that fails transcribe()'s text checks, or says no
speech, sends the piece to be decoded alone.

Beside other pieces, noisy speech read as "no speech" (0.85-0.93 where alone it read 0.1-0.4), and the engine then
returned empty transcripts for clips that alone read fine (bench.hard's noisy and quiet dev clips). Here a real
backend's shared-window rows are made to say exactly that, on every pass, and every clip must still be heard.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.samples import DATA, TEST_MODEL
from worker.audio.decode import decode_audio
from worker.audio.speech import VadOptions
from worker.engine.batched import BatchedEngine
from worker.engine.choose import make_engine
from worker.engine.options import TranscribeOptions
from worker.models.cache import ModelCache


class SilentRows:
    """A real backend whose rows for shared windows (one per packed piece) say no speech, improbably."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.silenced = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, windows: np.ndarray, tokenizer: Any, shared: Any = None) -> Any:
        rows = self._inner.generate(windows, tokenizer, shared)
        if not shared:
            return rows
        out, at = [], 0
        for window in shared:
            count = 1 if window is None else len(window.placements)
            for row in rows[at : at + count]:
                if window is not None:
                    row = replace(row, no_speech_prob=0.93, avg_logprob=-1.2)
                    self.silenced += 1
                out.append(row)
            at += count
        return out


def _words(text: str) -> set[str]:
    return {w.strip(".,!?;:").lower() for w in text.split()}


@pytest.mark.parametrize("vad", [None, VadOptions()], ids=["all-audio", "speech-only"])
def test_pieces_whose_packed_rows_say_no_speech_are_heard_alone(model_dir: Path, vad: VadOptions | None) -> None:
    models = ModelCache(model_dir=model_dir, sources={}, download=False, device="cpu")
    engine = make_engine(models, "ctranslate2")
    assert isinstance(engine, BatchedEngine)
    clips = [decode_audio(path, max_seconds=60) for path in sorted(DATA.glob("*.flac"))]
    options = TranscribeOptions(language="en", vad=vad)
    alone = [engine.transcribe(TEST_MODEL, clip, options).text for clip in clips]

    load = engine._backend_for
    wrapped: list[SilentRows] = []
    engine._backend_for = lambda name: wrapped.append(SilentRows(load(name))) or wrapped[-1]
    engine._backends.clear()
    again = engine.stats.snapshot().get("pieces_again", 0)
    packed = [t.text for t in engine.transcribe_many(TEST_MODEL, clips, options)]

    assert wrapped and wrapped[0].silenced >= 3, "the clips shared windows, and their rows said no speech"
    assert engine.stats.snapshot()["pieces_again"] - again >= wrapped[0].silenced
    for heard, expected in zip(packed, alone, strict=True):
        assert len(_words(heard) & _words(expected)) >= 0.8 * len(_words(expected)), (heard, expected)
