"""Keep job-supplied URLs away from the worker's own network: loopback, private, link-local, metadata.

Two layers:

* ``check_url`` runs up front and gives a clear, early error: scheme, credentials, host, and whether the host
  resolves to a non-public address right now.
* ``guarded_transport`` is what actually keeps connections out.  Its network backend resolves the host itself
  when httpx opens a connection, refuses if *any* answer is non-public, and connects to the vetted IP address,
  then checks the peer address of the socket it got.  A DNS answer that changes between ``check_url`` and the
  connection (DNS rebinding) therefore cannot reach a private address.

Connecting by IP literal keeps TLS correct: httpcore wraps the stream returned by ``connect_tcp`` with
``server_hostname`` taken from the request URL's host (``HTTPConnection._connect``), so SNI and certificate
hostname checks still use the name, and the ``Host`` header comes from the URL as well.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from worker.addresses import check_public_url, is_public_address
from worker.errors import BlockedUrl

__all__ = ["BlockedConnection", "GuardedBackend", "check_url", "guarded_transport", "is_public_address"]


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Raise BlockedUrl unless the scheme is allowed and every address the host resolves to is public.

    This is the early, readable check (``worker.addresses``, shared with the settle Lambda); ``guarded_transport``
    repeats the address check on every connection.
    """
    try:
        check_public_url(url, allow_http=allow_http, allow_private=allow_private)
    except ValueError as exc:
        raise BlockedUrl(str(exc)) from exc.__cause__


class BlockedConnection(httpx.UnsupportedProtocol):
    """A connection to a non-public address was refused.

    It subclasses ``httpx.UnsupportedProtocol`` so that code handling httpx errors treats it as a permanent
    request error, never a network hiccup: ``CallbackSender`` does not retry it, and any generic
    ``except httpx.HTTPError`` still catches it.  ``worker.service.fetch`` turns it into ``BlockedUrl``.  It is raised
    from inside httpcore, which passes exceptions it does not know through to the caller unchanged.
    """


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that only connects to public addresses, by IP."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:  # gaierror is an OSError
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if not is_public_address(address):
                raise BlockedConnection(f"blocked: host {host!r} resolves to non-public address {address}")
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: no addresses")

        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            self._check_peer(stream, host)
            return stream
        assert last_error is not None
        raise last_error

    @staticmethod
    def _check_peer(stream: httpcore.NetworkStream, host: str) -> None:
        """Belt and braces: the socket's actual peer must be public too."""
        peer = stream.get_extra_info("server_addr")
        if peer is None or not is_public_address(str(peer[0])):
            stream.close()
            raise BlockedConnection(f"blocked: connection to {host!r} reached non-public address {peer}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise BlockedConnection("blocked: unix sockets are not allowed through the guarded transport")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


_POOL_OPTIONS = ("http1", "http2", "local_address", "retries", "socket_options")
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's own default


def guarded_transport(*, allow_private: bool, **transport_kwargs: Any) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport`` whose connections only go to public addresses (see module docstring).

    ``transport_kwargs`` are ``httpx.HTTPTransport``'s (verify, cert, trust_env, http1, http2, limits,
    local_address, retries, socket_options).  With ``allow_private`` a plain transport is returned.  Pass the
    result to ``httpx.Client(transport=...)``; an explicit transport also keeps httpx from routing through a
    proxy taken from the environment, which would resolve the host where this guard cannot see it.
    """
    if allow_private:
        return httpx.HTTPTransport(**transport_kwargs)
    if transport_kwargs.get("proxy") is not None or transport_kwargs.get("uds") is not None:
        raise ValueError("a guarded transport connects directly: proxy and uds are not supported")
    # Build the SSL context once and hand the same object to HTTPTransport and to the replacement pool.
    ssl_context = httpx.create_ssl_context(
        verify=transport_kwargs.pop("verify", True),
        cert=transport_kwargs.pop("cert", None),
        trust_env=transport_kwargs.get("trust_env", True),
    )
    limits: httpx.Limits = transport_kwargs.get("limits", _DEFAULT_LIMITS)
    transport = httpx.HTTPTransport(verify=ssl_context, **transport_kwargs)
    # httpx has no public way to choose httpcore's network backend, so the ConnectionPool HTTPTransport built
    # is replaced by an identical one that uses GuardedBackend.  This is the only place that touches the
    # private ``_pool`` attribute; tests/test_netguard.py::test_httpx_internals_still_match fails loudly if
    # httpx stops keeping its pool there or stops sending requests through it.
    built = getattr(transport, "_pool", None)
    if not isinstance(built, httpcore.ConnectionPool):
        raise RuntimeError("httpx.HTTPTransport no longer keeps an httpcore.ConnectionPool in _pool")
    built.close()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(),
        **{name: value for name, value in transport_kwargs.items() if name in _POOL_OPTIONS},
    )
    return transport
