"""Shrink an openai-whisper checkpoint for transport, and rebuild it on the other side.

The GPU machine the benchmark runs on has no internet and takes a small upload, so tiny.en's 75 MB fp16
checkpoint travels as int8: every floating tensor with two or more dims becomes int8 rows with one fp32 scale
per row (absmax / 127), 1-D tensors stay fp16, and the whole lot is a deflated ``.npz`` (about 28 MB). The
encoder's positional embedding is a fixed sinusoid table, so it is recomputed instead of quantised. ``expand``
writes an ``{"dims", "model_state_dict", "alignment_heads"}`` checkpoint of fp16 tensors that
``whisper.load_model`` and ``worker.models.cache`` (as a ``WHISPER_MODEL_SOURCES`` ``.pt``) both load. The result is
not bit-identical to the original: rounding to 255 levels per row can change a word now and then.

    python -m bench.weights_codec encode [--model tiny.en] OUT.npz
    python -m bench.weights_codec expand IN.npz OUT.pt
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "whisper-int8-rows/1"
_META = "__meta__"
_SINUSOIDS = "encoder.positional_embedding"
_SINUSOID_TOLERANCE = 2e-3  # the CTranslate2 conversion's table differs from torch's by ~5e-4 in fp16


def _sinusoids(length: int, channels: int) -> torch.Tensor:
    from whisper.model import sinusoids  # imported late: only this tensor needs whisper

    return sinusoids(length, channels).half()


def quantize_rows(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows (first axis) and their fp32 scales; an all-zero row gets scale 1 so it round-trips to zeros."""
    rows = array.astype(np.float32).reshape(array.shape[0], -1)
    scales = np.abs(rows).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(rows / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales.astype(np.float32)


def dequantize_rows(q: np.ndarray, scales: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return (q.astype(np.float32) * scales[:, None]).reshape(shape)


def checkpoint_path(name: str = "tiny.en", model_dir: Path | None = None) -> Path:
    """The converted checkpoint the worker itself would load for ``name`` (converted once and cached)."""
    from worker.models.cache import resolve
    from worker.service.settings import Settings

    directory = model_dir if model_dir is not None else Settings.from_env().model_dir
    return resolve(name, model_dir=directory, sources={}, download=False).path


def encode(checkpoint: Path, out: Path) -> Path:
    """Write the compressed form of an openai-whisper checkpoint ``.pt`` to ``out`` (an ``.npz``)."""
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    dims = dict(data["dims"])
    heads = data.get("alignment_heads")
    arrays: dict[str, np.ndarray] = {}
    tensors: dict[str, dict[str, Any]] = {}
    for name, tensor in data["model_state_dict"].items():
        entry: dict[str, Any] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
        if name == _SINUSOIDS:
            expected = _sinusoids(dims["n_audio_ctx"], dims["n_audio_state"])
            if expected.shape == tensor.shape and (tensor.float() - expected.float()).abs().max() < _SINUSOID_TOLERANCE:
                tensors[name] = {**entry, "kind": "sinusoids"}
                continue
        if tensor.is_floating_point() and tensor.dim() >= 2:
            arrays[f"{name}.q"], arrays[f"{name}.s"] = quantize_rows(tensor.float().numpy())
            entry["kind"] = "int8-rows"
        elif tensor.is_floating_point():
            arrays[name] = tensor.half().numpy()
            entry["kind"] = "fp16"
        else:  # integer or bool buffers: kept exactly
            arrays[name] = tensor.numpy()
            entry["kind"] = "raw"
        tensors[name] = entry
    meta = {"format": FORMAT, "dims": dims, "alignment_heads": heads, "tensors": tensors}
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # a file object: savez would otherwise append ".npz" to any other suffix
        np.savez_compressed(f, **arrays)
    return out


def load(path: Path) -> dict[str, Any]:
    """The checkpoint dict (fp16 tensors) that ``path`` encodes."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz[_META].tobytes())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (format {meta.get('format')!r})")
        dims = meta["dims"]
        state: dict[str, torch.Tensor] = {}
        for name, entry in meta["tensors"].items():
            shape = tuple(entry["shape"])
            if entry["kind"] == "sinusoids":
                state[name] = _sinusoids(dims["n_audio_ctx"], dims["n_audio_state"])
            elif entry["kind"] == "int8-rows":
                values = dequantize_rows(npz[f"{name}.q"], npz[f"{name}.s"], shape)
                state[name] = torch.from_numpy(values).half()
            elif entry["kind"] == "fp16":
                state[name] = torch.from_numpy(npz[name].copy()).half()
            else:
                state[name] = torch.from_numpy(npz[name].copy())
    return {"dims": dims, "model_state_dict": state, "alignment_heads": meta.get("alignment_heads")}


def expand(path: Path, out: Path) -> Path:
    """Rebuild an openai-whisper checkpoint ``.pt`` from ``encode``'s output; written atomically."""
    checkpoint = load(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would surprise whoever reads the model next
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.weights_codec", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="compress the checkpoint the worker resolves for a model name")
    enc.add_argument("out", type=Path)
    enc.add_argument("--model", default="tiny.en")
    enc.add_argument("--checkpoint", type=Path, help="a .pt to encode instead of resolving --model")
    exp = sub.add_parser("expand", help="rebuild an fp16 .pt checkpoint")
    exp.add_argument("src", type=Path)
    exp.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "encode":
        out = encode(args.checkpoint or checkpoint_path(args.model), args.out)
    else:
        out = expand(args.src, args.out)
    print(f"{out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
