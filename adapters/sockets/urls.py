"""Server addresses: ``tcp://host:port`` and ``ws://host:port``, and what counts as loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["SCHEMES", "is_loopback", "parse_url"]

SCHEMES = ("tcp", "ws")
_LOOPBACK_NAMES = frozenset({"localhost"})


def parse_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)``; port 0 asks for any free one."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"the URL must be tcp://host:port or ws://host:port, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if port is None or parts.hostname is None:
        raise ValueError(f"the URL must name a host and a port (0 for any free one), got {url!r}")
    if parts.path not in ("", "/") and parts.scheme == "tcp":
        raise ValueError(f"a tcp:// URL has no path, got {url!r}")
    return parts.scheme, parts.hostname, port


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
