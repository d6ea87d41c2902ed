"""Model sources: bundled CTranslate2 weights verified and converted once, custom sources, clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from worker.errors import UnknownModel
from worker.models import BUNDLED, ModelCache, _package_dir, resolve


def test_bundled_model_converts_once_and_is_cached(tmp_path: Path) -> None:
    first = resolve("tiny.en", model_dir=tmp_path, sources={}, download=False)
    assert first.path.parent == tmp_path / "converted" and first.path.is_file()
    assert first.alignment_heads  # word timestamps need them
    stamp = first.path.stat().st_mtime_ns
    again = resolve("tiny.en", model_dir=tmp_path, sources={}, download=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    checkpoint = torch.load(first.path, weights_only=True)
    assert checkpoint["dims"]["n_vocab"] == 51864 and checkpoint["dims"]["n_text_layer"] == 4


def test_tampered_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "pkg" / "fake_weights"
    shutil.copytree(_package_dir(BUNDLED["tiny.en"].package), copy / "model")
    (copy / "__init__.py").write_text("")
    with open(copy / "model" / "model.bin", "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\x00" * 16)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setitem(BUNDLED, "tiny.en", BUNDLED["tiny.en"].__class__("fake_weights", BUNDLED["tiny.en"].sha256))
    with pytest.raises(UnknownModel, match="sha256"):
        resolve("tiny.en", model_dir=tmp_path / "models", sources={}, download=False)


def test_custom_sources_local_pt_and_ct2_directory(tmp_path: Path) -> None:
    converted = resolve("tiny.en", model_dir=tmp_path, sources={}, download=False).path
    ct2_dir = _package_dir(BUNDLED["tiny.en"].package)
    sources = {"mine": str(converted), "from-ct2": str(ct2_dir)}
    cache = ModelCache(model_dir=tmp_path, sources=sources, download=False, device="cpu")
    assert cache.get("mine").dims.n_audio_state == 384
    assert cache.get("from-ct2").dims.n_audio_state == 384
    assert cache.get("mine") is cache.get("mine")  # loaded once per process


def test_unavailable_models_are_refused_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="'large-v3' is not available"):
        resolve("large-v3", model_dir=tmp_path, sources={}, download=False)
    with pytest.raises(UnknownModel, match="not available"):
        resolve("no-such-model", model_dir=tmp_path, sources={}, download=True)
    with pytest.raises(UnknownModel, match="does not exist"):
        resolve("x", model_dir=tmp_path, sources={"x": str(tmp_path / "missing.pt")}, download=False)
