"""Fetch a job's audio into a temporary file that is always removed: s3:// through boto3, https:// through httpx."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.errors import AudioNotFound, AudioTooLarge, BlockedUrl, EmptyAudio, FetchUnavailable
from worker.service.netguard import BlockedConnection, check_url, guarded_transport

_CHUNK = 1 << 20
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied", "NotFound"}


def _write_capped(chunks: Iterator[bytes], target: Any, cap: int) -> int:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise AudioTooLarge(f"audio is larger than the {cap} byte limit")
        target.write(chunk)
    return total


def _fetch_s3(url: str, target: Any, s3: Any, cap: int) -> int:
    bucket, _, key = url[len("s3://") :].partition("/")
    try:
        # One GET, no HEAD first: its Content-Length refuses an oversized object before a byte is read.
        response = s3.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > cap:
            response["Body"].close()
            raise AudioTooLarge(f"audio is {response['ContentLength']} bytes, over the {cap} byte limit")
        return _write_capped(response["Body"].iter_chunks(_CHUNK), target, cap)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in _MISSING_CODES:
            raise AudioNotFound(f"{url} not found or not readable ({code})") from exc
        raise FetchUnavailable(f"S3 error fetching {url}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise FetchUnavailable(f"S3 unreachable fetching {url}: {exc}") from exc


def _fetch_http(url: str, target: Any, cap: int, timeout: float, allow_http: bool, allow_private: bool) -> int:
    check_url(url, allow_http=allow_http, allow_private=allow_private)  # early, readable refusal
    try:
        with (
            # The guarded transport re-checks the address it actually connects to (DNS rebinding).
            httpx.Client(
                transport=guarded_transport(allow_private=allow_private),
                timeout=timeout,
                follow_redirects=False,
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code in (401, 403, 404, 410):
                raise AudioNotFound(f"{url} answered {response.status_code}")
            if 300 <= response.status_code < 400:  # redirects (and 304/300) are not audio
                raise AudioNotFound(f"{url} redirects; give the final URL")
            if response.status_code >= 400:
                raise FetchUnavailable(f"{url} answered {response.status_code}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > cap:
                raise AudioTooLarge(f"audio is {declared} bytes, over the {cap} byte limit")
            return _write_capped(response.iter_bytes(_CHUNK), target, cap)
    except BlockedConnection as exc:  # an httpx.HTTPError too, so it must come first
        raise BlockedUrl(f"cannot fetch {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchUnavailable(f"cannot fetch {url}: {exc}") from exc


@contextlib.contextmanager
def fetched(
    url: str,
    *,
    s3: Any,
    max_bytes: int,
    timeout: float,
    allow_http: bool = False,
    allow_private: bool = False,
) -> Iterator[Path]:
    """Yield a local path holding the audio; the file is deleted on exit, whatever happens."""
    fd, name = tempfile.mkstemp(prefix="whisper-audio-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as target:
            if url.startswith("s3://"):
                size = _fetch_s3(url, target, s3, max_bytes)
            else:
                size = _fetch_http(url, target, max_bytes, timeout, allow_http, allow_private)
        if size == 0:
            raise EmptyAudio(f"{url} is empty (0 bytes)")
        yield path
    finally:
        path.unlink(missing_ok=True)
