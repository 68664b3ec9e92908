"""Which pages may open the playground's WebSocket: an exact origin check (pure).

A browser sends ``Origin`` (scheme, host, port) on every WebSocket handshake. The
check compares it with origins the gateway knows for itself, never with the
``Host`` header: a DNS-rebinding page (``http://evil.example:8080`` made to
resolve to the gateway's address) sends matching ``Host`` and ``Origin``
headers, and must still be refused. The scheme counts too: an ``https`` page is
not the ``http`` page the gateway serves.

Without configured origins (``GATEWAY_ALLOWED_ORIGINS``), the page's own
addresses are allowed: ``localhost``, ``127.0.0.1`` and ``[::1]`` and the address
the connection came in on, each with the port it came in on and the scheme it
arrived with. Behind a reverse proxy the public origin (``https://music.example``)
must be configured.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

__all__ = ["default_origins", "normalize_origin", "parse_origins"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _host_text(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


def _origin(scheme: str, host: str, port: int | None) -> str:
    text = f"{scheme}://{_host_text(host)}"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        text += f":{port}"
    return text


def normalize_origin(origin: str) -> str | None:
    """*origin* in one spelling (lower case, default port left out, IPv6 in
    brackets), or None if it is not an http(s) origin (``null``, paths, junk)."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return _origin(scheme, parts.hostname, port)


def parse_origins(text: str) -> frozenset[str]:
    """Comma-separated origins (``https://music.example, http://localhost:8080``).

    Raises:
        ValueError: naming an entry that is not an http(s) origin.
    """
    origins = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        normalized = normalize_origin(entry)
        if normalized is None:
            raise ValueError(f"{entry!r} is not an origin like https://music.example or "
                             "http://localhost:8080")
        origins.add(normalized)
    return frozenset(origins)


def default_origins(scheme: str, server_host: str | None, server_port: int) -> frozenset[str]:
    """The page's own origins for a connection that arrived with *scheme*
    (``http``/``ws`` or ``https``/``wss``) on the local address *server_host*
    and *server_port*."""
    page_scheme = "https" if scheme in ("https", "wss") else "http"
    hosts = set(_LOOPBACK_NAMES)
    if server_host:
        hosts.add(server_host)
    return frozenset(_origin(page_scheme, host, server_port) for host in hosts)
