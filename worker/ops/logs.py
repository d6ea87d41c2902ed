"""One structured JSON logger for the worker (aws-lambda-powertools), job keys appended per thread.

Every line goes through ``redact``: audio and callback URLs arrive from job messages and are often presigned,
so a query string (``X-Amz-Signature=…``) or ``user:password@`` in a URL is a credential. The formatter scrubs
them from every string it serialises — message, extra keys, appended keys and tracebacks alike — so no call
site has to remember to.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from worker.ops.redact import redact


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with ``redact`` applied to the finished record."""

    def serialize(self, log: Any) -> str:
        return super().serialize(redact(log))


_LEVEL = os.environ.get("WHISPER_LOG_LEVEL", "INFO")

logger = Logger(
    service=os.environ.get("WHISPER_SERVICE_NAME", "whisper-batch"),
    level=_LEVEL,
    logger_formatter=RedactingFormatter(),
)

# Modules that use the standard library's logging (``logging.getLogger(__name__)`` under ``worker.``) write
# through the same handler, so their lines are JSON too and carry the job's appended keys.
_stdlib = logging.getLogger("worker")
if logger.registered_handler not in _stdlib.handlers:
    _stdlib.addHandler(logger.registered_handler)
    _stdlib.setLevel(logger.log_level)

# Per-job keys live in the thread's own context (powertools' thread-safe keys), not on the shared formatter:
# with WHISPER_CONCURRENCY > 1 several jobs log at once, each from its own thread, and must not swap ids.
JOB_KEYS = ("job_id", "message_id", "receive_count", "model")


def add_job_keys(**keys: object) -> None:
    """Add keys to every later line logged by this thread (and only this thread)."""
    logger.thread_safe_append_keys(**keys)


def clear_job_keys() -> None:
    """Drop this thread's job keys, so a thread that outlives one job never logs under its ids."""
    logger.thread_safe_remove_keys(JOB_KEYS)
