"""The public imports and paths README documents keep working: what backends and operators rely on is listed here,
and every Python import or ``worker`` path README mentions must be one of them or exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

PUBLIC: dict[str, tuple[str, ...]] = {
    "worker.client": (
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
    ),
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


def test_every_import_in_readme_is_public() -> None:
    imports = re.findall(r"^from (worker[\w.]*) import ([\w, ]+)$", README, re.M)
    assert imports, "README shows how to import the client"
    for module, names in imports:
        for name in (n.strip() for n in names.split(",")):
            assert name in PUBLIC.get(module, ()), f"README imports {module}.{name}, which is not listed as public"


def test_every_worker_path_in_readme_exists() -> None:
    for path in set(re.findall(r"`(worker/[\w./]*)`", README)):
        assert (ROOT / path).exists(), path
    for dotted in set(re.findall(r"`(worker(?:\.\w+)+)`", README)):
        module, _, attribute = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), dotted
