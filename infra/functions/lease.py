"""One scaler run at a time: a short lease object in S3, taken with conditional writes.

Reserved concurrency 1 already keeps two scheduled runs from executing at once; the lease makes "one run submits
at a time" a property of the code rather than of a deployment setting, so a manual ``aws lambda invoke``, a test
run, a throttled event delivered late, or someone lifting the concurrency limit cannot double-submit workers.

Why S3: the stack already has a bucket, S3 offers atomic create-if-absent (``If-None-Match: *``) and
compare-and-swap (``If-Match: <etag>``), and moto fakes both, so the overlap is tested for real. (The worker's
per-job claim in ``worker/service/claim.py`` uses the same two writes; the Lambda imports nothing from the worker.)
The lease expires on its own after ``seconds``, so a run killed at its timeout blocks at most one tick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import ClientError

# What S3 (and moto) answer when a conditional write loses: the object exists, or its etag moved on.
LOST_RACE_CODES: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass
class Lease:
    """``s3://bucket/key`` holds ``{"owner", "expires_at"}``; whoever writes it last, conditionally, holds it."""

    s3: Any
    bucket: str
    key: str
    seconds: float
    clock: Callable[[], float] = field(default=time.time)

    def _write(self, owner: str, expires_at: float, **condition: str) -> str:
        body = json.dumps({"owner": owner, "expires_at": expires_at}).encode()
        response = self.s3.put_object(
            Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json", **condition
        )
        return str(response["ETag"])

    def acquire(self, owner: str) -> str | None:
        """The etag of our lease, or None while another run's lease is live (or another run won the race)."""
        expires_at = self.clock() + self.seconds
        try:
            return self._write(owner, expires_at, IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) not in LOST_RACE_CODES:
                raise
        try:
            current = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            holder = json.loads(current["Body"].read() or b"{}")
            if float(holder.get("expires_at", 0)) > self.clock():
                return None
            return self._write(owner, expires_at, IfMatch=current["ETag"])  # take over an expired lease
        except ClientError as exc:
            if _code(exc) in LOST_RACE_CODES:
                return None
            raise

    def release(self, owner: str, etag: str) -> None:
        """Mark our lease expired, unless someone took it over meanwhile (then the write fails, harmlessly)."""
        try:
            self._write(owner, 0.0, IfMatch=etag)
        except ClientError as exc:
            if _code(exc) not in LOST_RACE_CODES:
                raise

    @contextmanager
    def held(self, owner: str) -> Iterator[bool]:
        """True inside the block when we hold the lease (released afterwards), False when another run does."""
        etag = self.acquire(owner)
        try:
            yield etag is not None
        finally:
            if etag is not None:
                self.release(owner, etag)
