"""Spot interruption notices: EC2 announces a reclaim two minutes ahead, and the worker hands its work back in time.

The notice comes from the instance metadata service (``spot/instance-action``), which the worker's container must
not reach: it parses untrusted media and would otherwise be able to read the instance's credentials. So a watcher
on the host (``infra/host/interruption-watch.sh``, installed by the launch template) polls the metadata service and
writes the notice, exactly as EC2 words it, into a file the container mounts read-only:

    {"action": "terminate", "time": "2026-12-06T18:02:00Z"}

``NoticeWatch`` polls that file (``WHISPER_INTERRUPTION_FILE``) and calls the worker once when it appears.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from worker.ops.logs import logger


@dataclass(frozen=True)
class Notice:
    action: str  # "terminate", "stop" or "hibernate": the worker's answer is the same
    at: float  # when the instance goes, in epoch seconds

    def seconds_left(self, now: float | None = None) -> float:
        return self.at - (time.time() if now is None else now)


def read_notice(path: Path) -> Notice | None:
    """The notice in ``path``, or None when there is none; never raises (a half-written file reads as none yet)."""
    try:
        document = json.loads(path.read_text())
        at = datetime.fromisoformat(str(document["time"]).replace("Z", "+00:00")).timestamp()
        return Notice(str(document.get("action", "terminate")), at)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("unreadable interruption notice; ignoring it for now", extra={"error": str(exc)})
        return None


class NoticeWatch:
    """Polls the notice file on a daemon thread and calls ``on_notice`` once, from that thread."""

    def __init__(self, path: Path, on_notice: Callable[[Notice], None], *, interval: float = 1.0) -> None:
        self.path = path
        self._on_notice = on_notice
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interruption-watch", daemon=True)

    def __enter__(self) -> NoticeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            notice = read_notice(self.path)
            if notice is not None:
                self._on_notice(notice)
                return
