"""``python -m bench.publish``: README's performance figures and prices.json's measured throughput, generated from
the benchmark results committed in ``bench/results/``, so that no figure is typed by hand.

    python -m bench.publish            # rewrite README.md's bench blocks and prices.json in place
    python -m bench.publish --check    # exit 1, naming each block that differs from its result file

README holds each block between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, rendered from
``bench/results/NAME.json``: what was measured (machine, versions, corpus, command, date: whatever the file records)
and the table. A result file of ``bench.run``'s shape (``--json``) gets ``bench.report``'s table, the one ``make
bench`` prints; ``bench.diarization``'s gets a table of its totals. Files in ``SOURCES`` are optional (a missing one
has no block), and any other ``bench/results/*.json`` of either shape is published too; a block without its file is
an error. A file without markers in README gets its block appended to the end of "### Measured".

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
from pathlib import Path
from typing import Any

from bench.report import Stats, Summary, format_costs, format_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
PRICES = ROOT / "worker" / "client" / "data" / "prices.json"
MODEL = "tiny.en"  # bench.run has only ever run tiny.en; files written before it recorded "model" are read so


@dataclass(frozen=True)
class Source:
    """A result file README publishes: ``bench/results/{name}.json`` between the ``bench:{name}`` markers."""

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
    """The results and README cannot be reconciled (a block without its file, markers broken); says what to do."""


# ---------------------------------------------------------------------------------------------- reading


def load_results(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` in ``results`` by stem, sorted: the sources README may publish."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(results.glob("*.json"))}


def shape_of(data: dict[str, Any]) -> str | None:
    if "systems" in data:
        return "run"
    if "totals" in data and "recordings" in data:
        return "diarization"
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
    lines = [f"**{source.title}**, from [`{path}`]({path}):", ""]
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


def render_run(source: Source, path: str, data: dict[str, Any]) -> str:
    """A ``bench.run --json`` file: what was measured, then ``make bench``'s table."""
    summaries = summaries_of(data)
    lines = _header(source, path, data)
    lines.append(f"- machine: {data.get('machine', 'not recorded')}")
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


RENDERERS = {"run": render_run, "diarization": render_diarization}


def render_blocks(results: Path) -> dict[str, str]:
    """Every block README should hold, by name, in publishing order: the declared sources, then any other file."""
    loaded = load_results(results)
    declared = {s.name: s for s in SOURCES}
    names = [s.name for s in SOURCES if s.name in loaded] + [n for n in loaded if n not in declared]
    blocks = {}
    for name in names:
        data, shape = loaded[name], shape_of(loaded[name])
        if shape is None:
            continue  # not a benchmark result (a file of some other tool)
        source = declared.get(name, Source(name, f"`{name}`"))
        # The committed location, wherever the files were read from: a copy renders the same README.
        blocks[name] = RENDERERS[shape](source, f"bench/results/{name}.json", data)
    return blocks


# ---------------------------------------------------------------------------------------------- README


def _marker_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- bench:{re.escape(name)} -->\n.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)


def _wrap(name: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"


def readme_names(text: str) -> list[str]:
    return re.findall(r"<!-- bench:([\w.-]+) -->", text)


def apply_blocks(text: str, blocks: dict[str, str]) -> str:
    """README with every block rendered; blocks README lacks go at the end of its "### Measured" subsection."""
    missing = [name for name in readme_names(text) if name not in blocks]
    if missing:
        raise PublishError(
            "README has blocks without a result file: "
            + ", ".join(f"bench:{n} (bench/results/{n}.json)" for n in missing)
        )
    new = []
    for name, body in blocks.items():
        pattern = _marker_re(name)
        if pattern.search(text) is None:
            new.append(name)
            continue
        if len(pattern.findall(text)) > 1:
            raise PublishError(f"README has the bench:{name} block twice")
        text = pattern.sub(lambda _m, n=name, b=body: _wrap(n, b), text)
    if new:
        start = text.find("\n### Measured\n")
        if start < 0:
            raise PublishError(f"README has no '### Measured' subsection for {', '.join(new)}")
        after = re.search(r"\n#{1,3} ", text[start + 1 :])
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
    # One decimal, as README's tables print it: every place shows the same figure.
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


def differences(readme: str, rendered_readme: str, prices: str, rendered_prices: str) -> list[str]:
    """The name of every block (and prices.json part) whose committed text is not what the results render."""
    out = []
    for name in dict.fromkeys([*readme_names(rendered_readme), *readme_names(readme)]):
        old, new = _marker_re(name).search(readme), _marker_re(name).search(rendered_readme)
        if old is None or new is None or old.group(0) != new.group(0):
            out.append(f"README.md bench:{name}")
    if readme != rendered_readme and not out:
        out.append("README.md (outside the blocks)")
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
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the result files (default: bench/results)")
    parser.add_argument("--prices", type=Path, default=PRICES)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    readme, prices = args.readme.read_text(), args.prices.read_text()
    try:
        new_readme = apply_blocks(readme, render_blocks(args.results))
        new_prices = render_prices(prices, args.results)
    except PublishError as exc:
        print(f"bench.publish: {exc}", file=sys.stderr)
        return 1
    changed = differences(readme, new_readme, prices, new_prices)
    if args.check:
        for what in changed:
            print(f"bench.publish: {what} differs from bench/results (run `make bench-publish`)", file=sys.stderr)
        return 1 if changed else 0
    if new_readme != readme:
        args.readme.write_text(new_readme)
    if new_prices != prices:
        args.prices.write_text(new_prices)
        print("bench.publish: prices.json changed; run `npm run sync` in clients/node for the Node.js client's copy")
    for what in changed:
        print(f"bench.publish: updated {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
