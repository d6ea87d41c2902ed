"""Choose the engine for a device: the batched torch engine, CTranslate2 where installed, or the reference loop.

Measured (``make bench``, README "Performance"): on CPU, CTranslate2's int8 kernels are the fastest, so
``auto`` takes them when the optional package is installed and the model has CTranslate2 weights; on a GPU
the batched torch engine is faster than both.
"""

from __future__ import annotations

import importlib.util
import time

from whisper.model import AudioEncoder

from worker.engine import Engine
from worker.engine.backends import CPU_BATCH_WINDOWS, Backend, Ct2Backend, TorchBackend, configure_cuda
from worker.engine.batched import BatchedEngine
from worker.engine.device import Precision
from worker.engine.reference import ReferenceEngine
from worker.errors import SettingsError
from worker.models.cache import ModelCache, ct2_directory

ENGINES = ("auto", "batched", "ctranslate2", "sequential")


def ct2_installed() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


def resolve_engine(name: str, device: str) -> str:
    if name not in ENGINES:
        raise SettingsError(f"WHISPER_ENGINE must be one of {', '.join(ENGINES)}, not {name!r}")
    if name != "auto":
        return name
    return "ctranslate2" if device == "cpu" and ct2_installed() else "batched"


def make_engine(
    models: ModelCache,
    name: str,
    batch_windows: int = 0,
    *,
    deadline_base_seconds: float = 600.0,
    deadline_factor: float = 4.0,
    precision: Precision | None = None,
) -> Engine:
    """``precision`` (``device.choose_precision``): bf16 runs the batched engine's torch encoder in bf16 on CPU;
    ``transcribe()`` stays fp32."""
    device = models.device
    bf16 = precision is not None and precision.bf16
    chosen = resolve_engine(name, device)
    if device.startswith("cuda"):
        configure_cuda()
    reference = ReferenceEngine(models)
    if chosen == "sequential":
        return reference
    if chosen == "ctranslate2" and not ct2_installed():
        raise SettingsError("WHISPER_ENGINE=ctranslate2 needs the optional package: pip install 'whisper-batch[ct2]'")
    size = batch_windows  # 0: each backend picks for its device and model

    def backend_for(model_name: str) -> Backend:
        if chosen == "ctranslate2":
            directory = ct2_directory(model_name, models.sources, models.model_dir)
            if directory is not None:  # other models have no CTranslate2 weights: torch it is
                started = time.monotonic()
                kind = "cuda" if device.startswith("cuda") else "cpu"

                # the torch encoder keeps shared windows' pieces apart (``isolate``), CTranslate2 decodes; the
                # torch weights load with the first shared window, reported with this load rather than again
                def encoder(name: str = model_name) -> AudioEncoder:
                    return models.get(name, report=False).encoder

                backend = Ct2Backend(directory, kind, size or CPU_BATCH_WINDOWS, encoder, bf16)
                models.report_load(model_name, time.monotonic() - started, device)
                return backend
        return TorchBackend(models.get(model_name), size, bf16)

    return BatchedEngine(
        reference,
        backend_for,
        name=chosen,
        deadline_base_seconds=deadline_base_seconds,
        deadline_factor=deadline_factor,
    )
