"""Which device the engines run on, whether it can run at all, and the precision a CPU computes in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from worker.errors import SettingsError, WorkerUnfit

PRECISIONS = ("auto", "fp32", "bf16")
# /proc/cpuinfo flags of a CPU that multiplies bf16 matrices in hardware: Intel AMX (Sapphire Rapids on) and
# AVX-512 BF16 (Cooper Lake, Sapphire Rapids, AMD Zen 4 on). Without them torch emulates bf16, slower than fp32.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The flags that decide Whisper's speed on a CPU, recorded beside every benchmark.
SPEED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni")
CPUINFO = Path("/proc/cpuinfo")


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


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    def speed_flags(self) -> dict[str, bool]:
        return {flag: flag in self.flags for flag in SPEED_FLAGS}


def cpu_info(text: str | None = None) -> CpuInfo:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (``text`` replaces the file); empty where there is
    none (macOS, a sandbox without /proc)."""
    if text is None:
        try:
            text = CPUINFO.read_text()
        except OSError:
            text = ""
    model, flags = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value
    return CpuInfo(model or "unknown", frozenset(flags.split()))


@dataclass(frozen=True)
class Precision:
    """What the batched engine's torch encoder computes in on CPU, and why. The decoder stays fp32 on CPU: its
    many small steps ran slower in bf16 (tiny.en, 8 windows, AMD EPYC with avx512_bf16: 3.1 s against 2.3 s)."""

    name: str  # "fp32" or "bf16" on CPU; "fp16" on a GPU, whatever the setting
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"


def choose_precision(setting: str, device: str, info: CpuInfo | None = None) -> Precision:
    """``WHISPER_CPU_PRECISION``: ``auto`` is bf16 where the CPU has native bf16 matrix support, else fp32."""
    if setting not in PRECISIONS:
        raise SettingsError(f"WHISPER_CPU_PRECISION must be one of {', '.join(PRECISIONS)}, not {setting!r}")
    if device != "cpu":
        return Precision("fp16", f"{device}: fp16 weights on a GPU (WHISPER_CPU_PRECISION applies to CPUs)")
    info = info or cpu_info()
    native = [flag for flag in BF16_FLAGS if flag in info.flags]
    if setting == "fp32":
        return Precision("fp32", "WHISPER_CPU_PRECISION=fp32")
    if setting == "bf16":
        if native:
            return Precision("bf16", f"WHISPER_CPU_PRECISION=bf16; the CPU has {', '.join(native)}")
        return Precision("bf16", "WHISPER_CPU_PRECISION=bf16, but the CPU has no native bf16: emulated, slower")
    if native:
        return Precision("bf16", f"auto: the CPU has {', '.join(native)}")
    return Precision("fp32", f"auto: the CPU has neither {' nor '.join(BF16_FLAGS)}")
