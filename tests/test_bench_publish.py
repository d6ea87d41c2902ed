"""docs/performance.md's figures and prices.json's measured throughput are generated from bench/results/*.json
(``python -m bench.publish``): the committed files agree, a changed result is caught, rendering is deterministic and
names no path of the machine that ran the benchmark."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import charts, publish, run
from worker.client import pricing

ROOT = Path(__file__).resolve().parent.parent
IMAGES = publish.PAGE.parent / publish.IMAGES


@pytest.fixture
def copy(tmp_path: Path) -> dict[str, Path]:
    """The page, prices.json and the results in a temporary directory: the tests never touch the real files."""
    results = tmp_path / "results"
    shutil.copytree(publish.RESULTS, results)
    page, prices = tmp_path / "performance.md", tmp_path / "prices.json"
    shutil.copyfile(publish.PAGE, page)
    shutil.copyfile(publish.PRICES, prices)
    # The charts beside the page, as docs/img is beside docs/performance.md.
    shutil.copytree(IMAGES, tmp_path / publish.IMAGES)
    return {"page": page, "results": results, "prices": prices, "images": tmp_path / publish.IMAGES}


def _args(paths: dict[str, Path], *extra: str) -> list[str]:
    return [*(arg for key in ("page", "results", "prices") for arg in (f"--{key}", str(paths[key]))), *extra]


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _system(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["systems"] if s["system"] == name)


def test_committed_page_and_prices_agree_with_the_results() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.publish", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{done.stderr}run `make bench-publish` (python -m bench.publish)"


def test_every_result_file_is_published_and_every_block_has_its_file() -> None:
    page = publish.PAGE.read_text()
    names = publish.page_names(page)
    assert len(names) == len(set(names))
    assert set(names) == set(publish.render_blocks(publish.RESULTS))
    assert {"cpu-dev-corpus", "cpu-worker-diarize", "cpu-diarization", "gpu-h200-synthetic"} <= set(names)
    # The section names what each figure came from; the GPU table says it was transcribed, not measured into JSON.
    for name in names:
        assert f"from `bench/results/{name}.json`:" in page
    gpu = publish.render_blocks(publish.RESULTS)["gpu-h200-synthetic"]
    assert "provenance: Transcribed from the table" in gpu


def test_a_changed_number_fails_the_check_naming_its_block(
    copy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish.main(_args(copy, "--check")) == 0

    _edit(copy["results"] / "gpu-h200-synthetic.json", lambda d: _system(d, "engine")["total"].update(wer=0.25))
    assert publish.main(_args(copy, "--check")) == 1
    err = capsys.readouterr().err
    assert "bench:gpu-h200-synthetic" in err
    assert "cpu-dev-corpus" not in err and "prices.json" not in err

    # The CPU worker's wall time is also prices.json's measured throughput: both are named.
    _edit(copy["results"] / "cpu-dev-corpus.json", lambda d: _system(d, "worker")["total"].update(wall_seconds=20.0))
    assert publish.main(_args(copy, "--check")) == 1
    err = capsys.readouterr().err
    assert "bench:cpu-dev-corpus" in err
    assert "prices.json measured" in err and "prices.json instances.types.c6a.large" in err

    _edit(copy["results"] / "cpu-diarization.json", lambda d: d["totals"][0]["der"]["estimated"].update(rate=0.5))
    assert publish.main(_args(copy, "--check")) == 1
    assert "bench:cpu-diarization" in capsys.readouterr().err

    # Publishing brings the page and prices.json back in line, with the new figures in them.
    assert publish.main(_args(copy)) == 0
    assert publish.main(_args(copy, "--check")) == 0
    worker = _system(json.loads((copy["results"] / "cpu-dev-corpus.json").read_text()), "worker")
    expected = round(worker["total"]["audio_seconds"] / 20.0, 1)
    assert json.loads(copy["prices"].read_text())["measured"][0]["times_realtime"] == expected
    assert "| 50.0 |" in copy["page"].read_text()  # the diarization table's DER


def test_a_hand_edited_figure_in_the_page_fails_the_check(
    copy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    text = copy["page"].read_text()
    assert text.count("779.3x") == 1
    copy["page"].write_text(text.replace("779.3x", "800.0x"))
    assert publish.main(_args(copy, "--check")) == 1
    assert "bench:gpu-h200-synthetic" in capsys.readouterr().err


def test_rendering_is_deterministic(copy: dict[str, Path]) -> None:
    first = publish.render_blocks(copy["results"])
    assert publish.render_blocks(copy["results"]) == first
    assert publish.render_blocks(publish.RESULTS) == first  # a copy renders what the committed files do
    page, prices = copy["page"].read_text(), copy["prices"].read_text()
    assert publish.main(_args(copy)) == 0
    assert (copy["page"].read_text(), copy["prices"].read_text()) == (page, prices)  # nothing to change
    assert publish.render_prices(prices, copy["results"]) == prices


def test_a_block_without_its_file_is_an_error(copy: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (copy["results"] / "gpu-h200-synthetic.json").unlink()
    page = copy["page"].read_text()
    assert publish.main(_args(copy)) == 1
    assert "bench:gpu-h200-synthetic" in capsys.readouterr().err
    assert copy["page"].read_text() == page


def test_a_new_result_file_gets_its_block_at_the_end_of_measured(copy: dict[str, Path]) -> None:
    # An optional source that is absent has no block; once its file is there, publishing adds one.
    assert "bench:cpu-worker-latency" not in copy["page"].read_text()
    shutil.copyfile(copy["results"] / "cpu-worker-diarize.json", copy["results"] / "cpu-worker-latency.json")
    assert publish.main(_args(copy, "--check")) == 1
    assert publish.main(_args(copy)) == 0
    text = copy["page"].read_text()
    measured, after = text.index("\n## Measured\n"), text.index("\n## Cold start\n")
    assert measured < text.index("<!-- bench:cpu-worker-latency -->") < after
    assert "**CPU: the worker's latency**" in text
    assert publish.main(_args(copy, "--check")) == 0


def test_blocks_name_machine_command_and_corpus_portably() -> None:
    blocks = publish.render_blocks(publish.RESULTS)
    for results in publish.RESULTS.glob("*.json"):  # committed results name corpora and files portably too
        assert not re.search(r'"/(work|home|root|tmp|Users)/', results.read_text()), results.name
    # A results file written on another machine still publishes portably.
    assert publish.portable("/work/shared/audio/dev (51 clips)") == "audio/dev (51 clips)"
    for name, block in blocks.items():
        assert not publish._ABSOLUTE_PATH.search(block), (name, publish._ABSOLUTE_PATH.search(block))
        for line in ("- machine: ", "- corpus: ", "- date: "):
            assert line in block, (name, line)
    assert "- corpus: audio/dev (51 clips, 0 long; 312.2 s of audio)" in blocks["cpu-dev-corpus"]
    assert "--corpus audio/dev --json bench/results/cpu-dev-corpus.json`" in blocks["cpu-dev-corpus"]
    assert "- corpus: audio/dev/diarization (2 recordings" in blocks["cpu-diarization"]
    assert "--recordings audio/dev/diarization --clips audio/dev " in blocks["cpu-diarization"]
    assert "- corpus: .cache/bench-corpus (41 clips" in blocks["cpu-synthetic"]
    assert publish.portable("s3://b/k https://x.example/a/b bench/r.json 1/2 /a/b/c /a/b/c/d") == (
        "s3://b/k https://x.example/a/b bench/r.json 1/2 b/c b/c/d"
    )


def test_prices_measured_row_names_the_machine_and_c6a_large_is_an_estimate_from_it() -> None:
    data = json.loads(publish.PRICES.read_text())
    result = json.loads((publish.RESULTS / "cpu-dev-corpus.json").read_text())
    worker = _system(result, "worker")["total"]
    figure = round(worker["audio_seconds"] / worker["wall_seconds"], 1)
    (row,) = data["measured"]
    assert row["instance"] not in pricing.INSTANCES  # not measured on any priced instance type
    assert (row["times_realtime"], row["machine"], row["source"]) == (
        figure,
        result["machine"],
        "bench/results/cpu-dev-corpus.json",
    )
    c6a = pricing.throughput("tiny.en", "c6a.large")
    assert (c6a.basis, c6a.times_realtime) == ("estimate", figure)
    assert data["instances"]["types"]["c6a.large"]["note"].startswith("estimate:")


def test_run_json_records_what_publish_states() -> None:
    argv = ["--systems", "engine", "--json", "out.json"]
    info = run.run_metadata(run.parse_args(argv), argv)
    assert info["command"] == ["python", "-m", "bench.run", *argv]
    assert info["versions"]["python"] and "torch" in info["versions"]
    assert info["date"] and info["model"] == "tiny.en"
    settings = {"device": "cpu", "repeat": 1, "concurrency": 16, "engine": None, "precision": "auto"}
    assert info["settings"] == settings
    assert info["corpus_source"].startswith("built-in: synthetic")


# ---------------------------------------------------------------------------------------------- charts


def _block(page: str, name: str) -> str:
    found = publish._marker_re(name).search(page)
    assert found, name
    return found.group(0)


def test_charts_exist_are_referenced_and_state_their_numbers() -> None:
    expected = publish.render_charts(publish.RESULTS)
    # Every result that compares systems on one corpus has its chart: the dev clips and the joined recording too.
    assert {"cpu-dev-corpus", "cpu-dev-joined", "gpu-h200-synthetic"} <= set(expected)
    assert "cpu-diarization" not in expected  # not a bench.run result: no systems to compare
    page = publish.PAGE.read_text()
    for name, chart in expected.items():
        png = IMAGES / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG"), name
        assert charts.embedded_digest(png) == chart.digest, f"{name}: run `make bench-publish`"
        block = _block(page, name)
        assert f"](img/{name}.png)" in block and f"data sha256 {chart.digest}" in block
        assert chart.machine in block and chart.model in block
    # The alt text states the figures the table prints.
    corpus = _block(page, "cpu-dev-corpus")
    result = json.loads((publish.RESULTS / "cpu-dev-corpus.json").read_text())
    engine = _system(result, "engine")["total"]
    realtime, wer = engine["audio_seconds"] / engine["wall_seconds"], 100 * engine["wer"]
    assert f"engine {realtime:.1f} times real time at {wer:.1f} % WER" in corpus
    assert f"{realtime:.1f}x" in corpus  # the table's figure, the same number
    names = {p.system for p in expected["cpu-dev-joined"].points}
    assert {"reference", "faster-whisper", "engine", "worker"} <= names


def test_a_changed_figure_makes_its_chart_stale(copy: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    committed = copy["images"] / "cpu-dev-joined.png"
    old_png = committed.read_bytes()
    _edit(copy["results"] / "cpu-dev-joined.json", lambda d: _system(d, "engine")["total"].update(wall_seconds=30.0))
    assert publish.main(_args(copy, "--check")) == 1
    err = capsys.readouterr().err
    assert "docs/img/cpu-dev-joined.png (chart drawn from other data)" in err
    assert "bench:cpu-dev-joined" in err
    assert "cpu-dev-corpus" not in err  # the other charts are current

    # Publishing redraws that chart alone, from the new figure.
    assert publish.main(_args(copy)) == 0
    assert "docs/img/cpu-dev-joined.png (chart)" in capsys.readouterr().out
    chart = publish.render_charts(copy["results"])["cpu-dev-joined"]
    assert charts.embedded_digest(committed) == chart.digest
    assert "engine 12.4 times real time" in copy["page"].read_text()
    assert publish.main(_args(copy, "--check")) == 0

    # The page regenerated but the old PNG committed with it: the chart alone is named.
    committed.write_bytes(old_png)
    assert publish.main(_args(copy, "--check")) == 1
    err = capsys.readouterr().err
    assert "docs/img/cpu-dev-joined.png (chart drawn from other data)" in err
    assert "bench:" not in err


def test_a_missing_or_orphaned_chart_fails_the_check(copy: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    (copy["images"] / "cpu-dev-corpus.png").unlink()
    shutil.copyfile(copy["images"] / "cpu-synthetic.png", copy["images"] / "cpu-gone.png")
    (copy["images"] / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a chart of ours: left alone
    assert publish.main(_args(copy, "--check")) == 1
    err = capsys.readouterr().err
    assert "docs/img/cpu-dev-corpus.png (chart missing)" in err
    assert "docs/img/cpu-gone.png (chart of no published result)" in err
    assert "photo.png" not in err
    assert publish.main(_args(copy)) == 0
    assert not (copy["images"] / "cpu-gone.png").exists() and (copy["images"] / "photo.png").exists()
    assert publish.main(_args(copy, "--check")) == 0


def test_chart_drawing_is_deterministic_and_carries_its_digest(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = publish.render_charts(publish.RESULTS)["cpu-dev-corpus"]
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    charts.draw(chart, first)
    charts.draw(chart, second)
    assert first.read_bytes() == second.read_bytes()
    assert charts.embedded_digest(first) == chart.digest
    assert b"matplotlib" not in first.read_bytes()  # no Software version in the file
    # The digest covers what is drawn: any figure, the machine or the title changes it.
    moved = chart.points[0].__class__(chart.points[0].system, chart.points[0].realtime + 0.1, chart.points[0].wer_pct)
    assert charts.Chart(**{**chart.__dict__, "points": (moved, *chart.points[1:])}).digest != chart.digest
    assert charts.Chart(**{**chart.__dict__, "machine": "elsewhere"}).digest != chart.digest
