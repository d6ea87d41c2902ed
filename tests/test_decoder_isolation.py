"""The decoder's child processes (worker/audio/isolated.py): same samples as decoding in-process, mapped without a
copy, nothing left in /dev/shm; a child that segfaults, aborts, blows its memory limit or hangs costs one retry and
then a permanent error, and the pool decodes the next file; children never outlive the worker. Then a real worker
process over moto's server with such files among good ones (``python -m tests.support.faults``)."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.faulty_decoder import MODULE, write_faulty
from tests.support.samples import DATA, JFK, TEST_MODEL
from tests.support.waiting import eventually
from tests.support.worker_processes import ROOT, Backend, WorkerProcess
from worker.audio.decode import decode_audio, probe_seconds
from worker.audio.isolated import DecoderPool
from worker.audio.wav import write_wav
from worker.local.moto_server import LocalAws
from worker.local.receiver import CallbackReceiver
from worker.service.errors import (
    AudioTooLong,
    DecoderCrashed,
    DecoderOutOfMemory,
    DecoderTimeout,
    JobError,
    UndecodableAudio,
)

SHM = Path("/dev/shm")
VCTK = sorted(DATA.glob("vctk_*.flac"))
EXPECTED: dict[str, tuple[type[JobError], str]] = {
    "segv": (DecoderCrashed, "SIGSEGV"),
    "abort": (DecoderCrashed, "SIGABRT"),
    "oom": (DecoderOutOfMemory, "memory"),
    "hang": (DecoderTimeout, "within its deadline of 2 s"),
}


def _shm() -> set[str]:
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    before = _shm()
    pool = DecoderPool(2, memory_mb=256, timeout_seconds=2.0, timeout_factor=0.0, module=MODULE)
    yield pool
    pool.close()
    assert _shm() == before  # nothing leaked, whatever the test did


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK, max_seconds=60)


def test_pool_decodes_what_decode_audio_does_without_a_copy(tmp_path: Path, pool: DecoderPool, jfk) -> None:
    stereo = write_faulty(tmp_path / "stereo.wav", jfk, None)
    for path in (JFK, VCTK[0], stereo):
        audio = pool.decode(path, max_seconds=60)
        np.testing.assert_array_equal(audio, decode_audio(path, max_seconds=60))
        assert audio.dtype == np.float32
        assert isinstance(audio.base, memoryview) and isinstance(audio.base.obj, mmap.mmap)  # the child's file
        assert audio.flags.writeable  # a private mapping: torch takes it without a warning
        assert pool.probe(path) == probe_seconds(path)
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.from_numpy(audio).shape == audio.shape
    assert pool.started == 1  # one child served them all, one request at a time


def test_errors_come_back_as_themselves(tmp_path: Path, pool: DecoderPool) -> None:
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(JFK.read_bytes()[:2000])
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00not audio at all" * 100)
    for path, kwargs in [(JFK, {"max_seconds": 5}), (truncated, {"max_seconds": 60}), (garbage, {"max_seconds": 60})]:
        with pytest.raises((AudioTooLong, UndecodableAudio)) as here:
            decode_audio(path, **kwargs)
        with pytest.raises(type(here.value)) as there:
            pool.decode(path, **kwargs)
        assert there.value.message == here.value.message
    assert pool.probe(garbage) is None is probe_seconds(garbage)
    assert pool.started == 1  # a refused file is not a crash: the child stays


def test_native_wav_is_read_here(tmp_path: Path, pool: DecoderPool, jfk) -> None:
    native = write_wav(tmp_path / "native.wav", jfk)
    np.testing.assert_array_equal(pool.decode(native, max_seconds=60), decode_audio(native, max_seconds=60))
    assert pool.probe(native) == probe_seconds(native)
    assert pool.started == 0


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_a_failing_child_is_retried_once_then_the_file_fails(
    tmp_path: Path, pool: DecoderPool, jfk, fault: str
) -> None:
    bad = write_faulty(tmp_path / f"{fault}.wav", jfk[: 16_000 * 3], fault)
    error, words = EXPECTED[fault]
    started = time.monotonic()
    with pytest.raises(error) as failed:
        pool.decode(bad, max_seconds=60)
    assert words in failed.value.message and "twice" in failed.value.message, failed.value.message
    assert failed.value.permanent
    assert pool.started == 2  # the first child and exactly one fresh one
    if fault == "hang":
        assert 4.0 <= time.monotonic() - started < 10.0  # two deadlines of 2 s, each ended by SIGKILL
    good = write_faulty(tmp_path / "good.wav", jfk, None)
    np.testing.assert_array_equal(pool.decode(good, max_seconds=60), decode_audio(good, max_seconds=60))
    assert pool.started == 3


def test_close_stops_every_child(pool: DecoderPool) -> None:
    pool.decode(JFK, max_seconds=60)
    [child] = list(pool._children)
    pool.close()
    assert child.proc.poll() is not None


SCRIPT = """
    import os, sys, threading, time
    from pathlib import Path
    from worker.audio.isolated import DecoderPool

    pool = DecoderPool(2, memory_mb=256, timeout_seconds=600, module="tests.support.faulty_decoder")
    threading.Thread(target=pool.decode, args=(Path(sys.argv[2]),), kwargs={"max_seconds": 60}, daemon=True).start()
    while not pool._children:
        time.sleep(0.05)
    pool.decode(Path(sys.argv[1]), max_seconds=60)  # a second child, idle once this returns
    time.sleep(0.2)
    print(" ".join(str(child.proc.pid) for child in pool._children), flush=True)
    os._exit(0)  # as the worker does when it abandons its jobs: no finalizer runs
"""


def test_children_do_not_outlive_a_hard_exit(tmp_path: Path, jfk) -> None:
    hang = write_faulty(tmp_path / "hang.wav", jfk[:16_000], "hang")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(JFK), str(hang)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2, done.stderr
    eventually(lambda: not any(_alive(pid) for pid in pids), 10, "the decoder children exiting")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; who reaps it is up to PID 1


# ------------------------------------------------------------------------------------------ end to end


def test_a_worker_survives_decoder_crashes_and_fails_only_those_jobs(
    tmp_path: Path, secret: str, model_dir: Path, receiver: CallbackReceiver, jfk
) -> None:
    faults = ("segv", "oom", "hang")
    with LocalAws(visibility_timeout=60, max_receive_count=3) as local:
        backend = Backend(local, receiver)
        clips = [backend.upload(path, f"in/{path.name}") for path in (JFK, *VCTK)]
        good = [f"good-{i:02d}" for i in range(15)]
        for i, job_id in enumerate(good[:7]):
            backend.send(job_id, clips[i % len(clips)])
        for fault in faults:
            backend.send(
                f"bad-{fault}", backend.upload(write_faulty(tmp_path / f"{fault}.wav", jfk, fault), f"in/{fault}.wav")
            )
        for i, job_id in enumerate(good[7:]):
            backend.send(job_id, clips[i % len(clips)])
        env = local.worker_env(
            secret=secret,
            model_dir=model_dir,
            model=TEST_MODEL,
            concurrency=4,
            retry_base_seconds=1,
            max_idle_seconds=8,
            decoder_memory_mb=384,
            decoder_timeout_seconds=5,
            decoder_timeout_factor=0,
        )
        worker = WorkerProcess(env, tmp_path / "worker.log", ("tests.support.faults",))
        try:
            worker.wait_for_line(lambda r: r.get("message") == "idle limit reached; stopping", timeout=240)
            assert worker.wait(timeout=60) == 0  # alive to the end, and out by its idle limit
        finally:
            worker.kill()

        for job_id in good:
            result = backend.result(job_id)
            assert result is not None and result["status"] == "completed", (job_id, result)
            assert backend.callbacks(job_id), job_id  # the receiver verified its signature
        codes = {"segv": "decoder_crashed", "oom": "decoder_out_of_memory", "hang": "decoder_timeout"}
        for fault, code in codes.items():
            result = backend.result(f"bad-{fault}")
            assert result is not None and result["status"] == "failed", (fault, result)
            assert result["error"]["code"] == code, result["error"]
            assert backend.callbacks(f"bad-{fault}", status="failed"), fault
        assert "SIGSEGV" in backend.result("bad-segv")["error"]["message"]
        assert _dead_letter_codes(backend) == {f"bad-{fault}": code for fault, code in codes.items()}
        assert backend.counts() == (0, 0)
        failures = [r for r in worker.lines() if r.get("message") == "decoder process failed"]
        assert sorted(r["attempt"] for r in failures) == [1, 1, 1, 2, 2, 2]  # one retry each


def _dead_letter_codes(backend: Backend) -> dict[str, str]:
    found: dict[str, str] = {}
    for _ in range(5):
        reply = backend.sqs.receive_message(
            QueueUrl=backend.r.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        for message in reply.get("Messages", []):
            found[json.loads(message["Body"])["job_id"]] = message["MessageAttributes"]["error_code"]["StringValue"]
    return found


def test_settings_default_to_isolation_and_parse_the_escape_hatch() -> None:
    from worker.service.settings import Settings

    default = Settings.from_env({})
    assert (default.decoder_isolation, default.decoder_memory_mb) == (True, 1024)
    assert (default.decoder_timeout_seconds, default.decoder_timeout_factor) == (60.0, 0.05)
    env = {
        "WHISPER_DECODER_ISOLATION": "false",
        "WHISPER_DECODER_MEMORY_MB": "512",
        "WHISPER_DECODER_TIMEOUT_SECONDS": "5",
        "WHISPER_DECODER_TIMEOUT_FACTOR": "0",
    }
    parsed = Settings.from_env(env)
    fields = (parsed.decoder_isolation, parsed.decoder_memory_mb, parsed.decoder_timeout_seconds)
    assert (*fields, parsed.decoder_timeout_factor) == (False, 512, 5.0, 0.0)
