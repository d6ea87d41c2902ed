"""Standard Webhooks with the standard library alone: the webhook id of a job event, the signature, and a signed
POST retried with backoff.

The worker signs with the ``standardwebhooks`` package over httpx (``worker.service.callback``); the settle Lambda
runs where neither is installed, yet its callbacks must verify with the same library and de-duplicate against the
worker's. So the id scheme lives here once (the worker imports it), and the signature is the spec's:
``v1,<base64 HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")>`` with the secret given as ``whsec_<base64>``.

The POST goes through ``http.client``, not ``urllib.request``: it never follows a redirect (a signed body must
not be replayed to a place nobody named) nor a proxy from the environment. Unless private addresses are allowed,
the host is resolved once per attempt, every answer must be public (``worker.addresses``), and the connection is
made to that vetted address (TLS still checks the name), so a DNS answer that changes in between cannot reach the
metadata service or the VPC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from worker.addresses import check_public_url, is_public_address

SECRET_PREFIX: Final = "whsec_"
RETRYABLE_STATUS: Final = frozenset({408, 429})
MAX_RESPONSE_BYTES: Final = 64 * 1024


def webhook_id(event_id: str) -> str:
    """A stable ``webhook-id`` for one job event: the same ``event_id`` always gives the same id."""
    return "msg_" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:32]


def result_event_id(job_id: str, status: str, request_sha256: str | None, message_id: str | None) -> str:
    """The event id of a job's result callback, so every sender of one outcome uses one ``webhook-id``."""
    return f"{job_id}-{status}-{request_sha256 or message_id}"


def encode_payload(payload: dict[str, Any]) -> str:
    """The exact text that is signed and sent (as UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a numeric ``Retry-After``; None when absent, negative or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):  # NaN, negative, inf
        return None
    return seconds


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the standardwebhooks library)."""
    text = secret.removeprefix(SECRET_PREFIX)
    key = base64.b64decode(text + "==")  # unpadded base64 is accepted; b64decode ignores extra padding
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int  # requests actually started
    status_code: int | None  # of the last response; None when none came back
    error: str | None  # why not delivered; None when delivered


class WebhookPoster:
    """Signs and POSTs one payload until it is accepted, rejected, refused by the address guard, or out of tries.

    Retries (full-jitter exponential backoff, a numeric ``Retry-After`` honoured up to ``max_delay``) follow
    connection errors, timeouts, 408, 429 and 5xx; any other answer is final.
    """

    def __init__(
        self,
        secret: str,
        *,
        attempts: int = 4,
        timeout: float = 10.0,
        base_delay: float = 1.0,
        max_delay: float = 8.0,
        allow_http: bool = False,
        allow_private: bool = False,
        user_agent: str = "whisper-batch-settle",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._key = secret_key(secret)
        self.attempts, self.timeout = attempts, timeout
        self.base_delay, self.max_delay = base_delay, max_delay
        self.allow_http, self.allow_private = allow_http, allow_private
        self.user_agent = user_agent
        self._sleep, self._clock = sleep, clock

    def headers(self, msg_id: str, body: str, timestamp: float) -> dict[str, str]:
        ts = int(timestamp)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self._key, msg_id, ts, body),
            "content-type": "application/json",
            "user-agent": self.user_agent,
            "accept-encoding": "identity",
        }

    def send(self, url: str, payload: dict[str, Any], *, event_id: str) -> Delivery:
        msg_id = webhook_id(event_id)
        body = encode_payload(payload)
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                check_public_url(url, allow_http=self.allow_http, allow_private=self.allow_private)
            except ValueError as exc:
                return Delivery(False, attempt - 1, status, f"url rejected: {exc}")
            retry_after: float | None = None
            try:
                status, retry_after, error = self._post(url, body, self.headers(msg_id, body, self._clock()))
            except _Refused as exc:
                return Delivery(False, attempt, None, f"url rejected: {exc}")
            except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, TLS, DNS
                status, error = None, f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                return Delivery(True, attempt, status, None)
            if status is not None and status < 500 and status not in RETRYABLE_STATUS:
                return Delivery(False, attempt, status, error)
            if attempt < self.attempts:
                cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                delay = random.uniform(0, cap) if retry_after is None else min(self.max_delay, retry_after)
                self._sleep(delay)
        return Delivery(False, self.attempts, status, error)

    def _post(self, url: str, body: str, headers: dict[str, str]) -> tuple[int, float | None, str | None]:
        parts = urlsplit(url)
        connection = self._connection(parts.scheme, parts.hostname or "", parts.port)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", path, body=body.encode("utf-8"), headers=headers)
            response = connection.getresponse()
            text = response.read(MAX_RESPONSE_BYTES)[:200].decode("utf-8", "replace").strip()
            code = response.status
            if 200 <= code < 300:
                return code, None, None
            if 300 <= code < 400:
                return code, None, f"HTTP {code}: redirect not followed ({response.getheader('location', '')})"
            after = parse_retry_after(response.getheader("retry-after")) if code in (429, 503) else None
            return code, after, f"HTTP {code}" + (f": {text}" if text else "")
        finally:
            connection.close()

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "https":
            kind: type[http.client.HTTPConnection] = http.client.HTTPSConnection
            if not self.allow_private:
                kind = _PublicHTTPS
            return kind(host, port, timeout=self.timeout)
        kind = http.client.HTTPConnection if self.allow_private else _PublicHTTP
        return kind(host, port, timeout=self.timeout)


class _Refused(OSError):
    """The host resolved to (or the socket reached) a non-public address: final, never retried."""


def _connect_public(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to one of ``host``'s addresses, all of which must be public."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = [info[4] for info in infos]
    for address in addresses:
        if not is_public_address(str(address[0])):
            raise _Refused(f"host {host!r} resolves to non-public address {address[0]}")
    last: OSError = OSError(f"cannot resolve {host!r}: no addresses")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if not is_public_address(str(sock.getpeername()[0])):
            sock.close()
            raise _Refused(f"connection to {host!r} reached a non-public address")
        return sock
    raise last


class _PublicHTTP(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = _connect_public(self.host, self.port, self.timeout)


class _PublicHTTPS(http.client.HTTPSConnection):
    _tls = ssl.create_default_context()

    def connect(self) -> None:
        sock = _connect_public(self.host, self.port, self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)  # SNI and the certificate use the name
