"""The int8 transport form of tiny.en: small, and the rebuilt checkpoint transcribes like the original."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import whisper

from bench import weights_codec

JFK = Path(__file__).parent / "data" / "jfk.flac"


def _samples(path: Path) -> np.ndarray:
    """16 kHz mono float32, decoded here so the test does not depend on the worker's decoder."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def _words(model: whisper.Whisper, audio: np.ndarray) -> list[str]:
    text = whisper.transcribe(model, audio, fp16=False, language="en", temperature=0.0)["text"]
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def test_quantize_rows_round_trips_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(8, 3, 5)).astype(np.float32)
    array[2] = 0.0  # an all-zero row must not divide by zero
    q, scales = weights_codec.quantize_rows(array)
    assert q.dtype == np.int8 and q.shape == (8, 15) and scales.shape == (8,)
    back = weights_codec.dequantize_rows(q, scales, array.shape)
    assert np.all(np.abs(back - array) <= scales[:, None, None] / 2 + 1e-7)
    assert np.all(back[2] == 0.0)


def test_tiny_en_round_trip_transcribes_the_same_words(tmp_path: Path, model_dir: Path) -> None:
    original = weights_codec.checkpoint_path("tiny.en", model_dir)  # the session's converted copy
    packed = weights_codec.encode(original, tmp_path / "tiny.en.npz")
    assert packed.stat().st_size < 30 * 10**6  # what makes the GPU upload fit

    expanded = weights_codec.expand(packed, tmp_path / "tiny.en.pt")
    before = torch.load(original, map_location="cpu", weights_only=True)
    after = torch.load(expanded, map_location="cpu", weights_only=True)
    assert after["dims"] == before["dims"] and after["alignment_heads"] == before["alignment_heads"]
    assert after["model_state_dict"].keys() == before["model_state_dict"].keys()
    for name, tensor in before["model_state_dict"].items():
        rebuilt = after["model_state_dict"][name]
        assert rebuilt.shape == tensor.shape and rebuilt.dtype == torch.float16, name
        bound = tensor.float().abs().amax() / 127 if tensor.dim() >= 2 else 0.0
        assert (rebuilt.float() - tensor.float()).abs().max() <= bound + 2e-3, name

    audio = _samples(JFK)
    torch.manual_seed(0)
    reference = _words(whisper.load_model(str(original), device="cpu"), audio)
    assert reference[:4] == ["and", "so", "my", "fellow"]
    assert _words(whisper.load_model(str(expanded), device="cpu"), audio) == reference


def test_expand_refuses_other_npz_files(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez_compressed(other, __meta__=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="format"):
        weights_codec.expand(other, tmp_path / "out.pt")
