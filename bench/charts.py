"""Speed against word error rate, one chart per ``bench.run`` result that compares systems on one corpus: the
PNG files of ``docs/img/`` that ``bench.publish`` draws and references from docs/performance.md.

What a chart shows is a ``Chart``: plain data (title, machine, model, corpus, each system's x realtime and WER as
the tables print them), built without matplotlib. Its ``digest`` (sha256 of that data and ``STYLE``) is written in
the page's block beside the image and into the PNG itself (a ``tEXt`` chunk), so ``bench.publish --check`` tells
a stale chart by the data it was drawn from, never by PNG bytes, which differ between matplotlib and FreeType
builds. Drawing (``draw``) is deterministic on one machine: the Agg backend, matplotlib's defaults with its own
DejaVu Sans, a fixed size and dpi, and no version or date in the file. Bump ``STYLE`` when the drawing changes,
so that every chart is redrawn.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STYLE = "speed-wer/1"
KEY = "bench-chart-data"  # the PNG text chunk that holds the digest
SIZE_INCHES = (9.0, 5.6)
DPI = 120
TIMES = "\u00d7"  # the multiplication sign, as in "22.7 (times) real time"

# Who made each system: one colour and marker a family, so that ours stand apart from the others.
FAMILIES = (
    ("reference", "openai-whisper transcribe()", "#7f7f7f", "s"),
    ("faster-whisper", "faster-whisper (CTranslate2)", "#e07b00", "D"),
    ("engine", "whisper-batch (ours)", "#1f5fbf", "o"),
    ("worker", "whisper-batch (ours)", "#1f5fbf", "o"),
)
OTHER = ("other", "#2ca02c", "^")


@dataclass(frozen=True)
class Point:
    system: str
    realtime: float  # x realtime, one decimal, as the table prints it
    wer_pct: float  # WER in %, one decimal, as the table prints it


@dataclass(frozen=True)
class Chart:
    name: str  # the result file's stem: docs/img/{name}.png
    title: str
    model: str
    machine: str
    corpus: str
    points: tuple[Point, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.png"

    @property
    def log_speed(self) -> bool:
        """A log speed axis when the fastest system is 8x the slowest or more (the GPU's 779x against 50x)."""
        speeds = [p.realtime for p in self.points]
        return max(speeds) >= 8 * min(speeds)

    @property
    def digest(self) -> str:
        payload = json.dumps({"style": STYLE, **asdict(self)}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def alt(self) -> str:
        """The figures in words, for the image's alt text: a reader who cannot see it loses nothing."""
        points = "; ".join(f"{p.system} {p.realtime:.1f} times real time at {p.wer_pct:.1f} % WER" for p in self.points)
        return f"Speed against word error rate, Whisper {self.model} on {self.machine}: {points}"


def family(system: str) -> tuple[str, str, str]:
    """(legend label, colour, marker) of a system by its name's prefix."""
    for prefix, label, colour, marker in FAMILIES:
        if system == prefix or system.startswith(prefix + "-"):
            return label, colour, marker
    return OTHER


def machine_summary(machine: Any) -> str:
    """``bench.run``'s machine line as it is; a dict (cpu, cores, flags) as a line with its widest SIMD."""
    if not isinstance(machine, dict):
        return str(machine or "machine not recorded")
    flags = set(machine.get("flags") or ())
    simd = next(
        (label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags), ""
    )
    parts = [machine.get("cpu"), f"{machine['cores']} cores" if machine.get("cores") else None, simd or None]
    return ", ".join(str(p) for p in parts if p) or "machine not recorded"


def chart_of(name: str, title: str, data: dict[str, Any], corpus: str, model: str) -> Chart | None:
    """The chart of a ``bench.run`` result: every system that ran and was scored; None below two systems."""
    points = []
    for entry in data.get("systems") or []:
        total = entry.get("total") or {}
        wall, audio, wer = total.get("wall_seconds"), total.get("audio_seconds"), total.get("wer")
        if entry.get("status", "ok") != "ok" or not wall or not audio or wer is None:
            continue
        points.append(Point(entry["system"], round(audio / wall, 1), round(100 * wer, 1)))
    if len(points) < 2:
        return None
    return Chart(name, title, model, machine_summary(data.get("machine")), corpus, tuple(points))


def markdown(chart: Chart, folder: str = "img") -> list[str]:
    """The block's lines for the chart: the image with its figures as alt text, and the digest it was drawn from."""
    return [
        f"![{chart.alt()}]({folder}/{chart.filename})",
        "",
        f"<!-- chart {folder}/{chart.filename} data sha256 {chart.digest} (bench.publish --check compares it) -->",
    ]


# ---------------------------------------------------------------------------------------------- the PNG


def embedded_digest(path: Path) -> str | None:
    """The digest a chart's PNG was drawn from (its ``bench-chart-data`` text chunk); None if it has none."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    if not blob.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    at = 8
    while at + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[at : at + 4])
        kind, body = blob[at + 4 : at + 8], blob[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            value = zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, value = rest[0], rest[2:].split(b"\0", 2)[2]
            value = zlib.decompress(value) if compressed else value
        elif kind == b"IEND":
            break
        else:
            continue
        if key == KEY.encode():
            return value.decode("latin-1")
    return None


def _spread(ys: list[float], gap: float, low: float, high: float) -> list[float]:
    """Label heights (display units) near ``ys``, each ``gap`` from the next, kept within [low, high]."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    last = low - gap
    for i in order:
        placed[i] = last = max(ys[i], last + gap)
    over = last - high
    if over > 0:  # pushed past the top: shift down, keeping the gaps
        last = high + gap
        for i in reversed(order):
            placed[i] = last = min(placed[i], last - gap)
    return placed


def draw(chart: Chart, path: Path) -> None:
    """Draw ``chart`` to ``path`` (PNG), the digest in its ``bench-chart-data`` text chunk."""
    import matplotlib

    # The Agg canvas directly, not pyplot: no backend or figure state left in the process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # not the user's matplotlibrc
        matplotlib.rcParams.update(
            {"font.family": "DejaVu Sans", "font.size": 10, "svg.hashsalt": "bench", "path.simplify": False}
        )
        fig = Figure(figsize=SIZE_INCHES, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.095, 0.12, 0.59, 0.70))
        speeds = [p.realtime for p in chart.points]
        wers = [p.wer_pct for p in chart.points]
        if chart.log_speed:
            ax.set_yscale("log")
            ax.set_ylim(min(speeds) / 1.6, max(speeds) * 1.6)
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        else:
            ax.set_ylim(0, max(speeds) * 1.15)
        ax.set_xlim(0, max(wers) * 1.12)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}{TIMES}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel("word error rate (%)")
        ax.set_ylabel(f"speed ({TIMES} real time = audio s / wall s)")
        for p in chart.points:
            _label, colour, marker = family(p.system)
            ax.scatter([p.wer_pct], [p.realtime], s=70, color=colour, marker=marker, zorder=3, edgecolors="white")
        # Labels in a column right of the axes, each joined to its point: close points never overlap.
        to_display = ax.transData.transform
        ys = [float(to_display((p.wer_pct, p.realtime))[1]) for p in chart.points]
        box = ax.get_window_extent()
        gap = 2.4 * matplotlib.rcParams["font.size"] * DPI / 72
        heights = _spread(ys, gap, box.y0 + gap / 2, box.y1 - gap / 2)
        to_axes = ax.transAxes.inverted().transform
        for p, y in zip(chart.points, heights, strict=True):
            _label, colour, _marker = family(p.system)
            at = to_axes((box.x1, y))
            ax.annotate(
                f"{p.system}\n{p.realtime:.1f}{TIMES} real time, WER {p.wer_pct:.1f} %",
                xy=(p.wer_pct, p.realtime),
                xytext=(1.03, at[1]),
                textcoords="axes fraction",
                va="center",
                ha="left",
                fontsize=9,
                color="#222222",
                annotation_clip=False,
                arrowprops={
                    "arrowstyle": "-",
                    "color": colour,
                    "linewidth": 0.8,
                    "alpha": 0.7,
                    "relpos": (0, 0.5),
                    "shrinkA": 3,
                    "shrinkB": 5,
                },
            )
        ax.text(
            0.015,
            0.985,
            "↖ better: faster, fewer errors",
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=9,
            color="#555555",
        )
        families = dict.fromkeys(family(p.system) for p in chart.points)
        handles = [
            Line2D([], [], linestyle="", marker=marker, color=colour, markersize=8, label=label)
            for label, colour, marker in families
        ]
        ax.legend(handles=handles, loc="lower left", fontsize=8.5, frameon=True, framealpha=0.9)
        fig.text(0.095, 0.955, chart.title, fontsize=13, fontweight="bold", va="top")
        fig.text(
            0.095,
            0.895,
            f"Whisper {chart.model} · {chart.machine}\ncorpus: {chart.corpus}",
            fontsize=9,
            va="top",
            color="#333333",
            linespacing=1.4,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(
            path,
            format="png",
            dpi=DPI,
            metadata={"Software": None, KEY: chart.digest},
        )
