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

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from worker.service.errors import BlockedUrl

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Explicit lists, so the answer does not depend on the Python patch release's idea of ``is_global``.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: EC2 metadata 169.254.169.254, ECS credentials 169.254.170.2
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, including broadcast 255.255.255.255
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible (only reachable through tunnels)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 (2002::/16)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def _is_public(ip: _IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _is_public(embedded)
        if ip not in _GLOBAL_UNICAST_V6 or any(ip in net for net in _BLOCKED_V6):
            return False
    elif any(ip in net for net in _BLOCKED_V4):
        return False
    return ip.is_global and not ip.is_multicast


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses, looking through IPv6 forms that embed an IPv4 one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return _is_public(ip)


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Raise BlockedUrl unless the scheme is allowed and every address the host resolves to is public.

    This is the early, readable check; ``guarded_transport`` repeats the address check on every connection.
    """
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise BlockedUrl(f"URL scheme {parts.scheme!r} is not allowed (allowed: {', '.join(allowed)})")
    if not parts.hostname:
        raise BlockedUrl("URL has no host")
    if parts.username or parts.password:
        raise BlockedUrl("URLs with credentials are not allowed")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedUrl(f"host {parts.hostname!r} does not resolve: {exc}") from exc
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise BlockedUrl(f"host {parts.hostname!r} resolves to a non-public address")


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
