"""What fronts see of a player: a frozen snapshot (``PlayerView``), and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.player.queue import LoopMode
from gateway.player.track import Failure, Track
from protocol.filters import Filters

__all__ = ["PlayerStatus", "PlayerView"]


class PlayerStatus(StrEnum):
    """What the player is doing, as fronts show it."""

    IDLE = "idle"
    LOADING = "loading"
    PLAYING = "playing"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class PlayerView:
    """A snapshot for fronts: now playing, position, queue."""

    key: str
    status: PlayerStatus
    current: Track | None
    position: float
    duration: float | None
    paused: bool
    volume: float
    upcoming: tuple[Track, ...]
    history: tuple[Track, ...]
    error: str
    loop: LoopMode = LoopMode.OFF
    #: The latest track that could not be played (kept until the next one fails).
    failure: Failure | None = None
    #: True while the engine does not yet do what this view shows (a command on
    #: its way, or waiting for the engine to come back).
    pending: bool = False
    #: Why, in words, when the engine is behind (e.g. "the audio engine is unavailable").
    notice: str = ""
    #: The filters' name: a preset's, "custom", or "" for none.
    filter_name: str = ""
    #: Lavalink's filter set in effect (``Filters()``: none).
    filters: Filters = field(default_factory=Filters)
    #: Crossfade into the next track (seconds; 0 = gapless).
    crossfade: float = 0.0
    #: Tracks the latest clear removed that ``UndoClear`` would put back (0: none),
    #: and the seconds left to do it.
    undo_clear: int = 0
    undo_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (WebSocket state messages)."""
        return {
            "status": self.status.value,
            "current": self.current.as_dict() if self.current else None,
            "position": round(self.position, 2),
            "duration": self.duration,
            "paused": self.paused,
            "volume": self.volume,
            "queue": [t.as_dict() for t in self.upcoming],
            "history": [t.as_dict() for t in self.history],
            "error": self.error,
            "loop": self.loop.value,
            "pending": self.pending,
            "notice": self.notice,
            "filter": self.filter_name,
            "filters": self.filters.to_lavalink(),
            "crossfade": self.crossfade,
            "undo_clear": self.undo_clear,
            "undo_seconds": round(self.undo_seconds, 1),
        }
