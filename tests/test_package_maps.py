"""Every package's docstring is its map: each module and subpackage in it is named there, so a newcomer reading
``worker/<package>/__init__.py`` finds every file."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.parent for p in (ROOT / "worker").rglob("__init__.py") if "__pycache__" not in p.parts)


def _members(package: Path) -> list[str]:
    modules = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    subpackages = [f"{p.parent.name}/" for p in package.glob("*/__init__.py")]
    return sorted(modules + subpackages)


@pytest.mark.parametrize("package", PACKAGES, ids=[str(p.relative_to(ROOT)) for p in PACKAGES])
def test_every_module_is_on_its_packages_map(package: Path) -> None:
    name = ".".join(package.relative_to(ROOT).parts)
    doc = importlib.import_module(name).__doc__ or ""
    missing = [member for member in _members(package) if member not in doc]
    assert not missing, f"{name}'s docstring does not name {missing}"
