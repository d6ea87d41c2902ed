"""``python -m bench.publish``: the performance figures of ``docs/performance.md`` and prices.json's measured
throughput, generated from the benchmark results committed in ``bench/results/``, so that no figure is typed by hand.

    python -m bench.publish            # rewrite docs/performance.md's bench blocks and prices.json in place
    python -m bench.publish --check    # exit 1, naming each block that differs from its result file

The page holds each block between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, rendered from
``bench/results/NAME.json``: what was measured (machine, versions, corpus, command, date: whatever the file records)
and the table. A result file of ``bench.run``'s shape (``--json``) gets ``bench.report``'s table, the one ``make
bench`` prints; ``bench.diarization``'s gets a table of its totals. Files in ``SOURCES`` are optional (a missing one
has no block), and any other ``bench/results/*.json`` of either shape is published too; a block without its file is
an error. A file without markers in the page gets its block appended to the end of its "## Measured" section.
Paths of the machine that ran a benchmark (``/srv/shared/audio/dev``) are written from the corpus's parent on
(``audio/dev``), so that a block reads the same wherever it was run.

Each ``bench.run`` result that compares two systems or more on its corpus also gets a chart, speed against word
error rate (``bench.charts``): ``docs/img/NAME.png`` beside the page, referenced from its block with the figures as
alt text and the sha256 of the data it is drawn from. The PNG carries that digest too, so ``--check`` names a chart
drawn from other data (or missing) without comparing image bytes, and publishing redraws only such charts (drawing
needs matplotlib, the ``docs`` extra).

prices.json's ``measured`` rows and the throughput of the instance estimated from them come from ``PRICES_SOURCE``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bench import charts
from bench.report import Stats, Summary, format_costs, format_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "performance.md"
IMAGES = "img"  # the charts' folder, beside the page: docs/img
PRICES = ROOT / "worker" / "client" / "data" / "prices.json"
MODEL = "tiny.en"  # bench.run has only ever run tiny.en; files written before it recorded "model" are read so


@dataclass(frozen=True)
class Source:
    """A result file the page publishes: ``bench/results/{name}.json`` between the ``bench:{name}`` markers."""

    name: str
    title: str
    # What kind of speech the corpus is, for files written before bench.run recorded ``corpus_source``.
    corpus_kind: str = ""


SOURCES: tuple[Source, ...] = (
    Source("cpu-dev-corpus", "CPU throughput", "real recorded speech"),
    Source("cpu-dev-joined", "CPU throughput on one long recording", "real recorded speech"),
    Source("cpu-worker-latency", "CPU: the worker's latency"),
    Source("cpu-worker-diarize", "CPU: the worker with and without diarization", "real recorded speech"),
    Source(
        "cpu-diarization",
        "CPU: speaker diarization, accuracy and speed",
        "real recorded speech: meetings, and conversations joined from single-speaker clips",
    ),
    Source("gpu-h200-synthetic", "GPU throughput"),
    Source("cpu-dev-precision", "CPU precision: fp32 and bf16", "real recorded speech"),
    Source("cpu-dev-joined-precision", "CPU precision on one long recording", "real recorded speech"),
    Source("cpu-non-speech", "CPU: recordings without speech, with and without voice activity detection"),
    Source("cpu-hard", "CPU: hard audio (noise, quiet, fast, clipped)", "real recorded speech, made hard (bench.hard)"),
)


@dataclass(frozen=True)
class PricesSource:
    """Which system of which result file prices.json's measured throughput comes from, and the EC2 instance whose
    throughput is estimated from it (no such instance has been measured: the row says so)."""

    name: str = "cpu-dev-corpus"
    system: str = "worker"
    family: str = "tiny"
    estimated_instance: str = "c6a.large"
    instance_cpu: str = "2 vCPU AMD EPYC, generation not known"


PRICES_SOURCE = PricesSource()


class PublishError(RuntimeError):
    """The results and the page cannot be reconciled (a block without its file, markers broken); says what to do."""


# ---------------------------------------------------------------------------------------------- reading


def load_results(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` in ``results`` by stem, sorted: the sources the page may publish."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(results.glob("*.json"))}


def shape_of(data: dict[str, Any]) -> str | None:
    if "systems" in data:
        return "run"
    if "totals" in data and "recordings" in data:
        return "diarization"
    if "non_speech" in data:
        return "non_speech"
    return None


def summaries_of(data: dict[str, Any]) -> list[Summary]:
    """``bench.run --json``'s systems back into the summaries its table is printed from."""
    out = []
    for entry in data["systems"]:
        fields = {k: v for k, v in entry.items() if k in Summary.__dataclass_fields__}
        fields["total"] = Stats(**entry.get("total") or {})
        fields["kinds"] = {kind: Stats(**stats) for kind, stats in (entry.get("kinds") or {}).items()}
        out.append(Summary(**fields))
    return out


# ---------------------------------------------------------------------------------------------- rendering


# An absolute path of the machine that ran the benchmark: "/" not inside a word, a URL or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.+-]+/)*[\w.+-]+")


def portable(block: str) -> str:
    """``block`` with its absolute paths written from the parent of the shortest one's folder on: the corpus
    ``/srv/shared/audio/dev`` reads ``audio/dev`` and its ``/srv/shared/audio/dev/diarization`` reads
    ``audio/dev/diarization``, wherever the benchmark ran. Relative paths and URLs are left as they are."""
    found = [PurePosixPath(p) for p in _ABSOLUTE_PATH.findall(block)]
    if not found:
        return block
    base = min(found, key=lambda p: len(p.parts)).parent.parent

    def relative(match: re.Match[str]) -> str:
        path = PurePosixPath(match.group(0))
        return str(path.relative_to(base) if path.is_relative_to(base) else PurePosixPath(*path.parts[-2:]))

    return _ABSOLUTE_PATH.sub(relative, block)


def _command(command: Any) -> str:
    return shlex.join(command) if isinstance(command, list) else str(command)


def _versions(versions: dict[str, Any]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _item_sources(data: dict[str, Any]) -> str:
    """The corpus by name prefix (librispeech_..., vctk_...): which collections its items come from."""
    items = next((entry["items"] for entry in data["systems"] if entry.get("items")), [])
    counts = Counter(item["name"].split("_")[0] for item in items)
    return ", ".join(f"{prefix} ({n})" for prefix, n in sorted(counts.items()))


def _settings(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("settings"):
        return dict(data["settings"])
    # Older files: the worker's own settings are all they record.
    worker = next((e for e in data["systems"] if (e.get("extra") or {}).get("settings")), None)
    settings = dict(worker["extra"]["settings"]) if worker else {}
    settings.pop("max_idle_seconds", None)
    return settings


def _header(source: Source, path: str, data: dict[str, Any]) -> list[str]:
    # A code span, not a link: the docs site holds the page, not bench/results.
    lines = [f"**{source.title}**, from `{path}`:", ""]
    if data.get("provenance"):
        lines += [f"- provenance: {data['provenance']}"]
    return lines


def _footer(data: dict[str, Any]) -> list[str]:
    lines = []
    if data.get("command"):
        lines.append(f"- command: `{_command(data['command'])}`")
    lines.append(f"- date: {data['date']}" if data.get("date") else "- date: not recorded")
    return lines


def _fastest_reference(summaries: Sequence[Summary]) -> str:
    """When a faster reference than ``reference`` ran (cuDNN attention off), the others' speed against it."""
    walls = {s.system: s.total.wall_seconds for s in summaries if s.status == "ok" and s.total.wall_seconds}
    refs = {name: wall for name, wall in walls.items() if name.startswith("reference")}
    if len(refs) < 2:
        return ""
    best = min(refs, key=refs.__getitem__)
    others = [f"`{name}` {refs[best] / wall:.1f}x" for name, wall in walls.items() if name not in refs]
    if not others:
        return ""
    realtime = next(s.total.realtime for s in summaries if s.system == best)
    return f"Against the fastest reference, `{best}` ({realtime:.1f}x realtime): {', '.join(others)} its speed."


def chart_of(source: Source, data: dict[str, Any]) -> charts.Chart | None:
    """A ``bench.run`` result's speed-against-WER chart, with the corpus written portably; None for one system."""
    if shape_of(data) != "run":
        return None
    corpus = portable(str(data.get("corpus", "not recorded")))
    title = f"{source.title.replace('`', '')}: speed against WER"
    return charts.chart_of(source.name, title, data, corpus, data.get("model", MODEL))


def render_run(source: Source, path: str, data: dict[str, Any]) -> str:
    """A ``bench.run --json`` file: what was measured, then ``make bench``'s table."""
    summaries = summaries_of(data)
    lines = _header(source, path, data)
    lines.append(f"- machine: {data.get('machine', 'not recorded')}")
    if flags := (data.get("cpu") or {}).get("flags"):  # the instructions bf16 and int8 speed depends on
        present = ", ".join(f"`{flag}`" for flag, there in flags.items() if there)
        lines.append(f"- CPU flags: {present or 'none'} (of {', '.join(f'`{flag}`' for flag in flags)})")
    if data.get("versions"):
        lines.append(f"- versions: {_versions(data['versions'])}")
    lines.append(f"- model: `{data.get('model', MODEL)}`")
    corpus = f"- corpus: {data.get('corpus', 'not recorded')}"
    kind = data.get("corpus_source") or source.corpus_kind
    if kind:
        corpus += f"; {kind}"
    if sources := _item_sources(data):
        corpus += f"; items by name prefix: {sources}"
    lines.append(corpus)
    if settings := _settings(data):
        lines.append(f"- settings: {', '.join(f'{k} {v}' for k, v in settings.items() if v is not None)}")
    lines += _footer(data)
    # The per-job costs (AWS requests, CPU, stages) that make bench prints under the table, when recorded.
    costs = format_costs(summaries)
    lines += ["", "```text", format_table(summaries), *(["", *costs] if costs else []), "```"]
    if chart := chart_of(source, data):
        lines += ["", *charts.markdown(chart, IMAGES)]
    if sentence := _fastest_reference(summaries):
        lines += ["", sentence]
    for note in data.get("notes") or []:
        lines += ["", note]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _rate(errors: dict[str, Any] | None) -> float | None:
    return None if not errors else errors.get("rate")


def render_diarization(source: Source, path: str, data: dict[str, Any]) -> str:
    """A ``bench.diarization --json`` file: what was measured, then its totals per group."""
    machine, corpus = data.get("machine") or {}, data.get("corpus") or {}
    packages = {k: v for k, v in (machine.get("packages") or {}).items() if v != "not installed"}
    lines = _header(source, path, data)
    parts = [machine.get("cpu"), f"{machine['cores']} cores" if machine.get("cores") else None, machine.get("gpu")]
    lines.append(f"- machine: {', '.join(p for p in parts if p)}, device {machine.get('device', '?')}")
    if machine.get("python") or packages:
        lines.append(f"- versions: {_versions({'python': machine.get('python'), **packages})}")
    described = corpus.get("description", "not recorded")
    lines.append(f"- corpus: {described}" + (f"; {source.corpus_kind}" if source.corpus_kind else ""))
    diarizer, engine, settings = data.get("diarizer") or {}, data.get("engine") or {}, data.get("settings") or {}
    if diarizer:
        lines.append(
            f"- diarizer: `{diarizer['name']}`, load {diarizer['load_seconds']:.2f} s and first call "
            f"{diarizer['warmup_seconds']:.2f} s (neither counted in x realtime)"
        )
    if engine:
        lines.append(f"- transcription: {engine['engine']} `{engine['model']}` (the worker's engine)")
    if settings:
        overlap = "left out" if settings.get("der_skip_overlap") else "scored"
        lines.append(f"- DER: collar {settings['der_collar']} s, overlapping speech {overlap}")
    lines += _footer(data)
    lines += [
        "",
        "| group | audio s | speaker count right (estimated) | DER % estimated | DER % oracle "
        "| x realtime (estimated) | WER % | cpWER % (estimated turns) | cpWER % (reference turns) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in data["totals"]:
        der, realtime = t.get("der") or {}, t.get("realtime") or {}
        segments = (t.get("cpwer") or {}).get("segments") or {}
        est_rt = realtime.get("estimated")
        cells = [
            t["group"],
            f"{t['audio_seconds']:.1f}",
            (t.get("count_right") or {}).get("estimated", "-"),
            _pct(_rate(der.get("estimated"))),
            _pct(_rate(der.get("oracle"))),
            "-" if est_rt is None else f"{est_rt:.1f}x",
            _pct(_rate(t.get("wer"))),
            _pct(_rate(segments.get("estimated"))),
            _pct(_rate(segments.get("reference"))),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines += [
        "",
        "estimated: the diarizer picks the number of speakers; oracle: it is told the reference count. x realtime: "
        "audio over `diarize()`'s wall clock, the model loaded. WER ignores speakers; cpWER (meeteval) scores the "
        'words with the speakers a `"diarize": true` job gives them, from the estimated turns or from the '
        "reference turns (what attribution reaches with perfect turns).",
    ]
    return "\n".join(lines)


def render_non_speech(source: Source, path: str, data: dict[str, Any]) -> str:
    """``bench.non_speech_run``'s tiers: words written on each non-speech kind, an hour of silence, the stability
    of speech with long gaps, and the real clips with detection on and off."""
    cpu = data.get("cpu") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (data.get("versions") or {}).items())
    lines = _header(source, path, data)
    lines += [
        f"- machine: {cpu.get('model', 'not recorded')} ({', '.join(cpu.get('flags') or []) or 'no listed flags'})",
        f"- model: `{data.get('model', MODEL)}`, engine `{data.get('engine', '?')}`; {versions}",
        f"- corpus: {data.get('corpus', 'generated non-speech (bench.non_speech)')}",
        *_footer(data),
        "",
        "| recording | seconds | words, engine with VAD | words, engine without | words, `transcribe()` |",
        "|---|---|---|---|---|",
    ]
    for row in data["non_speech"]:
        cells = [row["kind"], f"{row['seconds']:.0f}"]
        cells += [str(row[k]["words"]) for k in ("engine_vad", "engine", "reference")]
        lines.append(f"| {' | '.join(cells)} |")
    hour = data.get("silent_hour") or {}
    gaps = data.get("speech_with_gaps") or {}
    corpus = data.get("dev_corpus") or {}
    lines += [
        "",
        "Words: tokens with a letter or digit (the lone full stops Whisper writes for noise are not counted).",
    ]
    if hour:
        lines.append(
            f"An hour of digital silence with VAD: {hour['work_seconds']:.1f} s of work, {hour['words']} words."
        )
    for label, title in (("vad", "with VAD"), ("no_vad", "without VAD")):
        if label in gaps:
            runs = gaps[label]
            lines.append(
                f"Speech with {gaps['gap_seconds']:.0f}-s gaps ({gaps['seconds']:.0f} s), {title}: "
                f"{runs['distinct_transcripts']} distinct transcript(s) in 6 runs (3 alone, 3 beside other jobs); "
                f"words {', '.join(str(n) for n in runs['words'])}."
            )
    if corpus:
        cells = []
        for label in ("vad", "vad_again", "no_vad", "no_vad_again"):
            if label in corpus:
                run = corpus[label]
                wer = "-" if run["wer"] is None else f"{100 * run['wer']:.1f}"
                cells.append(f"{label.replace('_', ' ')}: WER {wer}, {run['work_seconds']:.1f} s")
        lines.append(f"Real clips ({corpus['clips']}, {corpus['seconds']:.0f} s): {'; '.join(cells)}.")
    return "\n".join(lines)


RENDERERS = {"run": render_run, "diarization": render_diarization, "non_speech": render_non_speech}


def _published(results: Path) -> list[tuple[Source, str, dict[str, Any]]]:
    """(source, shape, data) of every result the page publishes, in publishing order: the declared sources, then
    any other file of a known shape."""
    loaded = load_results(results)
    declared = {s.name: s for s in SOURCES}
    names = [s.name for s in SOURCES if s.name in loaded] + [n for n in loaded if n not in declared]
    out = []
    for name in names:
        shape = shape_of(loaded[name])
        if shape is not None:  # else not a benchmark result (a file of some other tool)
            out.append((declared.get(name, Source(name, f"`{name}`")), shape, loaded[name]))
    return out


def render_blocks(results: Path) -> dict[str, str]:
    """Every block the page should hold, by name, in publishing order: the declared sources, then any other file."""
    blocks = {}
    for source, shape, data in _published(results):
        # The committed location, wherever the files were read from: a copy renders the same page.
        path = f"bench/results/{source.name}.json"
        blocks[source.name] = portable(RENDERERS[shape](source, path, data))
    return blocks


def render_charts(results: Path) -> dict[str, charts.Chart]:
    """Every chart the page's blocks reference, by name."""
    return {s.name: chart for s, _shape, data in _published(results) if (chart := chart_of(s, data))}


# ---------------------------------------------------------------------------------------------- the charts


def _chart_label(name: str) -> str:
    return f"docs/{IMAGES}/{name}.png"


def _orphans(folder: Path, expected: dict[str, charts.Chart]) -> list[Path]:
    """Charts this tool drew (their PNG carries a digest) whose result is no longer published."""
    found = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return [p for p in found if p.stem not in expected and charts.embedded_digest(p) is not None]


def chart_differences(folder: Path, expected: dict[str, charts.Chart]) -> list[str]:
    """Every chart in ``folder`` that is missing, or was drawn from other data than its result file holds now
    (compared by the digest the PNG carries, never by its bytes), or whose result is no longer published."""
    out = []
    for name, chart in expected.items():
        digest = charts.embedded_digest(folder / chart.filename)
        if digest is None:
            out.append(f"{_chart_label(name)} (chart missing)")
        elif digest != chart.digest:
            out.append(f"{_chart_label(name)} (chart drawn from other data)")
    out += [f"{_chart_label(p.stem)} (chart of no published result)" for p in _orphans(folder, expected)]
    return out


def write_charts(folder: Path, expected: dict[str, charts.Chart]) -> list[str]:
    """Draw every chart that is missing or stale, remove the orphans; what changed. A chart drawn from the same data
    is left alone: another machine's matplotlib may draw other bytes, and the digest says it is current."""
    stale = [c for c in expected.values() if charts.embedded_digest(folder / c.filename) != c.digest]
    if stale:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise PublishError(
                f"drawing {', '.join(_chart_label(c.name) for c in stale)} needs matplotlib: pip install -e '.[docs]'"
            ) from exc
    for chart in stale:
        charts.draw(chart, folder / chart.filename)
    orphans = _orphans(folder, expected)
    for path in orphans:
        path.unlink()
    return [f"{_chart_label(c.name)} (chart)" for c in stale] + [f"{_chart_label(p.stem)} (removed)" for p in orphans]


# ---------------------------------------------------------------------------------------------- the page


def _marker_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- bench:{re.escape(name)} -->\n.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)


def _wrap(name: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"


def page_names(text: str) -> list[str]:
    return re.findall(r"<!-- bench:([\w.-]+) -->", text)


def apply_blocks(text: str, blocks: dict[str, str]) -> str:
    """The page with every block rendered; blocks it lacks go at the end of its "## Measured" section."""
    missing = [name for name in page_names(text) if name not in blocks]
    if missing:
        raise PublishError(
            "docs/performance.md has blocks without a result file: "
            + ", ".join(f"bench:{n} (bench/results/{n}.json)" for n in missing)
        )
    new = []
    for name, body in blocks.items():
        pattern = _marker_re(name)
        if pattern.search(text) is None:
            new.append(name)
            continue
        if len(pattern.findall(text)) > 1:
            raise PublishError(f"docs/performance.md has the bench:{name} block twice")
        text = pattern.sub(lambda _m, n=name, b=body: _wrap(n, b), text)
    if new:
        start = text.find("\n## Measured\n")
        if start < 0:
            raise PublishError(f"docs/performance.md has no '## Measured' section for {', '.join(new)}")
        after = re.search(r"\n#{1,2} ", text[start + 1 :])
        end = start + 1 + after.start() if after else len(text)
        added = "".join(f"{_wrap(n, blocks[n])}\n\n" for n in new)
        text = text[:end].rstrip("\n") + "\n\n" + added.rstrip("\n") + "\n" + text[end:]
    return text


# ---------------------------------------------------------------------------------------------- prices.json


def _measured_rows(data: dict[str, Any], source: str, spec: PricesSource) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the measured row, the estimated instance's updates) from one ``bench.run`` result."""
    summary = next((s for s in summaries_of(data) if s.system == spec.system and s.status == "ok"), None)
    if summary is None or summary.total.realtime is None:
        raise PublishError(f"{source} has no {spec.system} result with a wall time: nothing to price")
    # One decimal, as the page's tables print it: every place shows the same figure.
    realtime = round(summary.total.realtime, 1)
    machine = data.get("machine", "not recorded")
    model = data.get("model", MODEL)
    measured = {
        "instance": "development machine",
        "family": spec.family,
        "times_realtime": realtime,
        "machine": machine,
        "source": source,
        "note": f"measured: {model} through the whole worker on the development machine ({machine}), "
        "not on an EC2 instance",
    }
    instance = {
        "reference_throughput": realtime,
        "note": f"estimate: {model}'s figure measured on the development machine ({machine}; {source}), taken as "
        f"this instance's ({spec.instance_cpu}); no {spec.estimated_instance} has been measured",
    }
    return measured, instance


def render_prices(text: str, results: Path, spec: PricesSource = PRICES_SOURCE) -> str:
    """prices.json with its measured rows and the estimated instance's figure from the result file; the rest of
    the file, hand-formatted for reading, is kept as it is."""
    path = results / f"{spec.name}.json"
    if not path.is_file():
        raise PublishError(f"prices.json's measured throughput comes from {path}, which is missing")
    source = f"bench/results/{spec.name}.json"
    measured, updates = _measured_rows(json.loads(path.read_text()), source, spec)
    block = re.search(r'("measured": \[\n)(.*?)(\n\s*\])', text, re.DOTALL)
    if block is None:
        raise PublishError('prices.json has no "measured": [ ... ] list, one row a line')
    text = text[: block.start(2)] + f"    {json.dumps(measured, ensure_ascii=False)}" + text[block.end(2) :]
    line = re.search(rf'^(\s*"{re.escape(spec.estimated_instance)}": )(\{{.*\}})(,?)$', text, re.MULTILINE)
    if line is None:
        raise PublishError(f"prices.json has no one-line {spec.estimated_instance} instance row")
    row = {**json.loads(line.group(2)), **updates}
    return text[: line.start(2)] + json.dumps(row, ensure_ascii=False) + text[line.end(2) :]


# ---------------------------------------------------------------------------------------------- main


def differences(page: str, rendered_page: str, prices: str, rendered_prices: str) -> list[str]:
    """The name of every block (and prices.json part) whose committed text is not what the results render."""
    out = []
    for name in dict.fromkeys([*page_names(rendered_page), *page_names(page)]):
        old, new = _marker_re(name).search(page), _marker_re(name).search(rendered_page)
        if old is None or new is None or old.group(0) != new.group(0):
            out.append(f"docs/performance.md bench:{name}")
    if page != rendered_page and not out:
        out.append("docs/performance.md (outside the blocks)")
    if prices != rendered_prices:
        old_data, new_data = json.loads(prices), json.loads(rendered_prices)
        if old_data.get("measured") != new_data.get("measured"):
            out.append("prices.json measured")
        instance = PRICES_SOURCE.estimated_instance
        types = [d.get("instances", {}).get("types", {}).get(instance) for d in (old_data, new_data)]
        if types[0] != types[1]:
            out.append(f"prices.json instances.types.{instance}")
        if old_data == new_data:
            out.append("prices.json (formatting)")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming what differs")
    parser.add_argument(
        "--page", type=Path, default=PAGE, help="the page (default: docs/performance.md); its charts: img/ beside it"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the result files (default: bench/results)")
    parser.add_argument("--prices", type=Path, default=PRICES)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    page, prices = args.page.read_text(), args.prices.read_text()
    folder = args.page.parent / IMAGES
    try:
        new_page = apply_blocks(page, render_blocks(args.results))
        new_prices = render_prices(prices, args.results)
        expected = render_charts(args.results)
    except PublishError as exc:
        print(f"bench.publish: {exc}", file=sys.stderr)
        return 1
    changed = differences(page, new_page, prices, new_prices)
    if args.check:
        changed += chart_differences(folder, expected)
        for what in changed:
            print(f"bench.publish: {what} differs from bench/results (run `make bench-publish`)", file=sys.stderr)
        return 1 if changed else 0
    try:
        changed += write_charts(folder, expected)
    except PublishError as exc:
        print(f"bench.publish: {exc}", file=sys.stderr)
        return 1
    if new_page != page:
        args.page.write_text(new_page)
    if new_prices != prices:
        args.prices.write_text(new_prices)
        print("bench.publish: prices.json changed; run `npm run sync` in clients/node for the Node.js client's copy")
    for what in changed:
        print(f"bench.publish: updated {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
