"""What the engine does on a GPU, run on a CPU where torch allows: the fp16 conversion (CPUs compute in half
precision too, slowly) and the recovery from CUDA running out of memory (torch.OutOfMemoryError, injected)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import whisper

from tests.support.audio_factory import load_jfk
from tests.support.samples import TEST_MODEL
from worker.engine.backends import prepare_for_inference
from worker.engine.batched import BatchedEngine
from worker.engine.choose import make_engine
from worker.engine.options import TranscribeOptions
from worker.errors import ResourceExhausted
from worker.models.cache import ModelCache

PHRASE = "ask not what your country can do for you"


def _models(model_dir: Path) -> ModelCache:
    return ModelCache(model_dir=model_dir, sources={}, download=False, device="cpu")


def test_fp16_preparation_halves_the_weights_keeps_layernorms_fp32_and_hears_the_same(model_dir: Path) -> None:
    fp32 = _models(model_dir).get(TEST_MODEL)
    half = prepare_for_inference(copy.deepcopy(fp32), half=True)
    assert prepare_for_inference(half, half=True) is half  # converted once

    for module in half.modules():
        own = list(module.parameters(recurse=False))
        expected = torch.float32 if isinstance(module, torch.nn.LayerNorm) else torch.float16
        assert all(p.dtype == expected for p in own), (type(module).__name__, [p.dtype for p in own])
    assert all(p.dtype == torch.float32 for p in fp32.parameters())  # the model it was copied from is untouched

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(load_jfk())), fp32.dims.n_mels)[None]
    with torch.inference_mode():
        reference = fp32.encoder(mel)
        halved = half.encoder(mel.half())
    assert halved.dtype == torch.float16
    error = (halved.float() - reference).norm() / reference.norm()
    assert error < 0.02, f"fp16 encoder output differs by {error:.2%}"

    decoded = whisper.decode(
        half, mel.half(), whisper.DecodingOptions(language="en", fp16=True, without_timestamps=True)
    )
    assert PHRASE in decoded[0].text.lower()


class _OutOfMemory:
    """A real backend whose passes of more than ``rows_that_fit`` decoder rows run out of GPU memory."""

    def __init__(self, inner: Any, rows_that_fit: int) -> None:
        self._inner = inner
        self._rows_that_fit = rows_that_fit
        self.passes: list[tuple[int, bool]] = []  # (rows, ran out of memory)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, windows: np.ndarray, tokenizer: Any, shared: Any = None) -> Any:
        rows = sum(1 if w is None else len(w.placements) for w in shared) if shared else len(windows)
        failing = rows > self._rows_that_fit
        with self._lock:
            self.passes.append((rows, failing))
        if failing:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB for {rows} rows")
        return self._inner.generate(windows, tokenizer, shared)


def _engine(model_dir: Path, rows_that_fit: int) -> tuple[BatchedEngine, list[_OutOfMemory]]:
    engine = make_engine(_models(model_dir), "ctranslate2")
    assert isinstance(engine, BatchedEngine)
    load, wrapped = engine._backend_for, []

    def wrap(name: str) -> _OutOfMemory:
        wrapped.append(_OutOfMemory(load(name), rows_that_fit))
        return wrapped[-1]

    engine._backend_for = wrap
    return engine, wrapped


def _together(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.exception(timeout=300) or f.result() for f in futures]


def test_a_pass_that_runs_out_of_gpu_memory_is_decoded_in_parts_and_every_job_completes(model_dir: Path) -> None:
    engine, wrapped = _engine(model_dir, rows_that_fit=1)
    jfk = load_jfk()
    texts = _together(*(lambda: engine.transcribe(TEST_MODEL, jfk, TranscribeOptions()).text.lower() for _ in range(3)))
    assert all(isinstance(t, str) and PHRASE in t for t in texts), texts
    passes = [p for backend in wrapped for p in backend.passes]
    assert any(failed for _, failed in passes), passes  # memory did run out ...
    assert any(rows == 1 and not failed for rows, failed in passes), passes  # ... and the parts went through alone


def test_a_job_that_cannot_fit_fails_transient_and_the_engine_serves_the_next(model_dir: Path) -> None:
    engine, wrapped = _engine(model_dir, rows_that_fit=0)
    with pytest.raises(ResourceExhausted, match="GPU out of memory") as caught:
        engine.transcribe(TEST_MODEL, load_jfk(), TranscribeOptions())
    assert not caught.value.permanent  # retried later, on a worker with room, instead of failing the job
    assert wrapped and all(failed for _, failed in wrapped[0].passes)

    wrapped[0]._rows_that_fit = 16  # memory is back
    assert PHRASE in engine.transcribe(TEST_MODEL, load_jfk(), TranscribeOptions()).text.lower()
