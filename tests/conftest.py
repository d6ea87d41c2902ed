"""Shared real parts: one Whisper engine per session, an embedded AWS and a callback receiver per test."""

from __future__ import annotations

import base64
import functools
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Harness
from tests.support.samples import TEST_MODEL
from worker.engine import Engine
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.service.app import build_engine
from worker.service.settings import Settings


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Engine:
    return build_engine(Settings(model_dir=model_dir, default_model=TEST_MODEL, device="cpu"))


@pytest.fixture
def local_aws() -> Iterator[LocalAws]:
    with LocalAws(visibility_timeout=30, max_receive_count=3) as local:
        yield local


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def receiver(secret: str) -> Iterator[CallbackReceiver]:
    with CallbackReceiver(secret) as rx:
        yield rx


@pytest.fixture
def settings(local_aws: LocalAws, secret: str, model_dir: Path) -> Settings:
    return local_aws.settings(
        Settings(),
        webhook_secret=secret,
        model_dir=model_dir,
        default_model=TEST_MODEL,
        device="cpu",
        wait_seconds=1,
        max_idle_seconds=2.0,
        retry_base_seconds=1,
        callback_attempts=3,
    )


@pytest.fixture
def harness(local_aws: LocalAws, settings: Settings, engine: Engine, receiver: CallbackReceiver) -> Harness:
    return Harness(local_aws, settings, engine, receiver)


# --- tiers: unit, integration, e2e (pyproject's markers; `make test-fast` runs all but e2e) --------------------

# `harness` runs the whole worker (its runner loop, real Whisper) against moto and a receiver: a stack in-process.
E2E_FIXTURES = {"fresh_install", "harness"}
INTEGRATION_FIXTURES = {"local_aws", "harness", "engine", "receiver", "settings", "model_dir"}
# What in a module's source means its tests start real worker processes or a whole stack ...
E2E_SOURCE = re.compile(
    r"WorkerProcess|running_worker\(|crashing_worker|scripts/chaos\.py|\"worker\.cli\",\s*\"(run|demo)\""
)
# ... or talk to a real moto server or HTTP receiver, or load real Whisper weights.
INTEGRATION_SOURCE = re.compile(r"\b(LocalAws|CallbackReceiver|build_engine|ReferenceEngine|load_model)\(")
CDK_SYNTH = re.compile(r"\bsynth")
# Modules with tests of many seconds each (the real ``cdk`` CLI; jobs held for seconds on purpose): e2e too, so that
# `make test-fast` stays near 3 minutes. Check `--durations` before adding one.
SLOW_MODULES = {"test_engine_faults", "test_infra_cli"}


@functools.cache
def _source(path: Path) -> str:
    return path.read_text()


def tier(item: pytest.Item) -> str:
    """The test's tier, from what it uses (first match wins):

    * ``e2e``: it starts real worker processes or a whole stack: the ``fresh_install`` or ``harness`` fixture (the
      worker's whole loop in-process), or its module's source starts ``WorkerProcess``/``tests.support.crashing_worker``
      workers, a backend's worker (``tests.support.backend_shell.running_worker``), runs scripts/chaos.py or runs
      ``python -m worker.cli run``/``demo``; or it is slow: its module is in
      ``SLOW_MODULES`` (or it is marked ``e2e`` by hand).
    * ``integration``: a real moto server, HTTP receiver or Whisper weights: the fixtures in ``INTEGRATION_FIXTURES``,
      a module that starts ``LocalAws``/``CallbackReceiver`` or loads models itself, or a CDK synth test
      (tests/test_infra_*.py that synthesize).
    * ``unit``: everything else.
    """
    fixtures = set(getattr(item, "fixturenames", ()))
    source = _source(item.path)
    if item.get_closest_marker("e2e") or fixtures & E2E_FIXTURES or E2E_SOURCE.search(source):
        return "e2e"
    if item.path.stem in SLOW_MODULES:
        return "e2e"
    if fixtures & INTEGRATION_FIXTURES or INTEGRATION_SOURCE.search(source):
        return "integration"
    if item.path.name.startswith("test_infra_") and CDK_SYNTH.search(source):
        return "integration"
    return "unit"


# --- the Dockerfile's install, started early so it runs beside the other tests ---------------------------

FRESH_INSTALL_TEST = "test_install_commands_work_in_a_fresh_virtualenv"


# `make test`'s processes take whole files (``--dist loadfile``) in the order collected (``--no-loadscope-reorder``):
# files of slow tiers first, so the many short files fill the end of the run evenly instead
# of one process finishing a long file alone. The install's file goes last, so the rest runs while it installs.
TIER_ORDER = {"e2e": 0, "integration": 1, "unit": 2}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its tier's marker (``tier``); files are ordered slowest tier first (a file ranks by its slowest
    test), the install's file last."""
    rank: dict[Path, int] = {}
    for item in items:
        marker = tier(item)
        item.add_marker(marker)
        rank[item.path] = min(rank.get(item.path, len(TIER_ORDER)), TIER_ORDER[marker])
    installs = {item.path for item in items if item.name == FRESH_INSTALL_TEST}
    items.sort(key=lambda item: (item.path in installs, rank[item.path]))  # stable: a file keeps its tests' order


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return  # nothing runs
    if any(item.name == FRESH_INSTALL_TEST for item in session.items):
        from tests.test_dockerfile import FreshInstall

        root = Path(tempfile.mkdtemp(prefix="fresh-install-"))
        session.config.stash[_FRESH] = FreshInstall(root)


def pytest_sessionfinish(session: pytest.Session) -> None:
    install = session.config.stash.get(_FRESH, None)
    if install is not None:
        shutil.rmtree(install.root, ignore_errors=True)


_FRESH = pytest.StashKey["object"]()


@pytest.fixture
def fresh_install(request: pytest.FixtureRequest) -> object:
    install = request.config.stash.get(_FRESH, None)
    assert install is not None, "started in pytest_collection_finish"
    return install
