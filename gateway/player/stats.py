"""Counters of every player of a registry (read by the gateway's metrics)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlayerStats"]


@dataclass(slots=True)
class PlayerStats:
    """Counters of every player of a registry (for metrics)."""

    #: Player tasks restarted after an unexpected error.
    restarts: int = 0
    #: Players unloaded for being idle with nobody attached.
    evictions: int = 0
    #: Saves of a queue that did not land (each is retried).
    failed_saves: int = 0
    #: Streams the engine lost (restart, shutdown, idle) while they were not over:
    #: kept at their position (played again, or paused there).
    lost_streams: int = 0
    #: Plays whose answer was lost and whose outcome was asked of the engine.
    play_checks: int = 0
    #: Tracks that started by a gapless join (no play sent).
    gapless_joins: int = 0
    #: Joins whose next track never started at the engine (played plainly instead).
    missed_joins: int = 0
    #: Background saves of the positions of playing players (one write for all).
    position_saves: int = 0
