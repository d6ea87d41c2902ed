"""One structured JSON logger for the worker (aws-lambda-powertools), keys appended per job.

Every line goes through ``redact``: audio and callback URLs arrive from job messages and are often presigned,
so a query string (``X-Amz-Signature=…``) or ``user:password@`` in a URL is a credential. The formatter scrubs
them from every string it serialises — message, extra keys, appended keys and tracebacks alike — so no call
site has to remember to.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

REDACTED = "[redacted]"

# scheme://authority/path?query#fragment, up to whitespace, a quote or a bracket.
_URL_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s\"'<>`()\[\]{}]+)")
_AUTHORITY_END_RE = re.compile(r"[/?#]")
_QUERY_RE = re.compile(r"[?#]")


def _redact_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    end = _AUTHORITY_END_RE.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rsplit('@', 1)[1]}"
    query = _QUERY_RE.search(tail)
    if query:
        tail = f"{tail[: query.start()]}?{REDACTED}"
    return match["scheme"] + authority + tail


def redact(value: Any) -> Any:
    """``value`` with credentials and query strings removed from every URL in every string inside it."""
    if isinstance(value, str):
        return _URL_RE.sub(_redact_url, value) if "://" in value else value
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))  # what the JSON serialiser would write anyway (exceptions, paths, ...)


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
