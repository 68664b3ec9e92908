"""Lavalink-style penalties: how loaded a node is, from its ``/stats`` (pure).

A node's penalty adds, as Lavalink's client load balancers do:

* its playing sessions (one point each);
* a CPU penalty growing exponentially with load: ``1.05^(100 x load) x 10 - 10``
  (0 idle, about 11 at 50 %, about 1300 at 100 %);
* a frame-deficit penalty ``1.03^(500 x deficit/3000) x 600 - 600`` and twice a
  nulled-frame penalty ``1.03^(500 x nulled/3000) x 300 - 300``, with the deficit
  and nulls per session and per minute (of 3000 frames).

Our engines report more than Lavalink's per-minute figures: ``headroom`` holds
the engine's own CPU share of its budget (not the host's, so several engines on
one machine are told apart) and the nulled and skipped frames of the last few
seconds, which show trouble a minute sooner. Those frames are also frames of the
last minute, so they are counted as they are (per session), not extrapolated to
a minute: one late tick on a busy host then weighs a few sessions, not sixty,
and does not send a whole burst of placements to the other nodes. The larger of
the two figures counts.

For our engines, lost frames count only while the engine itself uses at least
half its CPU budget (``FRAMES_MIN_LOAD``, the share below which the engine's own
admission blames the host, not its sessions). Below it they are another process's
doing: it starves every engine of the host alike, a few ticks more here or there
by chance, and counting them herded whole bursts onto whichever node happened to
skip fewest ticks in the last seconds. Lavalink-shaped nodes (no ``headroom``)
keep the full formula.

Between two polls the gateway places sessions the stats do not show yet, so the
placements made since the last poll are added: one playing session each, and the
engine's measured cost per session to its load. Without that, every play of a
burst would land on the node that was emptiest at the last poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NodeStats", "penalty"]

#: Frames of a minute: the unit Lavalink's frame figures are in.
_FRAMES_PER_MINUTE = 3000

#: Our engine's own CPU share below which its lost frames are the host's doing.
FRAMES_MIN_LOAD = 0.5


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


@dataclass(frozen=True, slots=True)
class NodeStats:
    """What a penalty needs from one ``/stats`` answer."""

    playing: int = 0
    #: Share of the node's CPU budget in use (0-1, more when over budget).
    load: float = 0.0
    #: Share of the budget one more session costs (0: unknown).
    session_cost: float = 0.0
    #: Per session and minute, of 3000 frames.
    deficit: float = 0.0
    nulled: float = 0.0
    #: False when the node refuses new plays now (admission by load).
    admitting: bool = True

    @classmethod
    def from_stats(cls, document: dict[str, Any]) -> NodeStats:
        """Read a ``/stats`` body (ours, or any Lavalink-shaped one). Missing or
        malformed fields count as zero."""
        playing = int(_number(document.get("playingPlayers")))
        cpu = document.get("cpu") if isinstance(document.get("cpu"), dict) else {}
        frames = document.get("frameStats") if isinstance(document.get("frameStats"),
                                                          dict) else {}
        room = document.get("headroom") if isinstance(document.get("headroom"), dict) else {}
        assert isinstance(cpu, dict) and isinstance(frames, dict) and isinstance(room, dict)
        deficit = _number(frames.get("deficit"))
        nulled = _number(frames.get("nulled"))
        if room:
            load = _number(room.get("load"))
            if _number(room.get("expectedFrames")) > 0:
                # Frames per session within the window (a part of the last
                # minute): a skipped tick misses a frame of every session, a
                # nulled frame one of one session.
                deficit = max(deficit, _number(room.get("deficit")))
                nulled = max(nulled, _number(room.get("nulled")) / max(1, playing))
            admitting = room.get("admitting") is not False
            cost = _number(room.get("sessionCost"))
            if load < FRAMES_MIN_LOAD and admitting:
                deficit = nulled = 0.0
        else:
            load = _number(cpu.get("systemLoad"))
            admitting = True
            cost = 0.0
        return cls(playing=max(0, playing), load=max(0.0, load), session_cost=max(0.0, cost),
                   deficit=max(0.0, deficit), nulled=max(0.0, nulled), admitting=admitting)


def penalty(stats: NodeStats, placed: int = 0) -> float:
    """The node's penalty with *placed* sessions started on it since *stats*
    were read (lower is better)."""
    load = stats.load + placed * stats.session_cost
    players = stats.playing + placed
    cpu = 1.05 ** (100 * load) * 10 - 10
    deficit = 1.03 ** (500 * stats.deficit / _FRAMES_PER_MINUTE) * 600 - 600
    nulled = (1.03 ** (500 * stats.nulled / _FRAMES_PER_MINUTE) * 300 - 300) * 2
    return float(players + cpu + deficit + nulled)
