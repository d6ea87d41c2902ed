"""A ``whisper-worker run`` that dies the way a native crash kills a worker: SIGKILL to its own process the moment
it starts work on a job whose id begins with ``TEST_CRASH_JOB_PREFIX``, its claim taken. Nothing in the worker can
catch or report it.

    python -m tests.support.crashing_worker      # like ``whisper-worker run``

``tests.support.faults`` installs the same hook when ``TEST_CRASH_JOB_PREFIX`` is set.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def install_crash_hook(prefix: str) -> None:
    """Crash where a native crash strikes: inside the work, with the job's claim taken (as FFmpeg or the model would,
    mid-job), not before the worker has touched it."""
    from worker.service.pipeline import JobProcessor

    transcribe = JobProcessor._transcribe

    def crashing(self: JobProcessor, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.job_id.startswith(prefix):
            os.kill(os.getpid(), signal.SIGKILL)
        return transcribe(self, request, *args, **kwargs)

    JobProcessor._transcribe = crashing  # type: ignore[method-assign]


def main() -> int:
    from worker import cli

    install_crash_hook(os.environ["TEST_CRASH_JOB_PREFIX"])
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
