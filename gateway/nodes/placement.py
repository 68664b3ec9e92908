"""Where a new session goes: the usable node with the lowest penalty (pure).

A node is usable when it is up (its socket connected and its API answering) and
not drained. Among the usable nodes, those admitting plays (their ``/stats``
says so, and none refused a play of ours with 503 within its ``Retry-After``)
come first; if none admits, the least loaded usable node is still tried (its
503 then tells the user). Ties go to the node listed first, so placement is
reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.nodes.penalty import NodeStats, penalty

__all__ = ["Candidate", "choose"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One node as placement sees it."""

    name: str
    up: bool
    draining: bool
    stats: NodeStats
    #: Sessions placed on it since its stats were read.
    placed: int = 0
    #: Until when (monotonic seconds) it refused our plays with 503.
    refused_until: float = 0.0
    #: Its position in the configuration (ties).
    order: int = 0

    @property
    def usable(self) -> bool:
        return self.up and not self.draining


def choose(candidates: Iterable[Candidate], now: float,
           exclude: Iterable[str] = ()) -> Candidate | None:
    """The node for one new session, or None when no node is usable."""
    skipped = set(exclude)
    usable = [c for c in candidates if c.usable and c.name not in skipped]
    admitting = [c for c in usable if c.stats.admitting and c.refused_until <= now]
    pool = admitting or usable
    if not pool:
        return None
    return min(pool, key=lambda c: (penalty(c.stats, c.placed), c.order))
