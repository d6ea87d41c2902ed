"""The connection-time guard: addresses are checked where the socket is opened, not only up front.

No outside network: IP literals, ``localhost`` and local servers on 127.0.0.1.  DNS rebinding is simulated by
replacing the standard library's ``socket.getaddrinfo`` for one made-up host name.
"""

from __future__ import annotations

import base64
import http.server
import inspect
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from worker.local.receiver import CallbackReceiver
from worker.service.callback import CallbackPolicy, CallbackSender
from worker.service.errors import BlockedUrl
from worker.service.fetch import fetched
from worker.service.netguard import BlockedConnection, GuardedBackend, check_url, guarded_transport, is_public_address

BODY = b"RIFF-not-really-audio" * 16
REBIND_HOST = "rebind.example"
SECRET = "whsec_" + base64.b64encode(b"a-test-secret-of-32-bytes-length").decode()


# ------------------------------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::808:808",  # local-use NAT64
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:c0a8:101::",  # 6to4 of 192.168.1.1
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:127.0.0.1",
        "::ffff:169.254.170.2",  # ECS task credentials, mapped
        "::ffff:100.64.0.1",
        "::7f00:1",  # deprecated IPv4-compatible 127.0.0.1
        "::808:808",  # ... and of a public address: still not routable
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "169.254.170.2",
        "100.64.0.1",
        "100.127.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",  # reserved
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "::",
        "::1",
        "fe80::1",
        "fe80::1%lo",
        "fec0::1",  # site-local
        "fc00::1",  # unique-local
        "fd12:3456::1",
        "ff02::1",  # multicast
        "2001:db8::1",  # documentation
        "2001::1",  # Teredo
        "100::1",  # discard-only
        "4000::1",  # outside global unicast 2000::/3
        "not-an-address",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert is_public_address(address) is False


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses(address: str) -> None:
    assert is_public_address(address) is True


# ------------------------------------------------------------------------------------------ local server


class CountingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@pytest.fixture
def local_server() -> Iterator[tuple[int, type[CountingHandler]]]:
    """An HTTP server on 127.0.0.1 that counts the requests reaching it; yields (port, handler class)."""
    handler = type("Handler", (CountingHandler,), {"hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class RebindingResolver:
    """Stands in for ``socket.getaddrinfo``: ``REBIND_HOST`` gets the next list of answers, others the real one."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.calls = 0
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list:
        if host != REBIND_HOST:
            return self._real(host, port, family, type, proto, flags)
        answer = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        port = int(port or 0)
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answer
        ]


def fetch_private_off(url: str):
    return fetched(url, s3=None, max_bytes=1 << 20, timeout=2, allow_http=True, allow_private=False)


# ------------------------------------------------------------------------------------------ rebinding


@pytest.mark.parametrize(
    "second_answer",
    [["127.0.0.1"], ["8.8.8.8", "127.0.0.1"], ["::ffff:127.0.0.1"], ["64:ff9b::7f00:1"]],
    ids=["loopback", "any-of-several", "mapped", "nat64"],
)
def test_dns_rebinding_is_blocked_at_connect(
    local_server: tuple[int, type[CountingHandler]], monkeypatch: pytest.MonkeyPatch, second_answer: list[str]
) -> None:
    """fetched() runs check_url (answer 1: public, passes), then connects (answer 2: non-public, refused)."""
    port, handler = local_server
    resolver = RebindingResolver(["8.8.8.8"], second_answer)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    url = f"http://{REBIND_HOST}:{port}/a.wav"

    with pytest.raises(BlockedUrl, match="non-public") as caught, fetch_private_off(url):
        pytest.fail("must not yield")
    assert resolver.calls == 2  # the early check and the connection each resolved once
    assert isinstance(caught.value.__cause__, BlockedConnection)  # refused at connect, not by check_url
    time.sleep(0.1)
    assert handler.hits == 0


def test_early_check_sees_the_first_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = RebindingResolver(["8.8.8.8"], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    check_url(f"https://{REBIND_HOST}/a.wav", allow_http=False, allow_private=False)
    with pytest.raises(BlockedUrl, match="non-public"):
        check_url(f"https://{REBIND_HOST}/a.wav", allow_http=False, allow_private=False)


def test_transport_alone_blocks_loopback(local_server: tuple[int, type[CountingHandler]]) -> None:
    """No check_url at all: the transport refuses by itself, for IP literals and names alike."""
    port, handler = local_server
    with httpx.Client(transport=guarded_transport(allow_private=False), timeout=2) as client:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
            with pytest.raises(BlockedConnection, match="non-public"):
                client.get(f"http://{host}:{port}/a.wav")
    assert handler.hits == 0


class _MisroutingBackend(httpcore.SyncBackend):
    """An httpcore backend that ignores the address it is given and connects to loopback (a lying network)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked: list[tuple[str, int]] = []

    def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.NetworkStream:
        self.asked.append((host, port))
        return super().connect_tcp("127.0.0.1", self.port, **kwargs)


def test_peer_address_is_checked_after_connect(
    local_server: tuple[int, type[CountingHandler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, handler = local_server
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver(["8.8.8.8"]))
    inner = _MisroutingBackend(port)
    backend = GuardedBackend(inner)
    with pytest.raises(BlockedConnection, match="reached non-public"):
        backend.connect_tcp(REBIND_HOST, 80, timeout=2)
    assert inner.asked == [("8.8.8.8", 80)]  # the vetted IP, never the name
    time.sleep(0.1)
    assert handler.hits == 0


class _RecordingStream(httpcore.NetworkStream):
    def __init__(self, address: str, port: int) -> None:
        self.address = (address, port)
        self.tls: dict[str, Any] = {}

    def get_extra_info(self, info: str) -> Any:
        return self.address if info == "server_addr" else None

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        self.tls = {"server_hostname": server_hostname}
        raise httpcore.ConnectError("stop here: no TLS peer in tests")

    def close(self) -> None:
        pass


class _RecordingBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.streams: list[tuple[str, _RecordingStream]] = []

    def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.NetworkStream:
        stream = _RecordingStream(host, port)
        self.streams.append((host, stream))
        return stream


def test_tls_uses_the_hostname_while_tcp_uses_the_vetted_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore wraps the stream from connect_tcp in TLS with the URL's host as server_hostname (SNI, cert check)."""
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver(["8.8.8.8"]))
    inner = _RecordingBackend()
    with httpcore.ConnectionPool(network_backend=GuardedBackend(inner)) as pool, pytest.raises(httpcore.ConnectError):
        pool.request("GET", f"https://{REBIND_HOST}/a.wav")
    [(host, stream)] = inner.streams
    assert host == "8.8.8.8"
    assert stream.tls == {"server_hostname": REBIND_HOST}


def test_unresolvable_host_is_a_connect_error() -> None:
    with (
        httpx.Client(transport=guarded_transport(allow_private=False), timeout=2) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get("http://no-such-host.invalid/a.wav")


# ------------------------------------------------------------------------------------------ allow_private


def test_allow_private_reaches_a_local_server(local_server: tuple[int, type[CountingHandler]]) -> None:
    port, handler = local_server
    with fetched(
        f"http://127.0.0.1:{port}/a.wav", s3=None, max_bytes=1 << 20, timeout=2, allow_http=True, allow_private=True
    ) as path:
        assert path.read_bytes() == BODY
    with httpx.Client(transport=guarded_transport(allow_private=True), timeout=2) as client:
        assert client.get(f"http://localhost:{port}/a.wav").content == BODY
    assert handler.hits == 2


def test_guarded_transport_refuses_proxy_and_uds() -> None:
    with pytest.raises(ValueError, match="proxy"):
        guarded_transport(allow_private=False, proxy="http://127.0.0.1:3128")
    with pytest.raises(ValueError, match="uds"):
        guarded_transport(allow_private=False, uds="/tmp/x.sock")


def test_httpx_internals_still_match() -> None:
    """guarded_transport swaps HTTPTransport's private ``_pool``; if httpx changes that, fail here, loudly."""
    params = inspect.signature(httpx.HTTPTransport.__init__).parameters
    for name in ("verify", "cert", "trust_env", "http1", "http2", "limits", "local_address", "retries"):
        assert name in params, f"httpx.HTTPTransport lost the {name!r} argument"
    plain = httpx.HTTPTransport()
    assert isinstance(plain._pool, httpcore.ConnectionPool), "httpx.HTTPTransport no longer has an httpcore pool"
    guarded = guarded_transport(allow_private=False, retries=1, http2=False)
    assert isinstance(guarded._pool, httpcore.ConnectionPool)
    # ... and requests still go through that pool (otherwise the swap would silently do nothing):
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    with pytest.raises(BlockedConnection):
        guarded.handle_request(request)
    guarded.close()
    plain.close()


# ------------------------------------------------------------------------------------------ callbacks


def test_callback_to_loopback_is_not_delivered_nor_retried() -> None:
    sleeps: list[float] = []
    policy = CallbackPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=2.0)
    with (
        CallbackReceiver(SECRET) as rx,
        CallbackSender(SECRET, policy, transport=guarded_transport(allow_private=False), sleep=sleeps.append) as sender,
    ):
        outcome = sender.send(f"http://localhost:{rx.port}/hook", {"job_id": "j"}, event_id="j:failed")
        time.sleep(0.1)
        assert rx.requests == []
    assert not outcome.delivered
    assert outcome.attempts <= 1
    assert sleeps == []  # no retries
    assert outcome.status_code is None
    assert outcome.error and "blocked" in outcome.error and "non-public" in outcome.error


def test_callback_with_allow_private_is_delivered() -> None:
    policy = CallbackPolicy(attempts=1, timeout=2.0)
    with (
        CallbackReceiver(SECRET) as rx,
        CallbackSender(SECRET, policy, transport=guarded_transport(allow_private=True)) as sender,
    ):
        outcome = sender.send(rx.url, {"job_id": "j"}, event_id="j:completed")
        rx.wait_for(1, timeout=5)
    assert outcome.delivered
