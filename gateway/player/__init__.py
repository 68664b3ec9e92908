"""Per-key players: queue rules (pure ``core``), the async shell that drives the
engine (``controller``), and their persistence (``store``)."""

from __future__ import annotations

from gateway.player.controller import Player, PlayerRegistry, run_command
from gateway.player.core import (
    CommandError,
    Desired,
    Failure,
    LoopMode,
    PlayerCore,
    PlayerStatus,
    PlayerView,
    Track,
)
from gateway.player.store import QueueStore

__all__ = [
    "CommandError",
    "Desired",
    "Failure",
    "LoopMode",
    "Player",
    "PlayerCore",
    "PlayerRegistry",
    "PlayerStatus",
    "PlayerView",
    "QueueStore",
    "Track",
    "run_command",
]
