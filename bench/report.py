"""From each system's outcome to one plain-text table: speed, accuracy and memory side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.wer import corpus_wer

KINDS = ("clip", "long")
KIND_LABELS = {"clip": "clips", "long": "long"}
LEGEND = (
    "wall: transcription with the model loaded (worker: first message sent -> last result.json, fetch/decode/store "
    "included; one message at a time: the sum of each message's send -> result.json)",
    "x realtime: audio s / wall s; vs reference: reference wall / wall (above 1 is faster)",
    "WER: over all words of the output, both sides through whisper's EnglishTextNormalizer",
    "RSS: peak resident memory of the system's own process (worker: the whisper-worker process)",
    "load: model load; for the worker, cold start: process spawn -> first result.json",
)


@dataclass
class Stats:
    """Numbers for a set of items: the whole corpus or one kind."""

    items: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float | None = None
    wer: float | None = None
    failed: int = 0

    @property
    def realtime(self) -> float | None:
        if not self.wall_seconds:
            return None
        return self.audio_seconds / self.wall_seconds


@dataclass
class Summary:
    system: str
    status: str = "ok"
    detail: str = ""
    total: Stats = field(default_factory=Stats)
    kinds: dict[str, Stats] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    load_seconds: float | None = None
    load_label: str = "load"
    vs_reference: float | None = None
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _stats(items: Sequence[dict[str, Any]], outcome: dict[str, Any], indexes: list[int], wall: float | None) -> Stats:
    texts, errors = outcome.get("texts") or [], outcome.get("errors") or []
    stats = Stats(items=len(indexes), audio_seconds=sum(items[i]["seconds"] for i in indexes), wall_seconds=wall)
    stats.failed = sum(1 for i in indexes if i >= len(texts) or texts[i] is None or (i < len(errors) and errors[i]))
    if indexes and texts:
        # A failed item counts as all words deleted: a system does not get a better WER by failing.
        stats.wer = corpus_wer([items[i]["text"] for i in indexes], [texts[i] or "" for i in indexes])
    return stats


def summarise(
    system: str, items: Sequence[dict[str, Any]], outcome: dict[str, Any], rss_mb: float | None = None
) -> Summary:
    """``items``: the (repeated) corpus with references; ``outcome``: what the system's process wrote."""
    summary = Summary(system, status=outcome.get("status", "error"), detail=outcome.get("detail", ""))
    summary.extra = dict(outcome.get("extra") or {})
    if summary.status != "ok":
        return summary
    summary.load_seconds = outcome.get("load_seconds")
    summary.load_label = outcome.get("load_label", "load")
    summary.peak_rss_mb = outcome.get("peak_rss_mb") or rss_mb
    summary.total = _stats(items, outcome, list(range(len(items))), outcome.get("wall_seconds"))
    per_item = outcome.get("item_seconds") or []
    for kind in KINDS:
        indexes = [i for i, item in enumerate(items) if item["kind"] == kind]
        if not indexes:
            continue
        known = [per_item[i] for i in indexes if i < len(per_item) and per_item[i] is not None]
        wall = sum(known) if len(known) == len(indexes) else None
        if len(indexes) == len(items):  # one kind only: its wall is the whole run's, timed per item or not
            wall = summary.total.wall_seconds
        summary.kinds[kind] = _stats(items, outcome, indexes, wall)
    texts, errors = outcome.get("texts") or [], outcome.get("errors") or []
    for i, item in enumerate(items):
        error = errors[i] if i < len(errors) else "no result"
        if error or i >= len(texts):
            summary.errors.append(f"{item['name']}: {error}")
    return summary


def add_ratios(summaries: list[Summary], reference: str = "reference") -> None:
    """``vs_reference``: how many times faster than the reference system (wall over wall); a diarizing worker's
    ``extra["vs_worker"]``: its speed as a share of the plain worker's, the cost of diarization end to end."""
    worker = next((s for s in summaries if s.system == "worker" and s.status == "ok"), None)
    for s in summaries:
        if s.extra.get("diarize") and s.status == "ok" and worker and worker.total.wall_seconds:
            s.extra["vs_worker"] = worker.total.wall_seconds / s.total.wall_seconds if s.total.wall_seconds else None
    base = next((s for s in summaries if s.system == reference and s.status == "ok"), None)
    if base is None or not base.total.wall_seconds:
        return
    for s in summaries:
        if s.status == "ok" and s.total.wall_seconds:
            s.vs_reference = base.total.wall_seconds / s.total.wall_seconds


# ---------------------------------------------------------------------------------------------- text


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


COLUMNS = (  # (header, width, align)
    ("system", 24, "<"),
    ("audio s", 9, ">"),
    ("wall s", 9, ">"),
    ("x realtime", 11, ">"),
    ("vs reference", 13, ">"),
    ("WER %", 7, ">"),
    ("RSS MB", 8, ">"),
    ("load s", 8, ">"),
    ("notes", 0, "<"),
)


def _line(cells: Sequence[str]) -> str:
    parts = [f"{c:{align}{width}}" if width else c for c, (_, width, align) in zip(cells, COLUMNS, strict=True)]
    return "  ".join(parts).rstrip()


def _notes(s: Summary, stats: Stats) -> str:
    notes = []
    if stats.failed:
        notes.append(f"{stats.failed} FAILED")
    if s.load_label != "load" and stats is s.total:
        notes.append(f"load = {s.load_label}")
    if s.extra.get("aws_latency_ms") and stats is s.total:
        notes.append(f"+{s.extra['aws_latency_ms']:g} ms per AWS request")
    if s.extra.get("one_by_one") and stats is s.total:
        notes.append("one message at a time")
        latency = s.extra.get("latency_seconds")
        if latency:
            notes.append(f"latency median {latency['median']:.2f} s, p95 {latency['p95']:.2f} s")
    if s.extra.get("diarize") and stats is s.total:
        notes.append("diarize: true")
        if s.extra.get("vs_worker"):
            notes.append(f"{s.extra['vs_worker']:.2f}x worker's speed")
        found = [n for n in s.extra.get("speakers_found") or [] if n is not None]
        if found:
            notes.append(f"speakers found: {', '.join(f'{n} in {found.count(n)}' for n in sorted(set(found)))}")
    return "; ".join(notes)


def _row(label: str, s: Summary, stats: Stats, vs: float | None, whole: bool) -> str:
    return _line(
        [
            label,
            _num(stats.audio_seconds, ".1f"),
            _num(stats.wall_seconds, ".1f"),
            _num(stats.realtime, ".1f", "x"),
            _num(vs, ".2f", "x"),
            _num(None if stats.wer is None else 100 * stats.wer, ".1f"),
            _num(s.peak_rss_mb, ".0f") if whole else "",
            _num(s.load_seconds, ".2f") if whole else "",
            _notes(s, stats),
        ]
    )


def format_table(summaries: Sequence[Summary]) -> str:
    """One fixed-width table: a row per system, then a row per kind of audio (clips / long) under it."""
    lines = [_line([h for h, _, _ in COLUMNS]), _line(["-" * (w or 5) for _, w, _ in COLUMNS])]
    base = {k: st for s in summaries if s.system == "reference" and s.status == "ok" for k, st in s.kinds.items()}
    for s in summaries:
        if s.status != "ok":
            detail = f": {s.detail}" if s.detail else ""
            lines.append(_line([s.system, *[""] * 7, f"{s.status}{detail}"[:160]]))
            continue
        lines.append(_row(s.system, s, s.total, s.vs_reference, True))
        for kind, stats in s.kinds.items():
            ref = base.get(kind)
            vs = ref.wall_seconds / stats.wall_seconds if ref and ref.wall_seconds and stats.wall_seconds else None
            lines.append(_row(f"  {KIND_LABELS[kind]}", s, stats, vs, False))
    return "\n".join(lines)


# the system's own process (one-process systems); the worker, the emulated AWS, the request counter, the bench
CPU_USERS = ("process", "worker", "moto", "proxy", "harness")
# forward passes, windows in them, windows sampled again, pieces decoded again on their own
ENGINE_COUNTERS = ("passes", "windows", "sampled_windows", "pieces_again")


def format_costs(summaries: Sequence[Summary]) -> list[str]:
    """Per job, for each worker system: AWS requests, the job thread's CPU, wall time by stage, and the CPU each
    process used; for a system in one process, its CPU; for every system with them, the engine's counters."""
    lines = []
    for s in summaries:
        counters = s.extra.get("engine")
        if s.status == "ok" and counters:
            listed = ", ".join(f"{name} {counters[name]:g}" for name in ENGINE_COUNTERS if name in counters)
            lines.append(f"{s.system}, the engine's counters (warm-up included): {listed}")
        costs = s.extra.get("per_job")
        cpu = s.extra.get("cpu_seconds")
        if s.status != "ok":
            continue
        if not costs:  # a system in one process: its CPU alone
            if cpu:
                lines.append(f"{s.system}: {_cpu_line(cpu)}")
            continue
        latency = s.extra.get("aws_latency_ms") or 0
        ops = ", ".join(f"{op} {n:g}" for op, n in costs["requests_by_operation"].items())
        stages = ", ".join(f"{stage} {ms:.0f}" for stage, ms in costs["stages_ms_mean"].items())
        lines += [
            f"{s.system} per job (AWS latency {latency:g} ms): {costs['requests']:g} AWS requests ({ops}); "
            f"job thread CPU {costs['cpu_ms_mean']} ms mean, {costs['cpu_ms_median']} ms median",
            f"  wall ms by stage (mean): {stages}",
        ]
        if costs.get("stages_cpu_ms_mean"):
            cpu_stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in costs["stages_cpu_ms_mean"].items())
            lines.append(f"  job thread CPU ms by stage (mean): {cpu_stages}")
        if cpu:
            lines.append(f"  {_cpu_line(cpu)}")
    return lines


def _cpu_line(cpu: dict[str, Any]) -> str:
    used = ", ".join(f"{name} {cpu[name]:.1f} s" for name in CPU_USERS if name in cpu)
    return f"CPU while the corpus ran: {used}, of {cpu['cores']} cores x {cpu['wall']:.1f} s"


def format_report(summaries: Sequence[Summary], machine: str, corpus: str, *, max_errors: int = 5) -> str:
    parts = [f"machine: {machine}", f"corpus:  {corpus}", "", format_table(summaries), ""]
    parts += [f"  {line}" for line in LEGEND]
    costs = format_costs(summaries)
    if costs:
        parts += ["", *costs]
    for s in summaries:
        for error in s.errors[:max_errors]:
            parts.append(f"{s.system} error: {error}")
        if len(s.errors) > max_errors:
            parts.append(f"{s.system}: {len(s.errors) - max_errors} more errors")
    return "\n".join(parts)
