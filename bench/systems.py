"""One system measured in a process of its own: ``python -m bench.systems SPEC.json OUT.json``.

A process per system makes its peak RSS its own (the parent reads it with ``os.wait4``) and keeps one library's
threads, caches and allocator state from colouring the next one. Every in-process system gets the same decoded
audio (``worker.audio.decode``), loads its model (timed), transcribes the JFK sample once to warm up, then transcribes
the corpus with the clock running: decoding and loading are not part of "wall".

Nothing here imports torch at module level: faster-whisper's processes never load it, so their RSS stays theirs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# name -> the module it needs; a missing one shows as "not installed", not as a crash.
SYSTEMS: dict[str, str | None] = {
    "reference": "whisper",
    "reference-nocudnn": "whisper",
    "faster-whisper": "faster_whisper",
    "faster-whisper-batched": "faster_whisper",
    "engine": None,
    "worker": None,
    "worker-diarize": None,
    "worker-latency": None,
    "worker-one-by-one": None,
}
CUDA_ONLY = frozenset({"reference-nocudnn"})
# Run only when asked for (bench.run --diarize or --systems): the default table stays what it was.
OPT_IN = frozenset({"worker-diarize", "worker-latency", "worker-one-by-one"})
# worker-latency: every request of the worker to S3 and SQS delayed by this much, as from a container to its
# region's endpoints (tens of milliseconds for small S3 objects), so its figure predicts production.
AWS_LATENCY_MS = 20.0
INSTALL_HINT = {"faster_whisper": "pip install -e '.[bench]' (make bench does)"}


@dataclass
class Spec:
    """What a system process is told; written as JSON by the parent."""

    system: str
    items: list[dict[str, Any]]  # {name, audio, kind, seconds}, already repeated
    device: str = "cpu"
    model: str = "tiny.en"
    model_dir: str = ""
    checkpoint: str = ""  # openai-whisper .pt for the reference
    ct2_dir: str = ""  # CTranslate2 directory for faster-whisper
    warmup: str = ""  # a short file transcribed once before the clock starts
    concurrency: int | None = None
    engine: str | None = None
    timeout: float = 3600.0
    diarize: bool = False  # the worker: "diarize": true in every message, the warm-up's too
    aws_latency_ms: float = 0.0  # the worker: added to each of its S3 and SQS requests
    one_by_one: bool = False  # the worker: each message sent once the one before has its result
    precision: str | None = None  # WHISPER_CPU_PRECISION for the engine and the worker; None: the worker's default

    @classmethod
    def read(cls, path: Path) -> Spec:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))


@dataclass
class Outcome:
    """A system's answer: texts in item order, and the times around them."""

    status: str = "ok"  # "ok" | "error" | "not installed"
    detail: str = ""
    load_seconds: float | None = None
    load_label: str = "load"  # "cold start" for the worker
    wall_seconds: float | None = None
    texts: list[str | None] = field(default_factory=list)
    item_seconds: list[float | None] = field(default_factory=list)  # per-item wall, where it can be told apart
    errors: list[str | None] = field(default_factory=list)
    peak_rss_mb: float | None = None  # set when the measured process is not the system process itself
    device_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _decoded(spec: Spec) -> tuple[list[np.ndarray], np.ndarray]:
    """Every item's samples (one array per distinct file, shared by its repeats) and the warm-up sample."""
    from worker.audio.decode import decode_audio

    cache: dict[str, np.ndarray] = {}
    for item in spec.items:
        if item["audio"] not in cache:
            cache[item["audio"]] = decode_audio(Path(item["audio"]), max_seconds=24 * 3600)
    warm = decode_audio(Path(spec.warmup), max_seconds=600) if spec.warmup else next(iter(cache.values()))
    return [cache[item["audio"]] for item in spec.items], warm


def _torch_device_name(device: str) -> str:
    if device != "cuda":
        return ""
    import torch

    return torch.cuda.get_device_name(0)


def measure(
    spec: Spec,
    load: Callable[[], Any],
    one: Callable[[Any, np.ndarray], str],
    many: Callable[[Any, list[np.ndarray]], list[str] | None] | None = None,
) -> Outcome:
    """Decode, load (timed), warm up, then transcribe every item with the clock running.

    ``many`` takes the whole corpus in one call; it returns None when the loaded model cannot, and the items then
    go one by one through ``one``.
    """
    audio, warm = _decoded(spec)
    started = time.perf_counter()
    model = load()
    out = Outcome(load_seconds=time.perf_counter() - started)
    one(model, warm)
    started, cpu_started = time.perf_counter(), time.process_time()
    texts = many(model, audio) if many is not None else None
    if texts is not None:
        out.texts = list(texts)
        out.item_seconds = [None] * len(audio)
        out.errors = [None] * len(audio)
    else:
        for samples in audio:
            t0 = time.perf_counter()
            try:
                out.texts.append(one(model, samples))
                out.errors.append(None)
            except Exception as exc:  # one bad item is a row in the table, not the end of the run
                out.texts.append(None)
                out.errors.append(f"{type(exc).__name__}: {exc}")
            out.item_seconds.append(time.perf_counter() - t0)
    out.wall_seconds = time.perf_counter() - started
    # every thread of this process (a GPU's work shows only as the host's share)
    cpu = round(time.process_time() - cpu_started, 2)
    out.extra["cpu_seconds"] = {"process": cpu, "cores": os.cpu_count() or 1, "wall": round(out.wall_seconds, 2)}
    return out


# ---------------------------------------------------------------------------------------------- systems


def reference(spec: Spec, *, cudnn_sdp: bool = True) -> Outcome:
    """openai-whisper's own ``transcribe``, file after file, with its defaults (temperature fallback etc.)."""
    import torch
    import whisper

    if not cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)
    fp16 = spec.device == "cuda"

    def load() -> Any:
        return whisper.load_model(spec.checkpoint, device=spec.device)

    def one(model: Any, samples: np.ndarray) -> str:
        return model.transcribe(samples, language="en", fp16=fp16)["text"].strip()

    out = measure(spec, load, one)
    out.device_name = _torch_device_name(spec.device)
    out.extra["precision"] = "fp16" if fp16 else "fp32"
    if spec.device == "cuda":
        out.extra["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _faster_model(spec: Spec) -> Any:
    from faster_whisper import WhisperModel

    compute_type = "float16" if spec.device == "cuda" else "int8"
    # CTranslate2 defaults to 4 threads whatever the machine; torch uses every core, so give it the same.
    return WhisperModel(spec.ct2_dir, device=spec.device, compute_type=compute_type, cpu_threads=_cores())


def faster_whisper(spec: Spec) -> Outcome:
    def one(model: Any, samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, beam_size=1, language="en")
        return "".join(s.text for s in segments).strip()  # the generator does the work

    return measure(spec, lambda: _faster_model(spec), one)


def faster_whisper_batched(spec: Spec) -> Outcome:
    from faster_whisper import BatchedInferencePipeline

    def one(pipeline: Any, samples: np.ndarray) -> str:
        segments, _ = pipeline.transcribe(samples, batch_size=16, beam_size=1, language="en")
        return "".join(s.text for s in segments).strip()

    return measure(spec, lambda: BatchedInferencePipeline(model=_faster_model(spec)), one)


def engine(spec: Spec) -> Outcome:
    """Our transcription core without the queue: ``transcribe_many`` when the engine has it."""
    import inspect

    from worker.engine.options import TranscribeOptions
    from worker.ops.metrics import JobMetrics
    from worker.service.app import build_engine
    from worker.service.settings import Settings

    options = TranscribeOptions(language="en")
    wanted = {
        "default_model": spec.model,
        "device": spec.device,
        "model_dir": Path(spec.model_dir) if spec.model_dir else None,
        "engine": spec.engine,
        "concurrency": spec.concurrency,
        "cpu_precision": spec.precision,
    }
    known = {f.name for f in dataclasses.fields(Settings)}
    settings = Settings(**{k: v for k, v in wanted.items() if k in known and v is not None})

    def load() -> Any:
        kwargs: dict[str, Any] = {}
        if "metrics" in inspect.signature(build_engine).parameters:
            kwargs["metrics"] = JobMetrics(settings.metrics_namespace, write=lambda line: None)
        built = build_engine(settings, **kwargs)
        models = getattr(built, "models", None)
        if models is not None and hasattr(models, "get"):
            models.get(spec.model)
        return built

    def one(built: Any, samples: np.ndarray) -> str:
        return built.transcribe(spec.model, samples, options).text.strip()

    def many(built: Any, audio: list[np.ndarray]) -> list[str] | None:
        if not hasattr(built, "transcribe_many"):  # older engines: file after file
            return None
        batched.append(True)
        texts = [t.text.strip() for t in built.transcribe_many(spec.model, audio, options)]
        stats = getattr(built, "stats", None)  # the batched engine's counters
        if stats is not None:
            counters.update(stats.snapshot())
        return texts

    batched: list[bool] = []
    counters: dict[str, float] = {}
    out = measure(spec, load, one, many)
    out.device_name = _torch_device_name(spec.device)
    out.extra["transcribe_many"] = bool(batched)
    out.extra["precision"] = _precision(settings.cpu_precision, spec.device)
    if counters:
        out.extra["engine"] = counters
    return out


def _precision(setting: str, device: str) -> str:
    """What the engine computes in for ``WHISPER_CPU_PRECISION=setting`` on this machine."""
    from worker.engine.device import choose_precision

    return choose_precision(setting, device).name


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_system(spec: Spec) -> Outcome:
    if spec.system == "reference":
        return reference(spec)
    if spec.system == "reference-nocudnn":
        return reference(spec, cudnn_sdp=False)
    if spec.system == "faster-whisper":
        return faster_whisper(spec)
    if spec.system == "faster-whisper-batched":
        return faster_whisper_batched(spec)
    if spec.system == "engine":
        return engine(spec)
    if spec.system in ("worker", "worker-diarize", "worker-latency", "worker-one-by-one"):
        from bench.worker_system import run_worker

        latency = AWS_LATENCY_MS if spec.system == "worker-latency" else spec.aws_latency_ms
        diarize = spec.diarize or spec.system == "worker-diarize"
        one_by_one = spec.one_by_one or spec.system == "worker-one-by-one"
        return run_worker(dataclasses.replace(spec, diarize=diarize, aws_latency_ms=latency, one_by_one=one_by_one))
    raise ValueError(f"unknown system {spec.system!r}")


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = Spec.read(spec_path)
    try:
        outcome = run_system(spec)
    except ImportError as exc:
        outcome = Outcome(status="not installed", detail=str(exc))
    except Exception as exc:
        traceback.print_exc()
        outcome = Outcome(status="error", detail=f"{type(exc).__name__}: {exc}")
    out_path.write_text(json.dumps(dataclasses.asdict(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
