"""A decoder child that misbehaves on purpose, for one marked file among good ones: no production setting.

    python -m tests.support.faulty_decoder SOCKET_FD PARENT_PID MEMORY_MB    # what DecoderPool(module=...) starts

It is ``worker.audio.child`` with a hook: a file whose bytes hold ``whisper-test-fault:<fault>`` makes the child
segfault (``segv``), abort (``abort``), allocate until its memory limit stops it (``oom``) or never answer
(``hang``); every other file decodes as in production. ``write_faulty`` writes such a file: a stereo WAV (so it
goes to the child, not the in-process path for 16 kHz mono WAVs) with the marker in a JUNK chunk, which FFmpeg and
the ``wave`` module both skip.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import time
import wave
from pathlib import Path

import numpy as np

from worker.audio import SAMPLE_RATE, child

MARKER = b"whisper-test-fault:"
FAULTS = ("segv", "abort", "oom", "hang")
MODULE = "tests.support.faulty_decoder"


def fault_in(path: Path) -> str | None:
    data = path.read_bytes()
    at = data.find(MARKER)
    if at < 0:
        return None
    tail = data[at + len(MARKER) : at + len(MARKER) + 8]
    return next((fault for fault in FAULTS if tail.startswith(fault.encode())), None)


def inject(op: str, path: Path) -> None:
    fault = fault_in(path)
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "abort":
        os.abort()
    elif fault == "oom":
        hog = []
        while True:  # until RLIMIT_DATA refuses: MemoryError
            hog.append(np.ones(16 * 1024 * 1024, dtype=np.uint8))
    elif fault == "hang":
        while True:
            time.sleep(3600)


def write_faulty(path: Path, samples: np.ndarray, fault: str | None) -> Path:
    """``samples`` (float32, 16 kHz mono) as a stereo s16 WAV, marked with ``fault`` when it is not None."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.repeat(pcm, 2).tobytes())
    if fault is not None:
        data = path.read_bytes()
        body = MARKER + fault.encode()
        body += b"\0" * (len(body) % 2)
        junk = b"JUNK" + struct.pack("<I", len(body)) + body
        fmt_end = 12 + 8 + struct.unpack_from("<I", data, 16)[0]
        data = data[:fmt_end] + junk + data[fmt_end:]
        path.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    return path


if __name__ == "__main__":
    sys.exit(child.main(before=inject))
