"""Strip credentials from URLs: presigned query strings (``X-Amz-Signature=…``) and ``user:password@``.

Job messages carry audio and callback URLs that are often presigned; anything that repeats them — logs, error
messages in result.json, callbacks and DLQ attributes — goes through ``redact`` first.
"""

from __future__ import annotations

import re
from typing import Any

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
