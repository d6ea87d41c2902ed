"""The public imports and paths README and the docs document keep working: what backends and operators rely on is
listed here, and every Python import or ``worker`` path README or a hand-written docs page mentions must be one of them
or exist (the generated reference pages are made from the code itself)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "reference" not in p.parts)]
DOCUMENTED = "\n".join(page.read_text() for page in PAGES)

CLIENT_NAMES = (
    "TranscriptionClient",
    "JobStatus",
    "TranscriptionError",
    "ConfigurationError",
    "JobValidationError",
    "JobNotFound",
    "JobFailed",
    "WaitTimeout",
    "EstimateError",
    "ServiceError",
    "CostEstimate",
    "DeadLetter",
    "new_job_id",
)
PUBLIC: dict[str, tuple[str, ...]] = {
    "whisper_batch": CLIENT_NAMES,  # the client's import name
    "worker.client": CLIENT_NAMES,  # where it lives, and the path earlier code imports
    "worker.contract": (
        "JobRequest",
        "parse_message",
        "json_schema",
        "ContractError",
        "best_effort_ids",
        "is_job_id",
        "JOB_ID_PATTERN",
        "OUTPUT_FORMATS",
        "OFFICIAL_MODELS",
    ),
    "worker.contract.result": ("JobResult", "ErrorInfo", "CallbackRecord", "CALLBACK_FIELDS"),
    "worker.engine": ("Engine", "TranscribeOptions", "Transcript"),
    "worker.cli": ("main",),
}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PUBLIC.items() for n in names])
def test_public_name_imports(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_the_clients_import_name_and_its_old_path_give_the_same_objects() -> None:
    import whisper_batch
    from worker import client

    assert sorted(whisper_batch.__all__) == sorted(client.__all__)
    assert all(getattr(whisper_batch, name) is getattr(client, name) for name in client.__all__)
    with pytest.raises(AttributeError):
        whisper_batch.NoSuchThing  # noqa: B018


def test_every_documented_import_is_public() -> None:
    assert {"README.md", "python.md", "message-flow.md"} <= {page.name for page in PAGES}
    imports = re.findall(r"^from ((?:worker|whisper_batch)[\w.]*) import ([\w, ]+)$", DOCUMENTED, re.M)
    assert imports, "README and the Python guide show how to import the client"
    for module, names in imports:
        for name in (n.strip() for n in names.split(",")):
            assert name in PUBLIC.get(module, ()), f"the docs import {module}.{name}, which is not listed as public"


def test_every_documented_worker_path_exists() -> None:
    for path in set(re.findall(r"`(worker/[\w./]*)`", DOCUMENTED)):
        assert (ROOT / path).exists(), path
    for dotted in set(re.findall(r"`(worker(?:\.\w+)+)`", DOCUMENTED)):
        module, _, attribute = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), dotted


def test_every_relative_link_in_readme_resolves() -> None:
    """README is the way into the docs: a page it links to that moved or was renamed must fail here."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?://|#)[^)\s]+)\)", readme)
    assert sum(link.startswith("docs/") for link in links) >= 10, "README links into every part of the docs"
    for link in links:
        assert (ROOT / link.split("#")[0]).exists(), f"README links to {link}, which does not exist"
