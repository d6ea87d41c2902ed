"""Deliver a job's result summary to the backend's ``callback_url``, signed per Standard Webhooks.

Why it looks like this:

* The transcript and result document are written to S3 *before* the callback is sent, so a callback
  that never arrives loses nothing: the backend can always read the result from storage.  A failing
  callback is therefore reported (``CallbackOutcome``), never raised, and never fails the job.
* Every attempt carries the same ``webhook-id`` (derived deterministically from the caller's
  ``event_id``, e.g. ``"<job_id>:<status>"``), as the spec requires for retries, so a receiver that
  saw attempt 1 but whose answer was lost can de-duplicate attempt 2.  ``webhook-timestamp`` is taken
  afresh for each attempt and signed with it, so a slow retry still passes the receiver's
  freshness window.
* The signature covers exactly the bytes sent: compact JSON, UTF-8, no re-serialisation in between.
* Retries use exponential backoff with full jitter on connection errors, timeouts, 408, 429
  (honouring a numeric ``Retry-After`` up to ``max_delay``) and 5xx.  Any other 4xx means the
  backend rejected the call and retrying cannot help.  Redirects are not followed: a signed POST
  must not be replayed to a place the worker was not told about (and a later SSRF check on the
  URL, plugged in as ``url_guard``, would be bypassed by a redirect).
* Only ``max_response_bytes`` of a response body are read, streamed, so a hostile or broken
  receiver cannot make the worker hold a huge body in memory.
"""

from __future__ import annotations

import importlib.metadata
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

# One id scheme and one encoding for every sender (the settle Lambda signs without this module's dependencies).
from worker.webhooks import encode_payload, parse_retry_after, webhook_id

__all__ = ["CallbackOutcome", "CallbackPolicy", "CallbackSender", "encode_payload", "parse_retry_after", "webhook_id"]

log = logging.getLogger(__name__)

UrlGuard = Callable[[str], None]

RETRYABLE_STATUS = frozenset({408, 429})


def _package_version() -> str:
    try:
        return importlib.metadata.version("whisper-batch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


USER_AGENT = f"whisper-batch/{_package_version()}"


@dataclass(frozen=True)
class CallbackPolicy:
    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 10.0
    max_response_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")


@dataclass(frozen=True)
class CallbackOutcome:
    delivered: bool
    attempts: int  # HTTP requests actually started
    status_code: int | None  # status of the last response, None if none came back
    error: str | None  # why it was not delivered (last error), None when delivered


class _Attempt:
    """Result of one HTTP attempt: whether to stop, and what to report."""

    __slots__ = ("delivered", "error", "retry", "retry_after", "status_code")

    def __init__(
        self,
        *,
        delivered: bool = False,
        retry: bool = False,
        status_code: int | None = None,
        error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.delivered = delivered
        self.retry = retry
        self.status_code = status_code
        self.error = error
        self.retry_after = retry_after


class CallbackSender:
    """Signs and POSTs callbacks with retries.  Thread-safe as far as the ``httpx.Client`` is."""

    def __init__(
        self,
        secret: str,
        policy: CallbackPolicy | None = None,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        url_guard: UrlGuard | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if client is not None and transport is not None:
            raise ValueError("pass either client or transport, not both")
        self._webhook = Webhook(secret)  # fails early on an empty or malformed secret
        self.policy = policy or CallbackPolicy()
        self._owns_client = client is None
        self._client = client or httpx.Client(transport=transport, follow_redirects=False, timeout=self.policy.timeout)
        self._sleep = sleep
        self._url_guard = url_guard
        self._clock = clock
        self._rng = rng or random.Random()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> CallbackSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff(self, failed_attempt: int) -> float:
        """Full jitter: uniform(0, min(max_delay, base_delay * 2**n)), n = 0 after the first failure."""
        cap = min(self.policy.max_delay, self.policy.base_delay * 2 ** min(failed_attempt, 62))
        return self._rng.uniform(0, cap)

    def headers(self, msg_id: str, text: str, timestamp: float) -> dict[str, str]:
        """The signed headers for one attempt at ``timestamp`` (unix seconds)."""
        ts = int(timestamp)
        signature = self._webhook.sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), text)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # The body is only read for error text; a compressed one could expand past the cap.
            "accept-encoding": "identity",
        }

    def send(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        event_id: str,
        url_guard: UrlGuard | None = None,
    ) -> CallbackOutcome:
        """POST ``payload`` to ``url`` until it is accepted, rejected, or the attempts run out.

        ``url_guard`` (or the constructor's) is called with ``url`` before every attempt; if it raises,
        nothing more is sent.  Network problems never raise: they are reported in the outcome.
        """
        guard = url_guard or self._url_guard
        msg_id = webhook_id(event_id)
        text = encode_payload(payload)
        body = text.encode("utf-8")
        policy = self.policy

        attempts = 0
        status_code: int | None = None
        error: str | None = None
        for n in range(policy.attempts):
            if guard is not None:
                try:
                    guard(url)
                except Exception as exc:
                    error = f"url rejected: {exc}" if str(exc) else f"url rejected: {type(exc).__name__}"
                    log.warning("callback %s not sent: %s", msg_id, error)
                    return CallbackOutcome(False, attempts, status_code, error)

            attempts += 1
            result = self._attempt(url, body, self.headers(msg_id, text, self._clock()))
            status_code = result.status_code
            error = result.error
            if result.delivered:
                log.info("callback %s delivered (HTTP %s, attempt %d)", msg_id, status_code, attempts)
                return CallbackOutcome(True, attempts, status_code, None)
            if not result.retry:
                log.warning("callback %s given up after attempt %d: %s", msg_id, attempts, error)
                return CallbackOutcome(False, attempts, status_code, error)
            if n + 1 < policy.attempts:
                delay = min(policy.max_delay, result.retry_after) if result.retry_after is not None else self.backoff(n)
                log.info("callback %s attempt %d failed (%s); retrying in %.2fs", msg_id, attempts, error, delay)
                self._sleep(delay)

        log.warning("callback %s not delivered after %d attempts: %s", msg_id, attempts, error)
        return CallbackOutcome(False, attempts, status_code, error)

    def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> _Attempt:
        try:
            with self._client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                timeout=self.policy.timeout,
                follow_redirects=False,
            ) as response:
                snippet = self._read_capped(response)
                return self._classify(response, snippet)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return _Attempt(error=f"invalid callback url: {exc}")
        except httpx.TimeoutException as exc:
            return _Attempt(retry=True, error=f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return _Attempt(retry=True, error=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:  # anything else httpx raises: do not crash the job
            return _Attempt(retry=True, error=f"{type(exc).__name__}: {exc}")

    def _read_capped(self, response: httpx.Response) -> bytes:
        """At most ``max_response_bytes`` of the body; the rest is never read."""
        limit = self.policy.max_response_bytes
        if limit == 0:
            return b""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(chunks)[:limit]

    @staticmethod
    def _classify(response: httpx.Response, snippet: bytes) -> _Attempt:
        code = response.status_code
        if 200 <= code < 300:
            return _Attempt(delivered=True, status_code=code)
        detail = snippet[:200].decode("utf-8", "replace").strip()
        error = f"HTTP {code}" + (f": {detail}" if detail else "")
        if 300 <= code < 400:
            location = response.headers.get("location", "")
            return _Attempt(status_code=code, error=f"HTTP {code}: redirect not followed ({location})")
        if code >= 500 or code in RETRYABLE_STATUS:
            retry_after = None
            if code in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            return _Attempt(retry=True, status_code=code, error=error, retry_after=retry_after)
        return _Attempt(status_code=code, error=error)
