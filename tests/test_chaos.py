"""The chaos soak in small: 20 messages (each bad and poison kind at least once, a crash-looping one among them),
2 worker processes on the faulty test backend, random kill -9, SIGTERM and spot notices; nothing lost, stalled,
doubled or unanswered."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POISON_KINDS = ("unsupported_language", "truncated_audio", "engine_fault", "crash_loop")


def row(output: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {name!r} row in:\n{output}"
    return match.group(1).strip()


def test_small_chaos_soak_loses_nothing_and_transcribes_nothing_twice() -> None:
    command = [sys.executable, "scripts/chaos.py", "--messages", "20", "--workers", "2", "--seconds", "240"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=270)
    output = run.stdout + run.stderr

    assert run.returncode == 0, output  # the script fails on any anomaly (scripts/chaos.py FAILING_ROWS)
    good = int(row(output, "  good"))
    assert good >= 1 and row(output, "completed") == str(good), output  # every good job completed, nothing else did
    assert row(output, "  good ones not completed") == "0", output
    assert row(output, "  good ones in DLQ") == "0", output
    assert row(output, "  bad ones not as expected") == "0", output
    assert row(output, "  completed jobs without one") == "0", output
    assert row(output, "lost") == "0", output
    assert row(output, "stalled") == "0", output
    assert row(output, "transcribed twice") == "0", output
    assert row(output, "unanswered") == "0", output
    assert row(output, "dead letters settled").endswith(" 0 could not settle"), output
    assert row(output, "time limit hit") == "no", output
    assert row(output, "messages sent") == "20", output
    for kind in POISON_KINDS:
        as_expected, sent = map(int, row(output, f"  {kind}").split(" of "))
        assert sent >= 1, (kind, output)
        # engine_fault may miss: a kill -9 during its last try leaves no result.json; settling then says worker_lost.
        assert as_expected == sent or kind == "engine_fault", (kind, output)
