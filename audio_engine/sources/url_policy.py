"""Which URLs and addresses the engine agrees to reach: the line between users and
the host it runs on.

* only ``http`` and ``https`` (and local files);
* local files only under the configured media directory (none if unset), with
  the path resolved first, so ``..`` and symbolic links cannot leave it;
* network destinations only at *global* addresses: anything that is not
  ``is_global`` (loopback, private, link-local, carrier-grade NAT 100.64/10, ...)
  is refused, and so are multicast, the deprecated site-local fec0::/10, and IPv6
  forms that carry an IPv4 address inside (IPv4-mapped ``::ffff:a.b.c.d``,
  IPv4-compatible ``::a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``),
  which are judged by the IPv4 address they carry;
* ``allow_private`` lifts the address rule entirely (a development engine), and
  ``allowed_endpoints`` lifts it for exact ``address:port`` pairs (a known
  internal media server; the tests' own loopback server).

The rule is applied where connections are made, not only to the URL a user
typed: every connection FFmpeg and yt-dlp open goes through the engine's egress
proxy (``egress.py``), which resolves the name once, checks every address with
``check_address`` and connects to the address it checked. Redirects, HLS
segments and DNS answers that change between check and connect are covered that
way. Messages never say what an internal name resolved to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "IPAddress",
    "PolicyError",
    "UrlPolicy",
    "forbidden_reason",
    "parse_endpoints",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Seconds allowed for one DNS lookup.
RESOLVE_TIMEOUT = 10.0

#: Not ``is_global`` misses these (Python 3.11): multicast is "global", and the
#: deprecated IPv6 site-local block was never marked private.
_ALSO_FORBIDDEN = (
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("fec0::/10"),
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class PolicyError(Exception):
    """The URL or address is not allowed; ``str()`` says why, for the user."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms
    that reach an IPv4 host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 0xFFFF:
        # ::a.b.c.d (deprecated, still routed by some stacks); :: and ::1 are
        # judged as themselves.
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why *address* may not be reached ("private or local"), or None if it is a
    global unicast address (IPv6 forms carrying IPv4 judged by their IPv4 part)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return forbidden_reason(inner)
    if not address.is_global or any(address in network for network in _ALSO_FORBIDDEN):
        return "private or local"
    return None


def parse_endpoints(text: str) -> frozenset[tuple[IPAddress, int]]:
    """``"127.0.0.1:8123, [::1]:9000"`` as (address, port) pairs.

    Raises:
        ValueError: an entry is not ``ADDRESS:PORT`` with an IP address literal.
    """
    endpoints: set[tuple[IPAddress, int]] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port_text = entry.rpartition(":")
        if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{entry!r} is not ADDRESS:PORT")
        try:
            address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        except ValueError as exc:
            raise ValueError(f"{entry!r}: {host!r} is not an IP address") from exc
        endpoints.add((address, int(port_text)))
    return frozenset(endpoints)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """The engine's URL policy (see the module docstring)."""

    media_dir: Path | None = None
    allow_private: bool = False
    #: (address, port) pairs allowed although their address is not global.
    allowed_endpoints: frozenset[tuple[IPAddress, int]] = field(default_factory=frozenset)

    def local_path(self, raw: str) -> Path:
        """The file a local URL or path names, if allowed.

        Raises:
            PolicyError: no media directory, the path leaves it, or the name
                cannot be a file name. Messages never show the directory.
        """
        parsed = urllib.parse.urlsplit(raw)
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else raw)
        if self.media_dir is None:
            raise PolicyError("local files cannot be played: no media directory is configured")
        if any(len(_os_name(part)) > 255 for part in path.parts):
            raise PolicyError("the file name is too long (at most 255 bytes)")
        root = self.media_dir.resolve()
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise PolicyError("the file path is not valid") from exc
        if resolved != root and root not in resolved.parents:
            raise PolicyError("local files can only be played from the media directory")
        return resolved

    def display_name(self, path: Path) -> str:
        """*path* as users may see it: relative to the media directory."""
        if self.media_dir is not None:
            try:
                return str(path.relative_to(self.media_dir.resolve()))
            except ValueError:
                pass
        return path.name

    def check_address(self, address: IPAddress, port: int) -> None:
        """Refuse a connection to *address*:*port*.

        Raises:
            PolicyError: the address is not global and not allowed explicitly.
        """
        if self.allow_private or (address, port) in self.allowed_endpoints:
            return
        reason = forbidden_reason(address)
        if reason is not None:
            raise PolicyError(f"the address {address} is not allowed ({reason})")

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of *host* that may be connected to, in resolver order.

        A name is refused if *any* of its addresses is forbidden (a name that
        mixes public and internal addresses is a rebinding attempt, not a CDN).

        Raises:
            PolicyError: a forbidden address, or a name that does not resolve.
        """
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(literal, port)
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise PolicyError(f"cannot resolve the host name {host}") from exc
        addresses = _unique(ipaddress.ip_address(info[4][0]) for info in infos)
        if not addresses:
            raise PolicyError(f"cannot resolve the host name {host}")
        for address in addresses:
            try:
                self.check_address(address, port)
            except PolicyError as exc:
                raise PolicyError(
                    f"{host} resolves to a private or local address, which is not allowed"
                ) from exc
        return addresses

    async def check_url(self, url: str) -> None:
        """Refuse *url* if its host is (or resolves to) a forbidden address; a
        fast first check with a message about the user's own URL (the egress
        proxy checks every connection again).

        Raises:
            PolicyError: as ``resolve``, or the URL has no host.
        """
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname
        if not host:
            raise PolicyError("the URL has no host")
        if self.allow_private:
            return  # nothing to refuse: the name is resolved when connecting
        try:
            port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise PolicyError("the URL has an invalid port") from exc
        await self.resolve(host, port)


def _os_name(part: str) -> bytes:
    """A path component as the file system sees it (for its length limit)."""
    return part.encode("utf-8", "surrogateescape")


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    seen: dict[IPAddress, None] = {}
    for address in addresses:
        seen.setdefault(address, None)
    return list(seen)
