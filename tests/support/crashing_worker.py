"""A ``whisper-worker run`` that dies the way a native crash kills a worker: SIGKILL to its own process the moment
it starts a job whose id begins with ``TEST_CRASH_JOB_PREFIX``. Nothing in the worker can catch or report it.

    python -m tests.support.crashing_worker      # like ``whisper-worker run``

``tests.support.faults`` installs the same hook when ``TEST_CRASH_JOB_PREFIX`` is set.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from worker.contract import best_effort_ids


def install_crash_hook(prefix: str) -> None:
    from worker.service.pipeline import JobProcessor

    process = JobProcessor.process

    def crashing(self: JobProcessor, message: Any, **kwargs: Any) -> Any:
        job_id = best_effort_ids(message.body)[0] or ""
        if job_id.startswith(prefix):
            os.kill(os.getpid(), signal.SIGKILL)
        return process(self, message, **kwargs)

    JobProcessor.process = crashing  # type: ignore[method-assign]


def main() -> int:
    from worker import cli

    install_crash_hook(os.environ["TEST_CRASH_JOB_PREFIX"])
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
