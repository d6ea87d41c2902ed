"""Probing and decoding untrusted files in a pool of child processes, so a crash in FFmpeg fails one job only.

    DecoderPool     ``probe`` and ``decode`` as ``worker.audio.decode`` does them, each request in a child process
    pool_size       how many children a worker keeps: one per message in progress, at most one per core
    CHILD_MODULE    the child's entry point (``worker.audio.child``); tests point a pool at a faulty one

Children are started lazily, one per concurrent request at most (``size``; more requests wait for one), with
``python -m`` (a fresh interpreter, never a fork of this multithreaded process that holds torch), and they live
for many requests: starting an interpreter and PyAV costs ~0.2 s, more than decoding a clip. A child that dies
(any signal or exit code), runs out of its memory limit or misses its deadline is killed (SIGKILL) and dropped,
and the request is tried once more in another child; failing again, the job fails with the permanent
``DecoderCrashed``, ``DecoderOutOfMemory`` or ``DecoderTimeout``. ``AudioTooLong`` and ``UndecodableAudio`` raised
in a child come back as themselves, with their messages.

Samples come back through a file in memory that never has a name (memfd; an unlinked temp file off Linux): this
process creates it, passes its descriptor with the request, and maps what the child wrote copy-on-write, so the job
holds the only copy of its samples and nothing is left behind by a crash, a timeout or this process's own death,
nor in /dev/shm, which containers cap at 64 MB. The mapping is writable (private): torch.from_numpy takes it
without a warning.

A 16 kHz mono s16 WAV is read here, without a child: that path is the standard library's ``wave`` and numpy,
bounded by ``max_seconds``, and never reaches FFmpeg, so isolating it would add a round trip for no protection.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

from worker.audio.child import OUT_OF_MEMORY, recv_frame, send_frame
from worker.audio.decode import probe_native_wav, read_native_wav
from worker.errors import (
    AudioTooLong,
    DecoderCrashed,
    DecoderOutOfMemory,
    DecoderTimeout,
    DecoderUnavailable,
    JobError,
    UndecodableAudio,
)
from worker.ops.logs import logger

CHILD_MODULE = "worker.audio.child"
STARTUP_SECONDS = 60.0  # a fresh interpreter importing numpy and the decoder, on a machine busy transcribing
STOP_SECONDS = 2.0  # for an idle child to leave once its socket closes, before SIGKILL
# A decoder needs no BLAS threads: each would reserve a stack counted against the child's memory limit.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ERRORS: dict[str, type[JobError]] = {"AudioTooLong": AudioTooLong, "UndecodableAudio": UndecodableAudio}


class _Failed(Exception):
    """One child's failure on one request: ``kind`` is "crashed", "out_of_memory" or "timeout"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _exit_failure(returncode: int) -> _Failed:
    if returncode >= 0:
        return _Failed("crashed", f"the decoder process exited with code {returncode}")
    name = _signal_name(-returncode)
    if -returncode == signal.SIGKILL:  # not ours (ours are timeouts): the kernel's OOM killer, most likely
        return _Failed(OUT_OF_MEMORY, "the decoder process was killed (SIGKILL), most likely out of memory")
    return _Failed("crashed", f"the decoder process died of {name}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Child:
    """One decoder process and the worker's end of its socket."""

    def __init__(self, module: str, memory_mb: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            args = [str(theirs.fileno()), str(os.getpid()), str(memory_mb)]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, **CHILD_ENV},
            )
        self.sock = ours
        self.requests = 0
        self._receive(STARTUP_SECONDS)  # {"ready": pid}

    def call(self, request: dict[str, Any], out: int | None, timeout: float) -> dict[str, Any]:
        self.requests += 1
        with contextlib.suppress(OSError):  # it died while idle: the receive below reports how
            send_frame(self.sock, request, [out] if out is not None else [])
        return self._receive(timeout)

    def _receive(self, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        try:
            got = recv_frame(self.sock)
        except TimeoutError:
            self.kill()
            raise _Failed("timeout", f"the decoder did not finish within {timeout:.0f} s") from None
        except (OSError, ValueError):
            got = None
        if got is None:
            self.kill()  # reaps it: a socket closes before its process is gone
            raise _exit_failure(self.proc.returncode)
        return got[0]

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()  # no-op on a process already reaped
        self.proc.wait()
        self.sock.close()

    def stop(self) -> None:
        """Close its socket (an idle child leaves its loop), then SIGKILL whatever is still running."""
        self.sock.close()
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()


class DecoderPool:
    """Up to ``size`` long-lived decoder processes, each serving one request at a time; thread-safe.

    Each child limits its memory to ``memory_mb`` (0: no limit); a request may take ``timeout_seconds`` plus
    ``timeout_factor`` seconds per second of audio it may return (``max_seconds``; probes get the base only).
    """

    def __init__(
        self,
        size: int,
        *,
        memory_mb: int,
        timeout_seconds: float,
        timeout_factor: float = 0.0,
        module: str | None = None,
    ) -> None:
        self.memory_mb = memory_mb
        self.timeout_seconds = timeout_seconds
        self.timeout_factor = timeout_factor
        self.module = module or CHILD_MODULE
        self.started = 0  # children spawned, for tests and logs
        self._slots = threading.BoundedSemaphore(max(1, size))
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        # PR_SET_PDEATHSIG fires when the thread that spawned a child ends, not the process: job threads come and
        # go, so every child is spawned from this one thread, which lives as long as the pool.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="decoder-spawn")
        self._closed = weakref.finalize(self, _close_all, self._lock, self._children, self._spawner)

    def probe(self, path: Path) -> float | None:
        """``probe_seconds`` in a child: the header's length, or None when unknown or unreadable."""
        seconds = probe_native_wav(path)
        if seconds is not None:
            return seconds
        reply, _ = self._request({"op": "probe", "path": str(path)}, self.timeout_seconds, output=False)
        return reply["seconds"]

    def decode(self, path: Path, *, max_seconds: float) -> np.ndarray:
        """``decode_audio`` in a child: the samples, mapped from the file the child wrote."""
        audio = read_native_wav(path, max_seconds=max_seconds)
        if audio is not None:
            return audio
        request = {"op": "decode", "path": str(path), "max_seconds": max_seconds}
        _, audio = self._request(request, self.timeout_seconds + self.timeout_factor * max_seconds, output=True)
        assert audio is not None
        return audio

    def close(self) -> None:
        """Stop every child; also done when the pool is collected or the interpreter exits."""
        self._closed()

    def _request(
        self, request: dict[str, Any], timeout: float, *, output: bool
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        failed: _Failed | None = None
        for attempt in (1, 2):
            with _output_file() if output else contextlib.nullcontext() as out:
                try:
                    reply = self._once(request, out.fileno() if out else None, timeout)
                except _Failed as failure:
                    failed = failure
                    logger.warning(
                        "decoder process failed",
                        extra={"failure": failure.kind, "detail": failure.detail, "attempt": attempt},
                    )
                    continue
                if "error" in reply:
                    error = ERRORS.get(reply["error"])
                    if error is None:  # a bug in the child, as it would have been here: the message is retried
                        raise RuntimeError(f"decoder: {reply['message']}")
                    raise error(reply["message"])
                return reply, _mapped(out, reply["samples"]) if out else None
        assert failed is not None
        raise self._permanent(failed, timeout)

    def _once(self, request: dict[str, Any], out: int | None, timeout: float) -> dict[str, Any]:
        child = self._acquire()
        try:
            reply = child.call(request, out, timeout)
        except BaseException:
            self._drop(child)
            raise
        if reply.get("error") == OUT_OF_MEMORY:
            self._drop(child)  # it exits after saying so
            raise _Failed(OUT_OF_MEMORY, reply["message"])
        self._give_back(child)
        return reply

    def _acquire(self) -> _Child:
        self._slots.acquire()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            child = self._spawner.submit(_Child, self.module, self.memory_mb).result()
        except (OSError, _Failed) as exc:
            self._slots.release()
            raise DecoderUnavailable(f"the decoder process did not start: {exc}") from exc
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._children.add(child)
            self.started += 1
        return child

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            self._idle.append(child)
        self._slots.release()

    def _drop(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._children.discard(child)
        self._slots.release()

    def _permanent(self, failed: _Failed, timeout: float) -> JobError:
        if failed.kind == "timeout":
            return DecoderTimeout(
                f"decoding did not finish within its deadline of {timeout:.0f} s, on this file twice "
                "(WHISPER_DECODER_TIMEOUT_SECONDS + WHISPER_DECODER_TIMEOUT_FACTOR per second of audio)"
            )
        if failed.kind == OUT_OF_MEMORY:
            return DecoderOutOfMemory(
                f"{failed.detail}, on this file twice (limit: WHISPER_DECODER_MEMORY_MB={self.memory_mb})"
            )
        return DecoderCrashed(f"{failed.detail}, on this file twice")


def pool_size(concurrency: int) -> int:
    """Children for a worker running ``concurrency`` messages: one each, but at most one per core the process may
    use. Decoding is CPU-bound, so more would not finish sooner; each costs ~50 MB and an interpreter start."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(concurrency, cores or 1))


def _output_file() -> IO[bytes]:
    """A file in memory without a name, for one request's samples: memfd on Linux, else an unlinked temp file.

    Not a file in /dev/shm: a container's /dev/shm is 64 MB unless configured (Docker's and ECS's default), 17
    minutes of float32 audio. A memfd has no such cap (only the memory limit that the audio budget respects)."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("whisper-decoded", os.MFD_CLOEXEC), "w+b")
    return tempfile.TemporaryFile()


def _mapped(out: IO[bytes], samples: int) -> np.ndarray:
    size = samples * np.dtype(np.float32).itemsize
    written = os.fstat(out.fileno()).st_size
    if samples <= 0 or written != size:
        raise RuntimeError(f"decoder: {written} bytes written for {samples} samples")
    view = mmap.mmap(out.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(view, dtype=np.float32)  # the mapping outlives the file's descriptor


def _close_all(lock: threading.Lock, children: set[_Child], spawner: ThreadPoolExecutor) -> None:
    with lock:
        stopping = list(children)
        children.clear()
    for child in stopping:
        child.stop()
    spawner.shutdown(wait=False)
