"""A real HTTP callback receiver on loopback, for the demo command and for tests.

It runs the standard library's ``ThreadingHTTPServer`` in a daemon thread, verifies each request's
Standard Webhooks signature and records it.  ``responses`` scripts its answers, one per request, to
provoke the sender's retry paths:

* ``int`` -- answer with that status code, e.g. ``500``;
* ``float`` ``N`` -- sleep ``N`` seconds, then answer 200 (to outlast a client timeout);
* ``str`` -- ``"<status>"`` optionally followed by one header, e.g. ``"429 Retry-After: 2"`` or
  ``"302 Location: http://elsewhere/"``; the special string ``"drop"`` closes the connection
  without answering.

When the script runs out, every request is answered 200.  Every request is kept in ``requests``;
only those answered 2xx (and, after a delay, whose client was still connected) are in ``received``.
Both lists are in arrival order; a request is added once it has been answered (or dropped).
"""

from __future__ import annotations

import bisect
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

Response = int | float | str

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedCallback:
    path: str
    headers: dict[str, str]  # lower-case keys
    body: bytes
    payload: dict[str, Any] | None
    signature_valid: bool
    status: int | None = None  # what it was answered; None when dropped or the client had gone
    received_at: float = 0.0  # time.time() when the request was read
    seq: int = 0  # arrival order; ``requests`` and ``received`` are kept in this order


@dataclass(frozen=True)
class _Action:
    status: int | None  # None: close without answering
    delay: float = 0.0
    header: tuple[str, str] | None = None


def _parse_response(item: Response) -> _Action:
    if isinstance(item, bool):
        raise TypeError("responses must be int, float or str, not bool")
    if isinstance(item, int):
        return _Action(item)
    if isinstance(item, float):
        return _Action(200, delay=item)
    if isinstance(item, str):
        text = item.strip()
        if text.lower() == "drop":
            return _Action(None)
        code, _, rest = text.partition(" ")
        header = None
        if rest.strip():
            name, sep, value = rest.partition(":")
            if not sep:
                raise ValueError(f"bad scripted response {item!r}: expected '<status> <Header>: <value>'")
            header = (name.strip(), value.strip())
        return _Action(int(code), header=header)
    raise TypeError(f"bad scripted response {item!r}")


def _client_gone(sock: socket.socket) -> bool:
    """True when the peer has closed its end (it timed out and gave up on us)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: CallbackReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are expected here; stay quiet


class _Handler(BaseHTTPRequestHandler):
    server: _QuietServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple to reason about in tests

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.receiver._handle(self)

    def do_GET(self) -> None:
        self._answer(405)

    def _answer(self, status: int, header: tuple[str, str] | None = None) -> None:
        body = b'{"ok":true}' if 200 <= status < 300 else b'{"ok":false}'
        self.send_response(status)
        if header is not None:
            self.send_header(*header)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class CallbackReceiver:
    """``with CallbackReceiver(secret) as rx: ... rx.url ... rx.wait_for(1, timeout=5)``."""

    def __init__(
        self,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        path: str = "/hook",
        responses: list[Response] | None = None,
    ) -> None:
        self._webhook = Webhook(secret)
        self._host = host
        self._port = port
        self._path = path
        self._script = [_parse_response(item) for item in responses or []]
        self._lock = threading.Condition()
        self.received: list[ReceivedCallback] = []
        self.requests: list[ReceivedCallback] = []
        self._server: _QuietServer | None = None
        self._bound_port: int | None = None
        self._arrivals = 0
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> CallbackReceiver:
        if self._server is not None:
            raise RuntimeError("receiver already started")
        server = _QuietServer((self._host, self._port), _Handler)
        server.receiver = self
        self._server = server
        self._bound_port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="callback-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (still readable after ``stop``)."""
        if self._bound_port is None:
            raise RuntimeError("receiver not started")
        return self._bound_port

    @property
    def url(self) -> str:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}{self._path}"

    # waiting -------------------------------------------------------------------------------------

    @property
    def arrivals(self) -> int:
        """Requests that reached the handler so far, counted before each is answered: once a sender's call has
        returned, every request it made is counted here, so "nothing more was sent" needs no waiting."""
        with self._lock:
            return self._arrivals

    def wait_for(self, count: int, timeout: float) -> list[ReceivedCallback]:
        """Block until ``count`` callbacks were delivered (answered 2xx); TimeoutError otherwise."""
        return self._wait(self.received, count, timeout, "delivered callbacks")

    def wait_for_requests(self, count: int, timeout: float) -> list[ReceivedCallback]:
        """Block until ``count`` requests arrived, whatever they were answered."""
        return self._wait(self.requests, count, timeout, "requests")

    def _wait(self, items: list[ReceivedCallback], count: int, timeout: float, what: str) -> list[ReceivedCallback]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(items) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} {what} within {timeout}s, got {len(items)}")
            return list(items)

    # request handling (server threads) -----------------------------------------------------------

    def _arrive(self) -> tuple[int, _Action]:
        with self._lock:
            self._arrivals += 1
            return self._arrivals, self._script.pop(0) if self._script else _Action(200)

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            self._webhook.verify(body, headers, json_parse=False)
        except Exception:  # WebhookVerificationError, but also malformed base64 / headers
            return False
        return True

    def _handle(self, handler: _Handler) -> None:
        received_at = time.time()
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            handler._answer(400)
            return
        body = handler.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        payload = parsed if isinstance(parsed, dict) else None

        seq, action = self._arrive()
        status = action.status
        if action.delay:
            time.sleep(action.delay)
            if _client_gone(handler.connection):
                status = None
        if status is not None:
            try:
                handler._answer(status, action.header)
            except OSError:
                status = None
        else:
            handler.close_connection = True

        record = ReceivedCallback(
            path=handler.path,
            headers=headers,
            body=body,
            payload=payload,
            signature_valid=self._verify(body, headers),
            status=status,
            received_at=received_at,
            seq=seq,
        )
        with self._lock:
            bisect.insort(self.requests, record, key=lambda r: r.seq)
            if status is not None and 200 <= status < 300:
                bisect.insort(self.received, record, key=lambda r: r.seq)
            self._lock.notify_all()
