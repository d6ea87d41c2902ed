"""What a transcription costs on our workers, next to what a managed API charges for the same audio.

Throughput is audio seconds per wall-clock second (10 = ten times faster than realtime) of one worker
running openai-whisper, one file at a time. Only one figure is measured so far (tiny.en on a 2-vCPU CPU);
every GPU figure is an estimate derived from published relative speeds, to be replaced by measured numbers
from the benchmark issue: put those in ``MEASURED`` and they win over the derivation.

    throughput(model, instance) = MEASURED[(instance, family)]                      when measured
                                = reference throughput of the instance
                                  * relative speed of the model's family / relative speed of the reference family

The estimate is the marginal cost of the audio on a busy worker: EC2 bills per second, but instance start-up,
model loading and the idle tail before Batch scales to zero are not included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from worker.client.errors import EstimateError

# -------------------------------------------------------------------------------------------- models

# A model runs at its family's speed: .en variants are the same size, large-v1/v2/v3 the same architecture.
MODEL_FAMILY: Final[dict[str, str]] = {
    "tiny": "tiny",
    "tiny.en": "tiny",
    "base": "base",
    "base.en": "base",
    "small": "small",
    "small.en": "small",
    "medium": "medium",
    "medium.en": "medium",
    "large": "large",
    "large-v1": "large",
    "large-v2": "large",
    "large-v3": "large",
    "turbo": "turbo",
    "large-v3-turbo": "turbo",
}

# GPU speed relative to large: openai-whisper's README, "Available models and languages", column "Relative speed"
# (measured by OpenAI transcribing English speech on an A100; openai-whisper 20250625).
GPU_RELATIVE_SPEED: Final[dict[str, float]] = {
    "tiny": 10.0,
    "base": 7.0,
    "small": 4.0,
    "medium": 2.0,
    "large": 1.0,
    "turbo": 8.0,
}

# CPU speed relative to tiny: inversely proportional to the parameter count, since a CPU is compute-bound where
# a GPU is not. Parameter counts from the same README table: 39 M, 74 M, 244 M, 769 M, 1550 M, 809 M.
_PARAMETERS_M: Final[dict[str, float]] = {
    "tiny": 39,
    "base": 74,
    "small": 244,
    "medium": 769,
    "large": 1550,
    "turbo": 809,
}
CPU_RELATIVE_SPEED: Final[dict[str, float]] = {family: 39 / params for family, params in _PARAMETERS_M.items()}

# ----------------------------------------------------------------------------------------- instances

# The GPU anchor: openai-whisper (v20240930) large-v2, fp16, beam 5 transcribed 13 minutes of audio in 2 min 23 s
# on an RTX 3070 Ti 8 GB (faster-whisper's README, "Large-v2 model on GPU" benchmark): 780 / 143 = 5.45x realtime.
# Our worker decodes greedily by default (beam_size null), which is faster than beam 5: the estimates are cautious.
_ANCHOR_LARGE_THROUGHPUT: Final = 780 / 143
_ANCHOR_BANDWIDTH_GBS: Final = 608  # RTX 3070 Ti memory bandwidth, NVIDIA's specifications


def _large_on(bandwidth_gbs: float) -> float:
    """Scale the anchor by memory bandwidth, which bounds batch-1 Whisper decoding: a crude proxy, an estimate."""
    return _ANCHOR_LARGE_THROUGHPUT * bandwidth_gbs / _ANCHOR_BANDWIDTH_GBS


Basis = Literal["measured", "estimate"]
ESTIMATE_NOTE: Final = "estimate, to be replaced by measured numbers"


@dataclass(frozen=True)
class Instance:
    """An EC2 instance type a worker can run on, with its speed reference and USD hourly prices (us-east-1, Linux)."""

    name: str
    accelerator: str | None  # None: CPU only
    reference_family: str  # the model family ``reference_throughput`` is for
    reference_throughput: float
    on_demand_hourly: float
    spot_hourly: float

    @property
    def relative_speed(self) -> dict[str, float]:
        return GPU_RELATIVE_SPEED if self.accelerator else CPU_RELATIVE_SPEED


# On-demand: AWS EC2 on-demand price list, us-east-1, Linux (aws.amazon.com/ec2/pricing/on-demand; check it for
# your region). Spot: a typical us-east-1 spot price, an approximation only (spot prices move hourly and by zone;
# `aws ec2 describe-spot-price-history --instance-types ...` gives today's).
INSTANCES: Final[dict[str, Instance]] = {
    instance.name: instance
    for instance in (
        # 2 vCPU AMD EPYC: the CPU family of the VM our tiny.en figure was measured on (generation not known).
        Instance("c6a.large", None, "tiny", 14.6, on_demand_hourly=0.0765, spot_hourly=0.035),
        # NVIDIA T4 16 GB, 320 GB/s: 5.45 x 320/608 = 2.9x for large.
        Instance("g4dn.xlarge", "NVIDIA T4", "large", _large_on(320), on_demand_hourly=0.526, spot_hourly=0.22),
        # NVIDIA A10G 24 GB, 600 GB/s: 5.45 x 600/608 = 5.4x for large.
        Instance("g5.xlarge", "NVIDIA A10G", "large", _large_on(600), on_demand_hourly=1.006, spot_hourly=0.42),
        # NVIDIA L4 24 GB, 300 GB/s: 5.45 x 300/608 = 2.7x for large (its extra compute helps the encoder only).
        Instance("g6.xlarge", "NVIDIA L4", "large", _large_on(300), on_demand_hourly=0.8048, spot_hourly=0.36),
        # NVIDIA V100 16 GB, 900 GB/s: 5.45 x 900/608 = 8.1x for large.
        Instance("p3.2xlarge", "NVIDIA V100", "large", _large_on(900), on_demand_hourly=3.06, spot_hourly=0.95),
    )
}

# Measured throughput per (instance, model family); these override the derivation above.
MEASURED: Final[dict[tuple[str, str], tuple[float, str]]] = {
    # tiny.en through the whole worker (fetch, decode, transcribe, store; 8 messages at once, CTranslate2 int8) on
    # `make bench`'s 709 s corpus on a 2-vCPU AMD EPYC VM, 2026: 14.6x realtime (openai-whisper's transcribe()
    # file after file: 9.3x on the same audio).
    ("c6a.large", "tiny"): (14.6, "measured: tiny.en through the worker on a 2-vCPU AMD EPYC machine (make bench)"),
}

# --------------------------------------------------------------------------------------- managed APIs


@dataclass(frozen=True)
class ManagedPrice:
    name: str
    usd_per_minute: float
    source: str


MANAGED_PRICES: Final[tuple[ManagedPrice, ...]] = (
    # OpenAI's price list (openai.com/api/pricing), as of 2026: whisper-1 at $0.006 per minute of audio.
    ManagedPrice("OpenAI whisper-1", 0.006, "openai.com/api/pricing, as of 2026"),
    # Amazon Transcribe batch, standard, tier 1 (first 250,000 min/month), us-east-1: $0.024 per minute, as of 2026.
    ManagedPrice("Amazon Transcribe", 0.024, "aws.amazon.com/transcribe/pricing, us-east-1, as of 2026"),
)

# ------------------------------------------------------------------------------------------ estimate


@dataclass(frozen=True)
class ManagedComparison:
    name: str
    cost_usd: float
    source: str


@dataclass(frozen=True)
class Throughput:
    times_realtime: float  # audio seconds per wall second
    basis: Basis
    note: str


@dataclass(frozen=True)
class CostEstimate:
    duration_seconds: float
    model: str
    instance_type: str
    spot: bool
    throughput: Throughput
    instance_seconds: float  # wall-clock seconds of the instance spent on this audio
    gpu_seconds: float  # the same on a GPU instance, 0 on a CPU-only one
    hourly_usd: float
    cost_usd: float
    managed: tuple[ManagedComparison, ...]


def family_of(model: str) -> str:
    try:
        return MODEL_FAMILY[model.lower()]
    except KeyError:
        raise EstimateError(f"no throughput figure for model {model!r}; known: {', '.join(MODEL_FAMILY)}") from None


def instance(instance_type: str) -> Instance:
    try:
        return INSTANCES[instance_type.lower()]
    except KeyError:
        known = ", ".join(INSTANCES)
        raise EstimateError(f"unknown instance type {instance_type!r}; priced instance types: {known}") from None


def throughput(model: str, instance_type: str) -> Throughput:
    """Audio seconds per wall second for this model on this instance, and whether it was measured."""
    family, inst = family_of(model), instance(instance_type)
    measured = MEASURED.get((inst.name, family))
    if measured is not None:
        return Throughput(measured[0], "measured", measured[1])
    speed = inst.relative_speed
    factor = inst.reference_throughput * speed[family] / speed[inst.reference_family]
    return Throughput(factor, "estimate", ESTIMATE_NOTE)


def estimate_cost(
    duration_seconds: float, model: str = "base", instance_type: str = "g5.xlarge", spot: bool = False
) -> CostEstimate:
    """Cost of transcribing ``duration_seconds`` of audio, with the managed APIs' price for the same audio."""
    if not duration_seconds > 0:
        raise EstimateError(f"duration must be positive, got {duration_seconds!r} seconds")
    inst = instance(instance_type)
    speed = throughput(model, inst.name)
    seconds = duration_seconds / speed.times_realtime
    hourly = inst.spot_hourly if spot else inst.on_demand_hourly
    return CostEstimate(
        duration_seconds=float(duration_seconds),
        model=model.lower(),
        instance_type=inst.name,
        spot=spot,
        throughput=speed,
        instance_seconds=seconds,
        gpu_seconds=seconds if inst.accelerator else 0.0,
        hourly_usd=hourly,
        cost_usd=seconds / 3600 * hourly,
        managed=tuple(
            ManagedComparison(p.name, duration_seconds / 60 * p.usd_per_minute, p.source) for p in MANAGED_PRICES
        ),
    )


# ------------------------------------------------------------------------------------------ durations

_UNITS_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_CLOCK_RE = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``45m``, ``1h30m``, ``1.5h``, ``01:30:00``, ``30:00`` or a plain ``5400``."""
    value = text.strip().lower().replace(" ", "")
    seconds: float | None = None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif (clock := _CLOCK_RE.fullmatch(value)) is not None:
        hours, minutes, secs = clock.groups()
        if float(secs) < 60 and (hours is None or int(minutes) < 60):
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    elif value and (units := _UNITS_RE.fullmatch(value)) is not None:
        hours, minutes, secs = (float(part or 0) for part in units.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds is None:
        raise EstimateError(
            f"cannot read duration {text!r}: use e.g. 90s, 45m, 1h30m, 1.5h, 01:30:00 or a number of seconds"
        )
    if seconds <= 0:
        raise EstimateError(f"duration must be positive, got {text!r}")
    return seconds
