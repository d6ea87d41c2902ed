"""Which device the engines run on, and whether it can run at all."""

from __future__ import annotations

import torch

from worker.errors import WorkerUnfit


def pick_device(preference: str) -> str:
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def require_usable_device(device: str) -> None:
    """Raise ``WorkerUnfit`` when a CUDA device was asked for and cannot run a kernel."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise WorkerUnfit(
            f"WHISPER_DEVICE={device} but torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA "
            "device: no GPU is visible, or its driver is too old for this build"
        )
    try:
        (torch.ones(1, device=device) + 1).item()
    except Exception as exc:
        raise WorkerUnfit(f"WHISPER_DEVICE={device} but a CUDA kernel cannot run: {exc}") from exc
