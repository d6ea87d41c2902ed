"""The README's first command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from tests.support.samples import DATA


def test_demo_prints_the_transcript_and_a_verified_callback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.lower()
    assert "ask not what your country can do for you" in out
    assert "callback: received, signature valid" in out
    assert "results/demo-1-jfk/transcript.srt" in out


def test_demo_reports_a_file_it_cannot_decode(tmp_path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not audio")
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", str(DATA / "jfk.flac"), str(junk)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert "ask not what your country" in done.stdout.lower()
    assert "undecodable_audio" in done.stdout
