"""Keep job-supplied URLs away from the worker's own network: loopback, private, link-local, metadata."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from worker.errors import BlockedUrl


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Raise BlockedUrl unless the scheme is allowed and every address the host resolves to is public."""
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
