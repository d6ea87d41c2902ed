"""status.json: its shape, its throttle, best effort; the per-call progress hook; the ``progress_callback`` field."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import tqdm

from tests.support.samples import JFK, TEST_MODEL
from worker.audio import SAMPLE_RATE
from worker.audio.decode import decode_audio
from worker.contract import ContractError, json_schema, parse_message
from worker.engine import Engine, reference_progress
from worker.engine.options import TranscribeOptions
from worker.local.moto_server import LocalAws
from worker.service.app import build_engine
from worker.service.progress import ProgressReporter
from worker.service.settings import Settings

KEY = "results/p-1/status.json"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _history(local: LocalAws, key: str) -> list[dict]:
    """Every version of ``key``, oldest first: each write the reporter made, in order."""
    assert local.resources is not None
    s3 = local.client("s3")
    versions = s3.list_object_versions(Bucket=local.resources.bucket, Prefix=key).get("Versions", [])
    if not versions:
        return []
    assert versions[0]["IsLatest"]  # S3 lists a key's versions newest first
    docs = [
        json.loads(s3.get_object(Bucket=local.resources.bucket, Key=key, VersionId=v["VersionId"])["Body"].read())
        for v in reversed(versions)
    ]
    assert [d["updated_at"] for d in docs] == sorted(d["updated_at"] for d in docs)
    return docs


def _reporter(
    local: LocalAws, clock: FakeClock, notified: list, interval: float = 5.0, timer: object = None
) -> ProgressReporter:
    assert local.resources is not None
    s3 = local.client("s3")
    s3.put_bucket_versioning(Bucket=local.resources.bucket, VersioningConfiguration={"Status": "Enabled"})
    return ProgressReporter(
        s3=s3,
        bucket=local.resources.bucket,
        key=KEY,
        job_id="p-1",
        message_id="msg-1",
        interval=interval,
        notify=lambda state, percent: notified.append((state, percent)),
        clock=clock,
        **({"timer": timer} if timer else {}),
    )


def test_an_announced_job_writes_its_first_and_final_states_at_once_and_the_rest_every_interval(
    local_aws: LocalAws,
) -> None:
    clock, notified = FakeClock(), []
    progress = _reporter(local_aws, clock, notified)
    progress.announce()  # an earlier result of this job id exists
    progress.state("fetching")  # the first state: written at once
    progress.percent(50)  # not transcribing yet: ignored
    progress.state("decoding")  # within the interval: held back, as is ...
    progress.state("transcribing", 0.0)  # ... this
    clock.now += 1
    progress.percent(10)  # 1 s after the last write: held back
    clock.now += 5
    progress.percent(20.04)  # 6 s: written, with the latest state
    clock.now += 1
    progress.percent(30)  # held back
    progress.state("storing")  # held back
    clock.now += 6
    progress.state("storing")  # an interval later: written
    progress.state("completed", 100.0)  # final: written at once

    history = _history(local_aws, KEY)
    assert [(d["state"], d["percent"]) for d in history] == [
        ("fetching", None),
        ("transcribing", 20.0),
        ("storing", None),
        ("completed", 100.0),
    ]
    for doc in history:
        assert set(doc) == {"job_id", "state", "percent", "updated_at", "message_id"}
        assert doc["job_id"] == "p-1" and doc["message_id"] == "msg-1"
        assert datetime.fromisoformat(doc["updated_at"]).tzinfo is not None
    changes = [
        ("fetching", None),
        ("decoding", None),
        ("transcribing", 0.0),
        ("storing", None),
        ("storing", None),
        ("completed", 100.0),
    ]
    assert notified == changes
    obj = local_aws.client("s3").get_object(Bucket=local_aws.resources.bucket, Key=KEY)  # type: ignore[union-attr]
    assert obj["ContentType"] == "application/json" and obj["CacheControl"] == "no-cache"


def test_a_job_shorter_than_the_interval_writes_no_status(local_aws: LocalAws) -> None:
    clock, notified = FakeClock(), []
    progress = _reporter(local_aws, clock, notified, timer=_NoTimer)
    for state in ("fetching", "decoding", "transcribing", "storing"):
        progress.state(state)  # type: ignore[arg-type]
        clock.now += 1
    progress.state("completed", 100.0)
    assert _history(local_aws, KEY) == []  # result.json alone tells the outcome
    assert [state for state, _ in notified] == ["fetching", "decoding", "transcribing", "storing", "completed"]


def test_a_longer_job_shows_its_state_from_one_interval_in_and_its_final_state(local_aws: LocalAws) -> None:
    clock, timers = FakeClock(), []
    progress = _reporter(local_aws, clock, [], timer=lambda delay, fn: timers.append(_NoTimer(delay, fn)) or timers[-1])
    progress.state("fetching")
    assert _history(local_aws, KEY) == [] and timers[0].delay == 5
    clock.now += 5
    timers[0].fire()  # a long fetch enters no new state: the timer writes the one it is in
    progress.state("decoding")  # within an interval of that write: held back
    clock.now += 5
    progress.state("transcribing", 0.0)
    progress.state("completed", 100.0)
    assert [d["state"] for d in _history(local_aws, KEY)] == ["fetching", "transcribing", "completed"]


class _NoTimer:
    """threading.Timer's shape, fired by hand."""

    def __init__(self, delay: float, fn: object) -> None:
        self.delay, self.fn, self.daemon, self.cancelled = delay, fn, False, False

    def start(self) -> None:
        pass

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.fn()  # type: ignore[operator]


def test_progress_is_best_effort(local_aws: LocalAws) -> None:
    progress = ProgressReporter(
        s3=local_aws.client("s3"), bucket="no-such-bucket", key=KEY, job_id="p", message_id="m", interval=0
    )
    progress.state("fetching")  # logged, not raised: result.json stays the source of truth
    with pytest.raises(ValueError, match="unknown state"):
        progress.state("queued")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ progress hook


def test_hook_reaches_the_pinned_whisper_and_patches_nothing_global() -> None:
    assert reference_progress.supported()
    assert sys.modules["whisper.transcribe"].tqdm is tqdm


def test_concurrent_transcriptions_each_hear_only_their_own_progress(engine: Engine, model_dir: Path) -> None:
    speech = decode_audio(JFK, max_seconds=60)
    clips = {"short": speech[: 4 * SAMPLE_RATE], "long": speech}
    second = build_engine(Settings(model_dir=model_dir, default_model=TEST_MODEL, device="cpu"))  # own decoder state
    heard: dict[str, list[float]] = {name: [] for name in clips}
    texts: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def run(name: str, eng: Engine) -> None:
        barrier.wait()
        texts[name] = eng.transcribe(TEST_MODEL, clips[name], TranscribeOptions(), progress=heard[name].append).text

    threads = [threading.Thread(target=run, args=item) for item in (("short", engine), ("long", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a transcription did not end"

    for name in clips:
        assert heard[name][0] == 0.0 and heard[name][-1] == 100.0, heard
        assert heard[name] == sorted(heard[name])
        assert len(heard[name]) == 2  # one window each: the opening 0 and one update, nobody else's
    assert "country" in texts["long"].lower() and "country" not in texts["short"].lower()
    assert sys.modules["whisper.transcribe"].tqdm is tqdm


# --------------------------------------------------------------------------------------- contract


def test_progress_callback_field() -> None:
    base = {"job_id": "j", "audio": "s3://b/k"}
    assert parse_message(json.dumps(base)).progress_callback is False
    assert parse_message(json.dumps({**base, "progress_callback": True})).progress_callback is True
    with pytest.raises(ContractError, match="progress_callback"):
        parse_message(json.dumps({**base, "progress_callback": "yes"}))
    prop = json_schema()["properties"]["progress_callback"]
    assert prop["type"] == "boolean" and prop["default"] is False and "progress" in prop["description"]
