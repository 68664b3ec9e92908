"""Who may hold what in the playground (pure: callers pass the time and the counts).

An anonymous identity costs nothing to make, so the playground rations what
identities can take:

* **identities are earned**: a client address gets a new identity cookie from a
  small bucket (``IdentityIssuer``: a few at once, then one more every so often),
  so one browser minting fresh identities soon gets none;
* **engine sessions are capped** per client address and for the playground as a
  whole (``refuse_start``), so the playground never holds every engine slot and
  one address never holds the playground's;
* **tabs are capped** per identity and per client address (``MAX_TABS_PER_USER``,
  ``MAX_TABS_PER_CLIENT``): each costs a writer task and bounded queues.

Addresses are grouped the way they are handed out (``client_key``): an IPv4
address is one client, an IPv6 client is its /64 (one customer's network).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from playground_ws.ratelimit import TokenBucket

__all__ = [
    "MAX_TABS_PER_CLIENT",
    "MAX_TABS_PER_USER",
    "Holder",
    "IdentityIssuer",
    "client_key",
    "refuse_start",
    "refuse_tab",
]

#: Open tabs (WebSockets) one identity may have: more than a person uses, and a
#: bound on what one cookie can cost.
MAX_TABS_PER_USER = 8
#: Open tabs from one client address (a household or office behind one NAT).
MAX_TABS_PER_CLIENT = 64


def client_key(address: str | None) -> str:
    """The client an address belongs to: an IPv4 address itself, an IPv6 address
    by its /64 network (an IPv4-mapped one by its IPv4 address); "unknown" when
    there is none (a Unix socket, a test client)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class IdentityIssuer:
    """New identities per client: *burst* at once, then one more every *interval*
    seconds.

    A client whose bucket is full again is forgotten by ``sweep`` (a full bucket
    and a new one are the same), so memory follows the clients that got an
    identity recently, not every address ever seen.
    """

    def __init__(self, burst: int, interval: float) -> None:
        if burst < 1 or interval <= 0:
            raise ValueError("burst must be at least 1 and interval positive")
        self.burst = burst
        self.interval = interval
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, client: str, now: float) -> bool:
        """Take one identity for *client* if it may have one now."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(1.0 / self.interval, self.burst)
        return bucket.take(now)

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until *client* may have one more identity (0: now)."""
        bucket = self._buckets.get(client)
        if bucket is None or bucket.tokens < 0:
            return 0.0
        tokens = min(bucket.burst, bucket.tokens + (now - bucket.updated) * bucket.rate)
        return max(0.0, (1.0 - tokens) / bucket.rate)

    def sweep(self, now: float) -> int:
        """Forget clients whose bucket is full again. Returns how many."""
        full = [client for client, bucket in self._buckets.items() if bucket.full_at() <= now]
        for client in full:
            del self._buckets[client]
        return len(full)


@dataclass(frozen=True, slots=True)
class Holder:
    """A playground user holding an engine session, and the client it is charged
    to: the one whose tab started it, kept after the tabs close ("" if unknown)."""

    user: str
    client: str


def refuse_start(user: str, client: str, holders: Iterable[Holder], *,
                 per_client: int, total: int) -> str | None:
    """Why *user*, from *client*, may not start an engine session now, in words
    for the page; None when it may.

    Args:
        holders: every playground user holding an engine session now.
        per_client: most sessions held by users of one client.
        total: most sessions the playground holds.
    """
    held = [h for h in holders if h.user != user]
    if len(held) >= total:
        return (f"the playground is full right now ({total} people are listening); "
                "try again in a few minutes")
    mine = sum(1 for h in held if h.client == client)
    if mine >= per_client:
        return (f"{per_client} players are already in use from your network; stop one "
                "of them (or close its tabs for a minute) and try again")
    return None


def refuse_tab(user_tabs: int, client_tabs: int) -> str | None:
    """Why one more tab (*user_tabs* of this identity, *client_tabs* of its
    client already open) is refused, in words; None when it is welcome."""
    if user_tabs >= MAX_TABS_PER_USER:
        return (f"this browser already has {MAX_TABS_PER_USER} playground tabs open; "
                "close one and reload this page")
    if client_tabs >= MAX_TABS_PER_CLIENT:
        return "too many playground tabs are open from your network; try again later"
    return None
