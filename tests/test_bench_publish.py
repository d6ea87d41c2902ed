"""README's performance figures and prices.json's measured throughput are generated from bench/results/*.json
(``python -m bench.publish``): the committed files agree, a changed result is caught, rendering is deterministic."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import publish, run
from worker.client import pricing

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def copy(tmp_path: Path) -> dict[str, Path]:
    """README, prices.json and the results in a temporary directory: the tests never touch the real files."""
    results = tmp_path / "results"
    shutil.copytree(publish.RESULTS, results)
    readme, prices = tmp_path / "README.md", tmp_path / "prices.json"
    shutil.copyfile(publish.README, readme)
    shutil.copyfile(publish.PRICES, prices)
    return {"readme": readme, "results": results, "prices": prices}


def _args(paths: dict[str, Path], *extra: str) -> list[str]:
    return [*(arg for key in ("readme", "results", "prices") for arg in (f"--{key}", str(paths[key]))), *extra]


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _system(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["systems"] if s["system"] == name)


def test_committed_readme_and_prices_agree_with_the_results() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.publish", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{done.stderr}run `make bench-publish` (python -m bench.publish)"


def test_every_result_file_is_published_and_every_block_has_its_file() -> None:
    readme = publish.README.read_text()
    names = publish.readme_names(readme)
    assert len(names) == len(set(names))
    assert set(names) == set(publish.render_blocks(publish.RESULTS))
    assert {"cpu-dev-corpus", "cpu-worker-diarize", "cpu-diarization", "gpu-h200-synthetic"} <= set(names)
    # The section names what each figure came from; the GPU table says it was transcribed, not measured into JSON.
    for name in names:
        assert f"(bench/results/{name}.json)" in readme
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

    # Publishing brings README and prices.json back in line, with the new figures in them.
    assert publish.main(_args(copy)) == 0
    assert publish.main(_args(copy, "--check")) == 0
    worker = _system(json.loads((copy["results"] / "cpu-dev-corpus.json").read_text()), "worker")
    expected = round(worker["total"]["audio_seconds"] / 20.0, 1)
    assert json.loads(copy["prices"].read_text())["measured"][0]["times_realtime"] == expected
    assert "| 50.0 |" in copy["readme"].read_text()  # the diarization table's DER


def test_a_hand_edited_figure_in_readme_fails_the_check(
    copy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    text = copy["readme"].read_text()
    assert text.count("779.3x") == 1
    copy["readme"].write_text(text.replace("779.3x", "800.0x"))
    assert publish.main(_args(copy, "--check")) == 1
    assert "bench:gpu-h200-synthetic" in capsys.readouterr().err


def test_rendering_is_deterministic(copy: dict[str, Path]) -> None:
    first = publish.render_blocks(copy["results"])
    assert publish.render_blocks(copy["results"]) == first
    assert publish.render_blocks(publish.RESULTS) == first  # a copy renders what the committed files do
    readme, prices = copy["readme"].read_text(), copy["prices"].read_text()
    assert publish.main(_args(copy)) == 0
    assert (copy["readme"].read_text(), copy["prices"].read_text()) == (readme, prices)  # nothing to change
    assert publish.render_prices(prices, copy["results"]) == prices


def test_a_block_without_its_file_is_an_error(copy: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (copy["results"] / "gpu-h200-synthetic.json").unlink()
    readme = copy["readme"].read_text()
    assert publish.main(_args(copy)) == 1
    assert "bench:gpu-h200-synthetic" in capsys.readouterr().err
    assert copy["readme"].read_text() == readme


def test_a_new_result_file_gets_its_block_at_the_end_of_measured(copy: dict[str, Path]) -> None:
    # An optional source that is absent has no block; once its file is there, publishing adds one.
    assert "bench:cpu-worker-latency" not in copy["readme"].read_text()
    shutil.copyfile(copy["results"] / "cpu-worker-diarize.json", copy["results"] / "cpu-worker-latency.json")
    assert publish.main(_args(copy, "--check")) == 1
    assert publish.main(_args(copy)) == 0
    text = copy["readme"].read_text()
    measured, development = text.index("\n### Measured\n"), text.index("\n## Development\n")
    assert measured < text.index("<!-- bench:cpu-worker-latency -->") < development
    assert "**CPU: the worker's latency**" in text
    assert publish.main(_args(copy, "--check")) == 0


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
    assert info["settings"] == {"device": "cpu", "repeat": 1, "concurrency": 16, "engine": None}
    assert info["corpus_source"].startswith("built-in: synthetic")
