"""The manual's reference pages are generated from the code (scripts/docs_reference.py): these tests fail when a
committed page is stale, when the tables the pages come from miss a variable or a context key the code reads, and
when the site does not build under --strict."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from infra.config import CONTEXT_KEYS, InfraConfig
from scripts import docs_reference
from worker.contract import json_schema, parse_message
from worker.service.settings import ENVIRONMENT, Settings

ROOT = Path(__file__).resolve().parent.parent
HAVE_NPM = shutil.which("npm") is not None


def test_committed_pages_are_current() -> None:
    pages = docs_reference.render(node=False)
    assert set(pages) == set(docs_reference.PAGES)
    assert docs_reference.stale(pages) == []


@pytest.mark.skipif(not HAVE_NPM, reason="npm is not installed: the Node.js API pages cannot be generated")
def test_node_api_pages_are_current() -> None:
    pages = docs_reference.node_api_pages()
    assert set(pages) == set(docs_reference.NODE_PAGES.values())
    assert "TranscriptionClient" in pages["node-api.md"]
    assert docs_reference.stale(pages) == []


def test_check_mode_passes_on_the_tree() -> None:
    args = [sys.executable, "-m", "scripts.docs_reference", "--check"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_changed_field_description_makes_the_page_stale(tmp_path: Path) -> None:
    schema = json_schema()
    schema["properties"]["job_id"]["description"] = "A description nobody has regenerated."
    page = docs_reference.job_message_page(schema)
    assert "A description nobody has regenerated." in page
    assert page != docs_reference.job_message_page()

    shutil.copytree(docs_reference.REFERENCE, tmp_path, dirs_exist_ok=True)
    pages = docs_reference.render(node=False) | {"job-message.md": page}
    assert docs_reference.stale(pages, tmp_path) == ["job-message.md"]


def test_check_mode_names_the_stale_page(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    original = docs_reference.job_message_page
    monkeypatch.setattr(docs_reference, "PAGES", docs_reference.PAGES | {"job-message.md": lambda: original() + "x"})
    monkeypatch.setattr(docs_reference, "node_api_pages", dict)  # the Node.js pages have a test of their own
    assert docs_reference.main(["--check"]) == 1
    assert "docs/reference/job-message.md" in capsys.readouterr().err


def test_example_message_validates_against_the_contract() -> None:
    example = docs_reference.example_message()
    jsonschema.Draft202012Validator(json_schema()).validate(example)
    assert parse_message(json.dumps(example)).model_dump(mode="json") == example
    assert set(example) == set(json_schema()["properties"]), "the example sets every field"
    assert json.dumps(example, indent=2) in (docs_reference.REFERENCE / "job-message.md").read_text()


def test_every_environment_variable_settings_reads_is_documented() -> None:
    read = set(re.findall(r'"((?:WHISPER|AWS)_[A-Z0-9_]+)"', inspect.getsource(Settings.from_env)))
    documented = {name for name, var in ENVIRONMENT.items() if var.read_by is None}
    assert read == documented
    for name, var in ENVIRONMENT.items():
        assert var.field is None or hasattr(Settings(), var.field), name
        if var.read_by is not None:
            source = ROOT.joinpath(*var.read_by.split(".")).with_suffix(".py")
            assert name in source.read_text(encoding="utf-8"), f"{name} is not read in {var.read_by}"


def test_every_whisper_variable_in_the_worker_is_documented() -> None:
    named = set()
    for path in (ROOT / "worker").rglob("*.py"):
        named |= set(re.findall(r'"(WHISPER_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert named - set(ENVIRONMENT) == set()


def test_every_cdk_context_key_is_documented() -> None:
    source = inspect.getsource(InfraConfig.from_context)
    read = set(re.findall(r'get, "(\w+)"', source)) | set(re.findall(r'get\("(\w+)"\)', source))
    assert read == set(CONTEXT_KEYS)
    for key, entry in CONTEXT_KEYS.items():
        assert (entry.field is None) != (entry.default is None), f"{key}: a field or a default in words, not both"
        assert entry.field is None or hasattr(InfraConfig(), entry.field), key


def test_every_result_field_is_documented() -> None:
    from dataclasses import fields

    from worker.contract.result import RESULT_FIELDS, JobResult

    assert sorted(f.name for f in fields(JobResult)) == sorted(RESULT_FIELDS)


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)]
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_site_builds_strict(tmp_path: Path) -> None:
    done = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "reference" / "job-message" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "python-api" / "index.html").read_text(encoding="utf-8")
    assert 'id="worker.client.sdk.TranscriptionClient.submit"' in api


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    with (docs / "reference" / "failure-codes.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the missing page](no-such-page.md).\n")
    config = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config.write_text(text.replace("docs_dir: docs", f"docs_dir: {docs}").replace("paths: [.]", f"paths: [{ROOT}]"))
    done = _mkdocs(config, tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr
