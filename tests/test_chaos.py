"""The chaos soak in small: 20 messages (each bad and poison kind at least once, a crash-looping one among them),
2 worker processes on the faulty test backend, random kill -9, SIGTERM and spot notices; nothing lost, stalled,
doubled or unanswered."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from scripts.chaos import BAD_KINDS, ENGINE_FAULT, Ending, Sent, reckon

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


def _engine_fault_ending_with(result: dict | None) -> list[str]:
    """The soak's anomalies when its one engine_fault job ended in the DLQ with ``result`` as its result.json."""
    job = Sent(
        "chaos-00000", ENGINE_FAULT, json.dumps({"job_id": "chaos-00000", "callback_url": "http://127.0.0.1:9/"})
    )
    payload = {"job_id": job.job_id, "status": "failed"}
    rx = SimpleNamespace(received=[SimpleNamespace(signature_valid=True, payload=payload)])
    found = {} if result is None else {job.result_folder: result}
    dlq = {job.body: [BAD_KINDS[ENGINE_FAULT]]}
    _, anomalies = reckon([job], found, dlq, Counter(), rx, Ending("drained", 0, 0))  # type: ignore[arg-type]
    return sorted(name for name, ids in anomalies.items() if ids)


def test_an_engine_fault_whose_last_try_was_killed_is_no_anomaly_but_a_wrong_code_is() -> None:
    assert _engine_fault_ending_with({"status": "failed", "error": {"code": "engine_failed"}}) == []
    # killed during its last try: nobody wrote result.json, so settling the DLQ wrote worker_lost (or nothing yet)
    assert _engine_fault_ending_with({"status": "failed", "error": {"code": "worker_lost"}}) == []
    assert _engine_fault_ending_with(None) == []
    wrong = _engine_fault_ending_with({"status": "failed", "error": {"code": "internal_error"}})
    assert wrong == ["bad ones not as expected"]
