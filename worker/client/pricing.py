"""What a transcription costs on our workers, next to what a managed API charges for the same audio.

Throughput is audio seconds per wall-clock second (10 = ten times faster than realtime) of one worker
running openai-whisper, one file at a time. No EC2 instance type has been measured yet: the CPU figure is the
worker's on a 2-core development machine (``make bench-publish`` writes it from bench/results), taken as an
estimate for c6a.large, and every GPU figure is an estimate derived from published relative speeds. Measured
figures go in ``data/prices.json``'s ``measured`` and win over the derivation.

    throughput(model, instance) = MEASURED[(instance, family)]                      when measured
                                = reference throughput of the instance
                                  * relative speed of the model's family / relative speed of the reference family

The estimate is the marginal cost of the audio on a busy worker: EC2 bills per second, but instance start-up,
model loading and the idle tail before Batch scales to zero are not included.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from worker.client.errors import EstimateError

# The figures live in one data file that the Node.js client reads too.
PRICES_FILE: Final = Path(__file__).resolve().parent / "data" / "prices.json"
_PRICES: Final[dict[str, Any]] = json.loads(PRICES_FILE.read_text())

# A model runs at its family's speed: .en variants are the same size, large-v1/v2/v3 the same architecture.
MODEL_FAMILY: Final[dict[str, str]] = dict(_PRICES["model_family"])
GPU_RELATIVE_SPEED: Final[dict[str, float]] = dict(_PRICES["gpu_relative_speed"]["speeds"])
_PARAMETERS_M: Final[dict[str, float]] = dict(_PRICES["cpu_parameters_millions"]["parameters"])
CPU_RELATIVE_SPEED: Final[dict[str, float]] = {family: _PARAMETERS_M["tiny"] / n for family, n in _PARAMETERS_M.items()}

_ANCHOR: Final = _PRICES["gpu_anchor"]
_ANCHOR_LARGE_THROUGHPUT: Final = _ANCHOR["audio_seconds"] / _ANCHOR["wall_seconds"]


def _large_on(bandwidth_gbs: float) -> float:
    """Scale the anchor by memory bandwidth, which bounds batch-1 Whisper decoding: a crude proxy, an estimate."""
    return _ANCHOR_LARGE_THROUGHPUT * bandwidth_gbs / _ANCHOR["bandwidth_gbs"]


Basis = Literal["measured", "estimate"]
ESTIMATE_NOTE: Final = str(_PRICES["estimate_note"])


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


def _instance(name: str, row: dict[str, Any]) -> Instance:
    reference = row.get("reference_throughput") or _large_on(row["bandwidth_gbs"])
    return Instance(
        name, row["accelerator"], row["reference_family"], reference, row["on_demand_hourly"], row["spot_hourly"]
    )


INSTANCES: Final[dict[str, Instance]] = {n: _instance(n, row) for n, row in _PRICES["instances"]["types"].items()}

# Measured throughput per (instance, model family); these override the derivation above.
MEASURED: Final[dict[tuple[str, str], tuple[float, str]]] = {
    (row["instance"], row["family"]): (row["times_realtime"], row["note"]) for row in _PRICES["measured"]
}


@dataclass(frozen=True)
class ManagedPrice:
    name: str
    usd_per_minute: float
    source: str


MANAGED_PRICES: Final[tuple[ManagedPrice, ...]] = tuple(
    ManagedPrice(row["name"], row["usd_per_minute"], row["source"]) for row in _PRICES["managed"]
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
