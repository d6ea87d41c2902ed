"""One worker at a time per job: a leased claim object next to the results, taken with S3 conditional writes.

Why S3 and not a database: the results bucket is already the job's source of truth, S3 now offers atomic
create-if-absent (``If-None-Match: *``) and compare-and-swap (``If-Match: <etag>``), and the worker needs no
other service. The claim is a lease, renewed while the job runs, so a worker killed with ``kill -9`` blocks
the job only until its lease runs out; a live worker takes over an expired claim with a compare-and-swap on
the etag it read, so two workers can never both believe they hold it.

A live holder renews every third of its lease, so its lease never runs below two thirds. A claim on *this very
message* (owner ``host:pid:<message id>``) with less than half its lease left has missed a renewal: its holder
died, SQS redelivered the message, and waiting out the rest of the lease would only cost the message another
receive. Such a claim is taken over at once; a claim from another message of the same job is still waited for.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker import aws
from worker.errors import StoreUnavailable
from worker.ops.logs import logger

CLAIM_FILE = ".claim"
# Below this share of its lease a claim has missed a renewal (renewals come every third): its holder is gone.
STALE_LEASE_SHARE = 0.5


def owner_name(host: str, pid: int, message_id: str) -> str:
    return f"{host}:{pid}:{message_id}"


def same_message(owner: str, other: str) -> bool:
    """Whether two owners held the same SQS message (their last field), in different processes."""
    return owner != other and owner.rsplit(":", 1)[-1] == other.rsplit(":", 1)[-1]


class ClaimHeld(Exception):
    """Another worker holds the job; ``seconds_left`` says when its lease ends unless renewed."""

    def __init__(self, owner: str, seconds_left: float) -> None:
        super().__init__(f"job is being processed by {owner} (lease ends in {seconds_left:.0f} s)")
        self.owner = owner
        self.seconds_left = seconds_left


@dataclass
class _Lease:
    key: str
    etag: str


class ClaimStore:
    def __init__(self, s3: Any, bucket: str, *, clock: Any = time.time) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.clock = clock
        self._live: dict[str, _Lease] = {}  # leases held by running jobs, for release_all()

    def _write(self, key: str, owner: str, lease_seconds: float, **condition: str) -> str:
        body = json.dumps({"owner": owner, "expires_at": self.clock() + lease_seconds})
        response = self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json", **condition
        )
        return response["ETag"]

    def acquire(self, key: str, owner: str, lease_seconds: float) -> _Lease:
        """Create the claim, or take over an expired one; raise ClaimHeld if a live worker has it."""
        try:
            try:
                return _Lease(key, self._write(key, owner, lease_seconds, IfNoneMatch="*"))
            except ClientError as exc:
                if aws.error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
            current = self.s3.get_object(Bucket=self.bucket, Key=key)
            holder = json.loads(current["Body"].read())
            seconds_left = float(holder.get("expires_at", 0)) - self.clock()
            previous = str(holder.get("owner"))
            orphaned = same_message(previous, owner) and seconds_left < lease_seconds * STALE_LEASE_SHARE
            if seconds_left > 0 and previous != owner and not orphaned:
                raise ClaimHeld(previous, seconds_left)
            try:
                return _Lease(key, self._write(key, owner, lease_seconds, IfMatch=current["ETag"]))
            except ClientError as exc:
                if aws.error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"):
                    raise ClaimHeld("another worker", lease_seconds) from exc
                raise
        except ClientError as exc:
            if aws.error_code(exc) == "NoSuchKey":  # released between our two calls: simply try again later
                raise ClaimHeld("another worker", 1.0) from exc
            raise StoreUnavailable(f"cannot claim {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cannot claim {key}: {exc}") from exc

    def renew(self, lease: _Lease, owner: str, lease_seconds: float) -> bool:
        try:
            lease.etag = self._write(lease.key, owner, lease_seconds, IfMatch=lease.etag)
            return True
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not renew job claim", extra={"error": str(exc)})
            return False

    def holder(self, key: str) -> str | None:
        """The owner named in the claim at ``key`` (live or expired), or None when there is none or S3 fails."""
        try:
            current = self.s3.get_object(Bucket=self.bucket, Key=key)
            return str(json.loads(current["Body"].read()).get("owner")) or None
        except (ClientError, BotoCoreError, ValueError, AttributeError):
            return None

    def release_key(self, key: str) -> None:
        """Drop the claim this process holds at ``key``, if any (a job handed back to the queue while it runs)."""
        lease = self._live.pop(key, None)
        if lease is not None:
            self.release(lease)

    def release(self, lease: _Lease) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=lease.key)
        except (ClientError, BotoCoreError) as exc:  # harmless: the lease simply expires
            logger.warning("could not release job claim", extra={"error": str(exc)})

    @contextmanager
    def held(self, key: str, owner: str, lease_seconds: float) -> Iterator[None]:
        """Hold the claim for the block, renewing it every third of the lease; release it afterwards."""
        lease = self.acquire(key, owner, lease_seconds)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(max(1.0, lease_seconds / 3)):
                self.renew(lease, owner, lease_seconds)

        renewer = threading.Thread(target=renew, name="claim-renewal", daemon=True)
        renewer.start()
        self._live[key] = lease
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            if self._live.pop(key, None) is not None:
                self.release(lease)

    def release_all(self) -> None:
        """Drop every claim still held, for a worker abandoning its jobs at shutdown: the next worker need not
        wait for the lease to run out."""
        for key in list(self._live):
            lease = self._live.pop(key, None)
            if lease is not None:
                self.release(lease)
