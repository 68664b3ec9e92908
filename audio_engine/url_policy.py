"""Which URLs the engine agrees to open: the line between users and the host.

* only ``http`` and ``https`` (and local files);
* local files only under the configured media directory (none if unset), with
  the path resolved first, so ``..`` and symbolic links cannot leave it;
* hosts that resolve to loopback, private, link-local, multicast or reserved
  addresses are refused unless ``allow_private`` is set: the engine must not be a
  way into the network it runs in (the tests allow loopback explicitly).

A name is checked against every address it resolves to. FFmpeg resolves it again
when it connects, so a DNS answer that changes in between is not caught; put the
engine behind an egress firewall where that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PolicyError", "UrlPolicy"]


class PolicyError(Exception):
    """The URL is not allowed; ``str()`` says why."""


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """The engine's URL policy (see the module docstring)."""

    media_dir: Path | None = None
    allow_private: bool = False

    def local_path(self, raw: str) -> Path:
        """The file a local URL or path names, if allowed.

        Raises:
            PolicyError: no media directory, or the path leaves it.
        """
        parsed = urllib.parse.urlsplit(raw)
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else raw)
        if self.media_dir is None:
            raise PolicyError("local files cannot be played: no media directory is configured")
        root = self.media_dir.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise PolicyError(f"local files can only be played from {root}")
        return resolved

    async def check_host(self, url: str) -> None:
        """Refuse *url* if its host is (or resolves to) a forbidden address.

        Raises:
            PolicyError: a forbidden address, or a name that does not resolve.
        """
        if self.allow_private:
            return
        host = urllib.parse.urlsplit(url).hostname
        if not host:
            raise PolicyError("the URL has no host")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if _forbidden(literal):
                raise PolicyError(f"the address {host} is not allowed (private or local)")
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 10.0)
        except (OSError, TimeoutError) as exc:
            raise PolicyError(f"cannot resolve {host} ({exc})") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if _forbidden(address):
                raise PolicyError(f"{host} resolves to {address}, which is not allowed "
                                  "(private or local)")
