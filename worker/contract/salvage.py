"""What can be read from a message body without validating it: the job id, callback URL and metadata of a broken
message, whether it came in the legacy shape, and the URL syntax both rely on.

Standard library only (``message.py`` adds pydantic on top): the settle Lambda, whose runtime has no pydantic,
salvages dead letters with these very functions, so it names a job, its result folder and its callback exactly
as the worker does.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import urlsplit

from worker.aws import SQS_MAX_MESSAGE_BYTES

MAX_METADATA_BYTES: Final = 4096  # JSON encoding of ``metadata``, UTF-8
MAX_URL_LENGTH: Final = 2048

# The job id names the result folder ``results/<job_id>/``: this pattern is the path-traversal guard
# (no dots, slashes, whitespace or non-ASCII letters), so keep it ASCII-only and anchored.
JOB_ID_CHARS: Final = r"[A-Za-z0-9_-]{1,128}"
# fullmatch, not a ``$`` pattern, which would accept a trailing newline.
_JOB_ID_RE = re.compile(JOB_ID_CHARS)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE_RE = re.compile(r"\s")

LEGACY_MARKERS: Final = ("transcriptionId", "s3AudioUrl")


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host; returns it with the scheme lower-cased. ValueError otherwise."""
    if _WHITESPACE_RE.search(value) or _CONTROL_RE.search(value):
        raise ValueError("URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL scheme must be http or https")
    if not parts.hostname:
        raise ValueError("http(s) URL must have a host")
    return parts.scheme + value[len(parts.scheme) :]


def metadata_size(value: dict[str, Any]) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON; ValueError if it cannot be encoded."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"must be JSON-serialisable ({exc})") from None


def _drop_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key given twice is ambiguous: trust neither value.
    result: dict[str, Any] = {}
    seen_twice: set[str] = set()
    for key, value in pairs:
        if key in result or key in seen_twice:
            seen_twice.add(key)
            result.pop(key, None)
        else:
            result[key] = value
    return result


def is_job_id(value: object) -> bool:
    """Whether ``value`` is a valid job id (the result folder's name, so also the path-traversal guard)."""
    return isinstance(value, str) and _JOB_ID_RE.fullmatch(value) is not None


def is_legacy_body(body: str | bytes) -> bool:
    """Whether a message (valid or not) came in the legacy camelCase shape; never raises."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return False
    return isinstance(data, dict) and any(key in data for key in LEGACY_MARKERS)


def best_effort_ids(body: str | bytes) -> tuple[str | None, str | None, dict[str, Any]]:
    """``(job_id, callback_url, metadata)`` salvaged from a message that failed validation.

    Each part is returned only if it would itself be valid (job_id matches the job id pattern,
    callback_url is an http(s) URL with a host, metadata is a JSON object within
    MAX_METADATA_BYTES), so a failure result and callback can still be sent. Never raises.
    """
    job_id: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = {}
    try:
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        if not isinstance(body, str) or len(body) > 4 * SQS_MAX_MESSAGE_BYTES:
            return None, None, {}
        data = json.loads(body, object_pairs_hook=_drop_duplicates)
        if not isinstance(data, dict):
            return None, None, {}
        legacy = any(key in data for key in LEGACY_MARKERS)

        for key in ("transcriptionId", "job_id") if legacy else ("job_id", "transcriptionId"):
            value = data.get(key)
            if is_job_id(value):
                job_id = value
                break

        for key in ("callbackUrl", "callback_url") if legacy else ("callback_url", "callbackUrl"):
            value = data.get(key)
            if isinstance(value, str) and len(value) <= MAX_URL_LENGTH:
                try:
                    callback_url = check_http_url(value)
                    break
                except ValueError:
                    continue

        candidate = data.get("metadata")
        candidate = dict(candidate) if isinstance(candidate, dict) else {}
        if legacy and "userId" in data:
            candidate["userId"] = data["userId"]
        try:
            if metadata_size(candidate) <= MAX_METADATA_BYTES:
                metadata = candidate
        except ValueError:
            pass
    except Exception:  # by contract this never raises: keep whatever was salvaged so far
        pass
    return job_id, callback_url, metadata
