"""The command line as an operator meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_schema_prints_the_message_json_schema() -> None:
    done = _cli("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"job_id", "audio", "model", "formats", "callback_url", "metadata"} <= set(schema["properties"])
    assert set(schema["required"]) == {"job_id", "audio"}


def test_run_without_a_queue_says_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_")}
    done = _cli("run", "--max-jobs", "1", env=env)
    assert done.returncode == 2
    assert "WHISPER_QUEUE_URL is not set" in done.stderr


def test_schema_states_the_speaker_rules() -> None:
    schema = json.loads(_cli("schema").stdout)
    assert {"diarize", "speakers", "min_speakers", "max_speakers"} <= set(schema["properties"])
    assert set(schema["dependentSchemas"]) == {"speakers", "min_speakers", "max_speakers"}


def test_submit_help_lists_the_diarization_flags() -> None:
    done = _cli("submit", "--help")
    assert done.returncode == 0
    for flag in ("--diarize", "--speakers N", "--min-speakers N", "--max-speakers N"):
        assert flag in done.stdout
