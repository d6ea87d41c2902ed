"""fetched() against a real moto S3 server and a real local HTTP server; the URL guard without any network."""

from __future__ import annotations

import http.server
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from worker.errors import FetchTooSlow
from worker.local.moto_server import LocalAws
from worker.service.errors import AudioNotFound, AudioTooLarge, BlockedUrl, EmptyAudio, FetchUnavailable
from worker.service.fetch import fetch_deadline, fetched
from worker.service.netguard import check_url, is_public_address

PAYLOAD = bytes(range(256)) * 64  # 16 KiB, every byte value
CAP = 4096
STALL = 3.0  # seconds the slow handlers sleep; far above TIMEOUT
TIMEOUT = 0.5
DRIP_BYTES = 100


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """fetched() makes its temp files here, so a test can see exactly what it leaves behind."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    return spool


def leftovers(spool: Path) -> list[Path]:
    return sorted(spool.iterdir())


# ------------------------------------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    with LocalAws(bucket="fetch-tests") as local:
        s3 = local.client("s3")
        s3.put_object(Bucket="fetch-tests", Key="audio/ok.bin", Body=PAYLOAD)
        s3.put_object(Bucket="fetch-tests", Key="audio/empty.bin", Body=b"")
        s3.put_object(Bucket="fetch-tests", Key="audio/big.bin", Body=b"x" * (CAP + 1))
        s3.put_object(Bucket="fetch-tests", Key="audio/exact.bin", Body=b"y" * CAP)
        yield {"s3": s3, "bucket": "fetch-tests"}


def s3_fetch(aws: dict[str, Any], url: str, max_bytes: int = 1 << 20):
    return fetched(url, s3=aws["s3"], max_bytes=max_bytes, timeout=5)


def test_s3_object_is_fetched_and_then_removed(aws: dict[str, Any], private_tmp: Path) -> None:
    with s3_fetch(aws, "s3://fetch-tests/audio/ok.bin") as path:
        assert path.read_bytes() == PAYLOAD
        assert path.parent == private_tmp
    assert not path.exists()
    assert leftovers(private_tmp) == []


def test_s3_object_of_exactly_the_cap_is_fetched(aws: dict[str, Any]) -> None:
    with s3_fetch(aws, "s3://fetch-tests/audio/exact.bin", max_bytes=CAP) as path:
        assert path.stat().st_size == CAP


@pytest.mark.parametrize(
    "url",
    ["s3://fetch-tests/audio/missing.bin", "s3://no-such-bucket-for-tests/audio/ok.bin"],
    ids=["missing-key", "missing-bucket"],
)
def test_s3_missing_is_not_found(aws: dict[str, Any], private_tmp: Path, url: str) -> None:
    with pytest.raises(AudioNotFound), s3_fetch(aws, url):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_s3_empty_object(aws: dict[str, Any], private_tmp: Path) -> None:
    with pytest.raises(EmptyAudio), s3_fetch(aws, "s3://fetch-tests/audio/empty.bin"):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_s3_object_over_the_cap(aws: dict[str, Any], private_tmp: Path) -> None:
    with pytest.raises(AudioTooLarge), s3_fetch(aws, "s3://fetch-tests/audio/big.bin", max_bytes=CAP):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_temp_file_removed_when_the_block_raises(aws: dict[str, Any], private_tmp: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"), s3_fetch(aws, "s3://fetch-tests/audio/ok.bin") as path:
        seen.append(path)
        assert path.exists()
        raise RuntimeError("boom")
    assert seen and not seen[0].exists()
    assert leftovers(private_tmp) == []


def test_s3_unreachable_is_transient(private_tmp: Path) -> None:
    s3 = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),  # no backoff sleeps
    )
    with pytest.raises(FetchUnavailable), fetched("s3://b/k", s3=s3, max_bytes=CAP, timeout=1):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


# ---------------------------------------------------------------------------------------------- HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        route = self.path
        try:
            if route == "/ok":
                self._send(200, PAYLOAD, {"Content-Type": "audio/flac"})
            elif route == "/exact":
                self._send(200, b"z" * CAP)
            elif route == "/empty":
                self._send(200, b"")
            elif route in ("/missing", "/gone", "/forbidden"):
                self._send({"/missing": 404, "/gone": 410, "/forbidden": 403}[route], b"nope")
            elif route == "/busy":
                self._send(503, b"try later", {"Retry-After": "1"})
            elif route == "/error":
                self._send(500, b"oops")
            elif route == "/redirect":
                self._send(302, b"", {"Location": "/ok"})
            elif route == "/big-chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(4):
                    chunk = b"c" * CAP
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif route == "/big-close":
                # HTTP/1.0 style: no Content-Length, the body ends when the connection closes.
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"k" * (4 * CAP))
                self.close_connection = True
            elif route == "/big-declared":
                # Claims far more than the cap but sends little: only the header may decide (no read, no timeout).
                self.send_response(200)
                self.send_header("Content-Length", str(100 * CAP))
                self.end_headers()
                self.wfile.write(b"d" * 16)
                self.close_connection = True
            elif route == "/stall-headers":
                time.sleep(STALL)
                self._send(200, PAYLOAD)
            elif route == "/stall-body":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD[:100])
                self.wfile.flush()
                time.sleep(STALL)
                self.wfile.write(PAYLOAD[100:])
            elif route == "/drip":
                # Each byte comes well within the read timeout; the whole body never comes in time.
                self.send_response(200)
                self.send_header("Content-Length", str(DRIP_BYTES))
                self.end_headers()
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    time.sleep(1)
            elif route == "/truncated":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD[:100])
                self.close_connection = True
            else:
                self._send(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as some tests intend


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet on client hang-ups
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_fetch(url: str, max_bytes: int = 1 << 20, timeout: float = 5.0):
    return fetched(url, s3=None, max_bytes=max_bytes, timeout=timeout, allow_http=True, allow_private=True)


def test_http_200_is_fetched_and_then_removed(http_base: str, private_tmp: Path) -> None:
    with http_fetch(f"{http_base}/ok") as path:
        assert path.read_bytes() == PAYLOAD
    assert not path.exists()
    assert leftovers(private_tmp) == []


def test_http_body_of_exactly_the_cap(http_base: str) -> None:
    with http_fetch(f"{http_base}/exact", max_bytes=CAP) as path:
        assert path.stat().st_size == CAP


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("/missing", AudioNotFound),
        ("/gone", AudioNotFound),
        ("/forbidden", AudioNotFound),
        ("/redirect", AudioNotFound),  # redirects are not followed (a redirect could lead past the guard)
        ("/busy", FetchUnavailable),
        ("/error", FetchUnavailable),
        ("/empty", EmptyAudio),
        ("/big-chunked", AudioTooLarge),
        ("/big-close", AudioTooLarge),
        ("/big-declared", AudioTooLarge),
    ],
)
def test_http_failures(http_base: str, private_tmp: Path, route: str, error: type[Exception]) -> None:
    with pytest.raises(error), http_fetch(f"{http_base}{route}", max_bytes=CAP):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_http_body_cut_short_is_transient(http_base: str, private_tmp: Path) -> None:
    with pytest.raises(FetchUnavailable), http_fetch(f"{http_base}/truncated"):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_http_connection_refused_is_transient(private_tmp: Path) -> None:
    with pytest.raises(FetchUnavailable), http_fetch(f"http://127.0.0.1:{closed_port()}/ok"):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


@pytest.mark.parametrize("route", ["/stall-headers", "/stall-body"])
def test_http_stall_times_out(http_base: str, private_tmp: Path, route: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchUnavailable), http_fetch(f"{http_base}{route}", timeout=TIMEOUT):
        pytest.fail("must not yield")
    assert time.monotonic() - started < STALL - 0.5
    assert leftovers(private_tmp) == []


def test_a_trickling_source_fails_at_the_overall_deadline(http_base: str, private_tmp: Path) -> None:
    """One byte a second never trips the 3-s read timeout; the deadline for 20 s of audio (3 + 20 x 0.05 s) stops
    it, with its own code, and the partial file is gone."""
    assert fetch_deadline(20, 3.0) == pytest.approx(4.0)
    url = f"{http_base}/drip"
    fetching = fetched(
        url, s3=None, max_bytes=CAP, timeout=3.0, allow_http=True, allow_private=True, max_audio_seconds=20
    )
    with pytest.raises(FetchTooSlow) as caught, fetching:
        pytest.fail("must not yield")
    assert caught.value.code == "fetch_too_slow" and caught.value.permanent
    assert "did not arrive within 4 s" in str(caught.value) and "bytes came" in str(caught.value)
    assert leftovers(private_tmp) == []


def test_the_default_deadline_follows_the_longest_accepted_audio() -> None:
    assert fetch_deadline(6 * 3600, 30.0) == pytest.approx(30 + 1080)


def test_http_temp_file_removed_when_the_block_raises(http_base: str, private_tmp: Path) -> None:
    with pytest.raises(KeyError), http_fetch(f"{http_base}/ok") as path:
        assert path.exists()
        raise KeyError("downstream failure")
    assert leftovers(private_tmp) == []


# --------------------------------------------------------------------------------------------- guard

BLOCKED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "169.254.169.254",  # EC2 instance metadata
    "169.254.170.2",  # ECS task credentials
    "[::1]",
    "[fe80::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "0.0.0.0",
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.1",  # multicast
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f000001",  # ... and in hex
    "[64:ff9b::7f00:1]",  # NAT64 form of 127.0.0.1
    "[2002:a9fe:a9fe::]",  # 6to4 form of 169.254.169.254
    "[fec0::1]",  # site-local
]


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_private_hosts_are_blocked(host: str, private_tmp: Path) -> None:
    for url in (f"https://{host}/a.wav", f"https://{host}:8443/a.wav"):
        with pytest.raises(BlockedUrl):
            check_url(url, allow_http=False, allow_private=False)
    with (
        pytest.raises(BlockedUrl),
        fetched(f"https://{host}/a.wav", s3=None, max_bytes=CAP, timeout=1, allow_http=False, allow_private=False),
    ):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []


def test_http_scheme_blocked_unless_allowed(private_tmp: Path) -> None:
    with pytest.raises(BlockedUrl, match="scheme"):
        check_url("http://8.8.8.8/a.wav", allow_http=False, allow_private=False)
    # fetched() refuses before any connection: the port below is closed, so a connection attempt would be
    # FetchUnavailable, not BlockedUrl.
    with (
        pytest.raises(BlockedUrl),
        fetched(f"http://127.0.0.1:{closed_port()}/a.wav", s3=None, max_bytes=CAP, timeout=1, allow_private=True),
    ):
        pytest.fail("must not yield")
    assert leftovers(private_tmp) == []
    check_url("http://8.8.8.8/a.wav", allow_http=True, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["ftp://8.8.8.8/a.wav", "file:///etc/passwd", "gopher://8.8.8.8/", "data:audio/wav;base64,AAAA", "//8.8.8.8/a"],
)
def test_other_schemes_are_blocked(url: str) -> None:
    for allow in (False, True):
        with pytest.raises(BlockedUrl):
            check_url(url, allow_http=allow, allow_private=allow)


@pytest.mark.parametrize(
    "url",
    ["https://user:pass@8.8.8.8/a.wav", "https://user@8.8.8.8/a.wav", "https://:pass@8.8.8.8/a.wav"],
)
def test_credentials_in_url_are_blocked(url: str) -> None:
    for allow in (False, True):
        with pytest.raises(BlockedUrl, match="credentials"):
            check_url(url, allow_http=True, allow_private=allow)


def test_url_without_host_is_blocked() -> None:
    with pytest.raises(BlockedUrl):
        check_url("https:///a.wav", allow_http=False, allow_private=False)


def test_private_allowed_when_configured() -> None:
    check_url("http://127.0.0.1:9000/a.wav", allow_http=True, allow_private=True)
    check_url("https://localhost/a.wav", allow_http=False, allow_private=True)


def test_public_ip_literals_pass() -> None:
    check_url("https://8.8.8.8/a.wav", allow_http=False, allow_private=False)
    check_url("https://[2001:4860:4860::8888]/a.wav", allow_http=False, allow_private=False)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("fd00:ec2::254", False),  # EC2 metadata over IPv6
        ("::ffff:10.0.0.1", False),
        ("ff02::1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("fec0::1", False),  # site-local
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2606:4700:4700::1111", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_errors_never_repeat_presigned_credentials(http_base: str) -> None:
    """Error messages travel to result.json, callbacks and DLQ attributes: no signature or password in them."""
    with pytest.raises(AudioNotFound) as error, http_fetch(f"{http_base}/missing?X-Amz-Signature=s3cr3t"):
        pass
    assert "s3cr3t" not in error.value.message and "/missing" in error.value.message
