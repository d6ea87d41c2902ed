"""The Node.js client's own suite (clients/node: ``npm test`` builds the package and runs its tests against moto and
a real worker from this virtualenv), run as one test so it shares the test processes with the rest of the suite.

Its dependencies come from the committed lockfile (``npm ci``, which `make test` runs first)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"


@pytest.mark.e2e
@pytest.mark.timeout(600)  # builds the package twice over and starts its own stack
def test_the_node_client_suite_passes() -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed for the Node.js client's tests (Node 20 or later)"
    assert (NODE_CLIENT / "node_modules").is_dir(), "run `npm ci` in clients/node first (`make test` does)"
    env = {**os.environ, "WHISPER_PYTHON": sys.executable}
    done = subprocess.run([npm, "test"], cwd=NODE_CLIENT, env=env, capture_output=True, text=True, timeout=590)
    assert done.returncode == 0, f"npm test failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    counts = dict(re.findall(r"^\W*(pass|fail|skipped|todo) (\d+)$", done.stdout, re.MULTILINE))
    assert int(counts.get("pass", 0)) > 0 and counts.get("fail") == "0", done.stdout[-3000:]
    assert counts.get("skipped", "0") == "0" and counts.get("todo", "0") == "0", "no Node.js test may be left out"
