"""A loopback HTTP proxy in front of the embedded AWS: adds a fixed latency to every request, counts requests by
AWS operation, and lets a caller answer some requests itself (the fault tests inject 5xx that way).

    python -m worker.local.proxy --upstream http://127.0.0.1:5000 --latency-ms 20   # prints its URL, then serves

In its own process it shares no interpreter lock with the worker or the benchmark; ``GET /_proxy/counts`` returns
the counts so far as JSON, ``POST /_proxy/reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}
_S3_ACTIONS = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


Intercept = Callable[[str, str], Reply | None]  # (method, path) -> an answer instead of forwarding, or None


def operation(method: str, path: str, headers: Any, body: bytes) -> str:
    """``sqs.ReceiveMessage``, ``s3.PutObject``…: what an AWS request to moto's single endpoint asks for."""
    target = headers.get("x-amz-target") or ""
    if target.startswith("AmazonSQS."):
        return "sqs." + target.split(".", 1)[1]
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    form = re.search(rb"Action=(\w+)", body[:200])
    if "Action" in query or form:
        return "sqs." + (query["Action"][0] if "Action" in query else form[1].decode())
    key = parts.path.strip("/").partition("/")[2]
    if not key:
        return "s3.ListObjectsV2" if method == "GET" else f"s3.{method.title()}Bucket"
    if "uploadId" in query or "uploads" in query:
        return "s3.MultipartUpload"
    return "s3." + _S3_ACTIONS.get(method, method)


class LoopbackProxy:
    def __init__(self, upstream: str, *, latency: float = 0.0, intercept: Intercept | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.latency = latency
        self.intercept = intercept
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._local = threading.local()  # one keep-alive connection to the upstream per serving thread
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/_proxy/"):
                    self._reply(proxy._control(self.command, self.path))
                    return
                with proxy._lock:
                    proxy.counts[operation(self.command, self.path, self.headers, body)] += 1
                if proxy.latency:
                    time.sleep(proxy.latency)
                reply = proxy.intercept(self.command, self.path) if proxy.intercept else None
                self._reply(reply or proxy._forward(self.command, self.path, self.headers, body))

            def _reply(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="loopback-proxy", daemon=True).start()

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> Reply:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=60)
        sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        answer = client.request(method, self.upstream + path, headers=sent, content=body)
        return Reply(answer.status_code, dict(answer.headers), answer.content)

    def _control(self, method: str, path: str) -> Reply:
        with self._lock:
            if method == "POST" and path == "/_proxy/reset":
                self.counts.clear()
            document = json.dumps(dict(self.counts)).encode()
        return Reply(200, {"content-type": "application/json"}, document)

    def close(self) -> None:
        self._server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.local.proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the embedded AWS endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    args = parser.parse_args(argv)
    proxy = LoopbackProxy(args.upstream, latency=args.latency_ms / 1000)
    print(proxy.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
