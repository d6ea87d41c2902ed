"""Fetch a job's audio into a temporary file that is always removed: s3:// through boto3, https:// through httpx.

Two clocks: ``timeout`` bounds each connect and read, and an overall deadline bounds the whole download, so a
source that trickles a byte at a time (each read in time) cannot hold a worker's slot for hours. The deadline
grows with the longest audio the worker accepts (``fetch_deadline``); it is checked as each piece arrives, so the
download stops at most one read timeout past it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.errors import AudioNotFound, AudioTooLarge, BlockedUrl, EmptyAudio, FetchTooSlow, FetchUnavailable
from worker.service.netguard import BlockedConnection, check_url, guarded_transport

_CHUNK = 1 << 20
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied", "NotFound"}
# Download time allowed per second of the longest accepted audio: the 6-hour default gets 18 minutes on top of the
# read timeout, which still needs only 1.8 MB/s for the 2 GiB byte cap. Any real source is far faster.
FETCH_SECONDS_PER_AUDIO_SECOND = 0.05
DEFAULT_MAX_AUDIO_SECONDS = 6 * 3600.0  # = Settings.max_audio_seconds' default


def fetch_deadline(max_audio_seconds: float, timeout: float) -> float:
    """Seconds the whole download may take: the read timeout plus a share of the longest accepted audio."""
    return timeout + max_audio_seconds * FETCH_SECONDS_PER_AUDIO_SECOND


class _Clock:
    """The download's overall deadline, checked between pieces."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.ends = time.monotonic() + seconds

    def check(self, received: int) -> None:
        if time.monotonic() > self.ends:
            raise FetchTooSlow(
                f"{self.url} did not arrive within {self.seconds:.0f} s (only {received} bytes came): the source is "
                "too slow"
            )


def _write_capped(chunks: Iterator[bytes], target: Any, cap: int, clock: _Clock) -> int:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise AudioTooLarge(f"audio is larger than the {cap} byte limit")
        target.write(chunk)
        clock.check(total)
    return total


def _fetch_s3(url: str, target: Any, s3: Any, cap: int, clock: _Clock) -> int:
    bucket, _, key = url[len("s3://") :].partition("/")
    try:
        # One GET, no HEAD first: its Content-Length refuses an oversized object before a byte is read.
        response = s3.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > cap:
            response["Body"].close()
            raise AudioTooLarge(f"audio is {response['ContentLength']} bytes, over the {cap} byte limit")
        return _write_capped(response["Body"].iter_chunks(_CHUNK), target, cap, clock)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in _MISSING_CODES:
            raise AudioNotFound(f"{url} not found or not readable ({code})") from exc
        raise FetchUnavailable(f"S3 error fetching {url}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise FetchUnavailable(f"S3 unreachable fetching {url}: {exc}") from exc


def _fetch_http(
    url: str, target: Any, cap: int, timeout: float, allow_http: bool, allow_private: bool, clock: _Clock
) -> int:
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
            # Pieces as they arrive (iter_bytes with a size would wait for a whole chunk), so the clock is read often.
            return _write_capped(response.iter_bytes(), target, cap, clock)
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
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
) -> Iterator[Path]:
    """Yield a local path holding the audio; the file is deleted on exit, whatever happens.

    ``timeout`` bounds each connect and read; the whole download must end within ``fetch_deadline``."""
    clock = _Clock(url, fetch_deadline(max_audio_seconds, timeout))
    fd, name = tempfile.mkstemp(prefix="whisper-audio-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as target:
            if url.startswith("s3://"):
                size = _fetch_s3(url, target, s3, max_bytes, clock)
            else:
                size = _fetch_http(url, target, max_bytes, timeout, allow_http, allow_private, clock)
        if size == 0:
            raise EmptyAudio(f"{url} is empty (0 bytes)")
        yield path
    finally:
        path.unlink(missing_ok=True)
