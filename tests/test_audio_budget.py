"""The decoded-audio budget: blocking and FIFO order, the permanent refusal of audio that could never fit, the
default capacity from cgroup/meminfo files, duration probes, and a worker that keeps its messages within it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio_factory import load_jfk, write_audio
from tests.support.harness import Harness
from tests.support.samples import TEST_MODEL
from tests.support.waiting import eventually
from worker.audio import SAMPLE_RATE
from worker.audio.budget import (
    BYTES_PER_SECOND,
    GIB,
    RUNTIME_RESERVE_BYTES,
    AudioBudget,
    decode_within_budget,
    default_budget_seconds,
    memory_limit_bytes,
)
from worker.audio.decode import probe_seconds
from worker.audio.wav import write_wav
from worker.service.app import build_worker
from worker.service.errors import AudioTooLong, ResourceExhausted


def _reserve_in_thread(budget: AudioBudget, seconds: float, granted: list[float]) -> threading.Thread:
    def run() -> None:
        reservation = budget.reserve(seconds)
        granted.append(seconds)
        reservation.release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_jfk()


# --- AudioBudget ----------------------------------------------------------------------------------------------


def test_reservations_add_up_and_release_once() -> None:
    budget = AudioBudget(100)
    with budget.reserve(30) as first:
        second = budget.reserve(70)
        assert (budget.held, budget.peak) == (100, 100)
        second.release()
        second.release()  # idempotent: never gives back more than it took
        assert budget.held == 30
    first.release()
    assert (budget.held, budget.peak, budget.waits) == (0, 100, 0)


def test_request_blocks_until_room_is_free() -> None:
    budget = AudioBudget(100)
    held = budget.reserve(60)
    granted: list[float] = []
    thread = _reserve_in_thread(budget, 50, granted)
    eventually(lambda: budget.waits == 1, 5, "1 waiting")
    time.sleep(0.1)
    assert granted == [] and budget.held == 60
    held.release()
    thread.join(5)
    assert granted == [50] and budget.held == 0 and budget.peak == 60


def test_requests_are_granted_in_arrival_order() -> None:
    """A short request that would fit now still waits behind a long one that arrived first."""
    budget = AudioBudget(100)
    held = budget.reserve(90)
    granted: list[float] = []
    long_one = _reserve_in_thread(budget, 50, granted)
    eventually(lambda: budget.waits == 1, 5, "1 waiting")
    short_one = _reserve_in_thread(budget, 5, granted)  # 90 + 5 fits, but it is second in line
    eventually(lambda: budget.waits == 2, 5, "2 waiting")
    time.sleep(0.1)
    assert granted == []
    held.release()
    long_one.join(5)
    short_one.join(5)
    assert granted == [50, 5]
    assert budget.held == 0


def test_request_larger_than_the_whole_budget_fails_permanently_at_once() -> None:
    budget = AudioBudget(80)
    with pytest.raises(AudioTooLong) as caught:
        budget.reserve(81)
    assert caught.value.code == "audio_too_long" and caught.value.permanent
    assert "81 s long" in caught.value.message and "at most 80 s" in caught.value.message
    assert "WHISPER_MAX_DECODED_SECONDS" in caught.value.message
    assert budget.held == 0


def test_waiter_gives_up_when_asked_to_stop_and_leaves_the_line() -> None:
    budget = AudioBudget(100)
    held = budget.reserve(100)
    stop = threading.Event()
    errors: list[Exception] = []

    def run() -> None:
        try:
            budget.reserve(50, should_stop=stop.is_set)
        except ResourceExhausted as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    eventually(lambda: budget.waits == 1, 5, "1 waiting")
    stop.set()
    thread.join(5)
    assert [e.code for e in errors] == ["resource_exhausted"] and not errors[0].permanent
    held.release()
    with budget.reserve(100):  # the abandoned ticket does not block the line
        assert budget.held == 100


# --- default capacity ---------------------------------------------------------------------------------------


def _files(tmp_path: Path, *, v2: str | None = None, v1: str | None = None, mem_kb: int = 64 * 1024 * 1024) -> dict:
    paths = {"cgroup_v2": tmp_path / "memory.max", "cgroup_v1": tmp_path / "limit", "meminfo": tmp_path / "meminfo"}
    if v2 is not None:
        paths["cgroup_v2"].write_text(v2 + "\n")
    if v1 is not None:
        paths["cgroup_v1"].write_text(v1 + "\n")
    paths["meminfo"].write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        1234 kB\n")
    return paths


def _expected(memory: int) -> float:
    return (memory - RUNTIME_RESERVE_BYTES) * 0.5 / BYTES_PER_SECOND


def test_budget_from_cgroup_v2_limit(tmp_path: Path) -> None:
    files = _files(tmp_path, v2=str(14 * GIB), v1=str(2 * GIB))
    assert memory_limit_bytes(**files) == 14 * GIB
    seconds = default_budget_seconds(**files)
    assert seconds == pytest.approx(_expected(14 * GIB))
    assert 40_000 < seconds < 50_000  # ~13 h: a few six-hour files on a 14 GiB worker, not sixteen


def test_budget_from_cgroup_v1_when_v2_says_max(tmp_path: Path) -> None:
    files = _files(tmp_path, v2="max", v1=str(8 * GIB))
    assert default_budget_seconds(**files) == pytest.approx(_expected(8 * GIB))


def test_budget_from_meminfo_when_cgroups_set_no_limit(tmp_path: Path) -> None:
    files = _files(tmp_path, v2="max", v1="9223372036854771712", mem_kb=16 * 1024 * 1024)
    assert memory_limit_bytes(**files) == 16 * GIB
    assert default_budget_seconds(**files) == pytest.approx(_expected(16 * GIB))
    missing = _files(tmp_path / "..", mem_kb=16 * 1024 * 1024)  # no cgroup files at all
    missing["cgroup_v2"] = tmp_path / "absent-v2"
    missing["cgroup_v1"] = tmp_path / "absent-v1"
    assert memory_limit_bytes(**missing) == 16 * GIB


def test_limit_above_the_machine_memory_counts_as_the_machine(tmp_path: Path) -> None:
    files = _files(tmp_path, v2=str(512 * GIB), mem_kb=32 * 1024 * 1024)
    assert memory_limit_bytes(**files) == 32 * GIB


def test_budget_never_below_the_floor(tmp_path: Path) -> None:
    files = _files(tmp_path, v2=str(2 * GIB))  # less than the runtime's share alone
    assert default_budget_seconds(**files) == 600.0
    assert default_budget_seconds(**files, minimum_seconds=1200) == 1200.0


# --- probe and decode within the budget ----------------------------------------------------------------------


def _flac_with_declared_length(path: Path, samples: np.ndarray, declared_seconds: float) -> Path:
    """A FLAC whose STREAMINFO declares ``declared_seconds`` whatever it holds: a header that lies."""
    write_audio(path, samples, SAMPLE_RATE, container="flac", codec="flac")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    field = slice(8 + 10, 8 + 18)  # sample rate, channels, bits per sample, then 36 bits of total samples
    bits = int.from_bytes(data[field], "big")
    bits = (bits & ~((1 << 36) - 1)) | int(declared_seconds * SAMPLE_RATE)
    data[field] = bits.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_probe_reads_headers_and_never_raises(tmp_path: Path, jfk: np.ndarray) -> None:
    samples = np.tile(jfk, 2)
    assert probe_seconds(write_wav(tmp_path / "a.wav", samples)) == pytest.approx(22.0)
    flac = write_audio(tmp_path / "a.flac", samples, SAMPLE_RATE, container="flac", codec="flac")
    assert probe_seconds(flac) == pytest.approx(22.0)
    streamed = bytearray((tmp_path / "a.wav").read_bytes())
    streamed[4:8] = streamed[40:44] = b"\xff\xff\xff\xff"  # a streamed WAV's "unknown" sizes
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert probe_seconds(tmp_path / "streamed.wav") == pytest.approx(22.0, abs=0.01)  # bounded by the file size
    (tmp_path / "junk.mp3").write_bytes(b"\x00garbage" * 1000)
    (tmp_path / "empty").write_bytes(b"")
    assert probe_seconds(tmp_path / "junk.mp3") is None
    assert probe_seconds(tmp_path / "empty") is None
    assert probe_seconds(tmp_path / "missing.wav") is None


def test_decode_reserves_the_probed_length(tmp_path: Path, jfk: np.ndarray) -> None:
    budget = AudioBudget(100)
    audio, reservation = decode_within_budget(write_wav(tmp_path / "a.wav", jfk), budget, max_seconds=3600)
    assert audio.size == jfk.size
    assert reservation.seconds == pytest.approx(12.0)  # 11 s and the header tolerance
    reservation.release()
    assert budget.held == 0


def test_header_that_understates_the_length_is_reserved_again(tmp_path: Path, jfk: np.ndarray) -> None:
    path = _flac_with_declared_length(tmp_path / "lie.flac", np.tile(jfk, 3), declared_seconds=10)
    assert probe_seconds(path) == pytest.approx(10.0)
    budget = AudioBudget(50)
    audio, reservation = decode_within_budget(path, budget, max_seconds=3600)
    assert audio.size == 3 * jfk.size
    assert reservation.seconds == 50  # the whole allowance, after the 11 s first try came up short
    reservation.release()
    assert (budget.held, budget.peak) == (0, 50)


def test_audio_longer_than_the_budget_is_refused(tmp_path: Path, jfk: np.ndarray) -> None:
    budget = AudioBudget(30)
    with pytest.raises(AudioTooLong, match="33 s long; this worker holds at most 30 s"):
        decode_within_budget(write_wav(tmp_path / "long.wav", np.tile(jfk, 3)), budget, max_seconds=3600)
    # A header that hides the length: found while decoding, with the budget named as the limit.
    path = _flac_with_declared_length(tmp_path / "lie.flac", np.tile(jfk, 3), declared_seconds=10)
    with pytest.raises(AudioTooLong, match="longer than 30 s; this worker holds at most 30 s"):
        decode_within_budget(path, budget, max_seconds=3600)
    # WHISPER_MAX_AUDIO_SECONDS below the budget keeps its own message.
    with pytest.raises(AudioTooLong, match="longer than the 20 s limit"):
        decode_within_budget(path, budget, max_seconds=20)
    assert budget.held == 0


# --- end to end -----------------------------------------------------------------------------------------------


def test_worker_keeps_messages_in_progress_within_the_budget(harness: Harness, tmp_path: Path, jfk: np.ndarray) -> None:
    """Six 30-38 s files with room for two at a time: all complete, the budget is never passed, and a file longer
    than the whole budget fails permanently instead of waiting forever."""
    # One speech clip, then silence: the budget counts decoded seconds, and silence keeps the test quick.
    padded = np.concatenate([jfk, np.zeros(40 * SAMPLE_RATE, dtype=np.float32)])
    lengths = [30, 38, 33, 36, 31, 35]
    for i, seconds in enumerate(lengths):
        url = harness.upload(write_wav(tmp_path / f"{i}.wav", padded[: seconds * SAMPLE_RATE]), f"audio/{i}.wav")
        harness.send({"job_id": f"fits-{i}", "audio": url, "model": TEST_MODEL})
    too_long = harness.upload(write_wav(tmp_path / "too-long.wav", np.tile(jfk, 8)[: 85 * SAMPLE_RATE]), "audio/x.wav")
    too_long_id = harness.send({"job_id": "too-long", "audio": too_long, "model": TEST_MODEL})

    settings = harness.settings.with_overrides(concurrency=4, max_decoded_seconds=80.0)
    worker = build_worker(settings, engine=harness.engine)
    stats = worker.run()

    budget = worker.processor.audio_budget
    assert (stats.completed, stats.failed) == (len(lengths), 1)
    for i in range(len(lengths)):
        assert harness.result(f"fits-{i}")["status"] == "completed"
    assert budget.capacity == 80
    assert max(lengths) + 1 <= budget.peak <= 80
    assert budget.waits >= 1  # some messages did wait for room
    assert budget.held == 0  # every reservation went back
    failed = harness.result("too-long")
    assert failed["status"] == "failed" and failed["error"]["code"] == "audio_too_long"
    assert "at most 80 s of decoded audio" in failed["error"]["message"]
    dead = {
        m["MessageAttributes"]["source_message_id"]["StringValue"]: m["MessageAttributes"]["error_code"]["StringValue"]
        for m in harness.dead_letters()
    }
    assert dead == {too_long_id: "audio_too_long"}
    assert harness.queue_depth() == 0
