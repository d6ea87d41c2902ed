"""The decoder's child process: probes and decodes untrusted files for ``worker.audio.isolated``, one at a time.

FFmpeg parses whatever a job's audio URL returns. A segfault, an abort, a runaway allocation or an endless loop in
it would take down a worker holding several messages, so that parsing happens here, in a process of its own that
the worker can lose. The process:

* caps its own memory (RLIMIT_DATA, ``WHISPER_DECODER_MEMORY_MB``): a runaway allocation becomes a MemoryError
  here, reported as ``out_of_memory``, after which the process exits so the next request gets a clean one;
* dies with the worker: PR_SET_PDEATHSIG on Linux, and it leaves its loop when the socket to the worker closes;
* streams decoded samples, float32 as ``decode_audio`` returns them, into the file the worker passed with the
  request (a memfd that the worker maps): no copy through the socket, no named file to leak, and its own memory
  stays flat (~85 MB) however long the file.

    python -m worker.audio.child SOCKET_FD PARENT_PID MEMORY_MB

Frames on the socket are a 4-byte big-endian length and a JSON object; a request may carry one file descriptor.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.audio.decode import decode_pcm16, probe_seconds
from worker.errors import AudioTooLong, UndecodableAudio

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20  # requests and replies are a few hundred bytes
OUT_OF_MEMORY = "out_of_memory"

Hook = Callable[[str, Path], None]  # called with (op, path) before each request; tests inject faults with it


def send_frame(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    body = json.dumps(message).encode()
    frame = HEADER.pack(len(body)) + body
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else sock.send(frame)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next frame and the descriptors that came with it; None when the other side has closed."""
    data, fds, _, _ = socket.recv_fds(sock, 64 * 1024, 1)
    if not data:
        return None
    while len(data) < HEADER.size or len(data) < HEADER.size + _size(data):
        more = sock.recv(64 * 1024)
        if not more:
            return None
        data += more
    return json.loads(data[HEADER.size :]), fds


def _size(data: bytes) -> int:
    (size,) = HEADER.unpack_from(data)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    return size


def main(argv: Sequence[str] | None = None, *, before: Hook | None = None) -> int:
    fd, parent, memory_mb = (int(arg) for arg in (sys.argv[1:] if argv is None else argv))
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker's group: the worker decides
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    with socket.socket(fileno=fd) as sock:
        send_frame(sock, {"ready": os.getpid()})
        while (got := recv_frame(sock)) is not None:
            request, fds = got
            reply = serve(request, fds[0] if fds else None, before)
            send_frame(sock, reply)
            if reply.get("error") == OUT_OF_MEMORY:
                return 0  # the heap may be in any state: the worker starts a fresh process
    return 0


def serve(request: dict[str, Any], out: int | None, before: Hook | None = None) -> dict[str, Any]:
    """One request: ``{"op": "probe", "path"}`` or ``{"op": "decode", "path", "max_seconds"}`` with ``out``."""
    path = Path(request["path"])
    try:
        if before is not None:
            before(request["op"], path)
        if request["op"] == "probe":
            return {"seconds": probe_seconds(path)}
        assert out is not None, "a decode request carries its output file"
        return {"samples": _decode_into(out, path, float(request["max_seconds"]))}
    except MemoryError:
        pass  # answered below, once the traceback (and what it holds) is gone
    except (AudioTooLong, UndecodableAudio) as exc:
        if not isinstance(exc.__cause__, MemoryError):  # FFmpeg's ENOMEM arrives as UndecodableAudio
            return {"error": type(exc).__name__, "message": exc.message}
    except Exception as exc:
        return {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}
    finally:
        if out is not None:
            with contextlib.suppress(OSError):
                os.close(out)
    return {"error": OUT_OF_MEMORY, "message": "the decoder ran out of memory"}


def _decode_into(out: int, path: Path, max_seconds: float) -> int:
    with os.fdopen(os.dup(out), "wb") as file:

        def write(chunk: np.ndarray) -> None:
            file.write((chunk.astype(np.float32) / 32768.0).data)  # the values decode_audio returns

        return decode_pcm16(path, max_seconds=max_seconds, sink=write)


def _die_with(parent: int) -> None:
    """SIGKILL when the worker's spawning thread ends (the pool spawns from one long-lived thread); and out at
    once if the worker is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
