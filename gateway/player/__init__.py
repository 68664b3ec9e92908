"""Per-key players: queue rules (pure ``core``), the supervised async shell that
drives the engine (``controller``), every key's player (``registry``), the shared engine
connection state (``link``), and their persistence (``store``)."""

from __future__ import annotations

from gateway.player.controller import Player, PlayerStats, run_command
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
from gateway.player.link import EngineLink
from gateway.player.registry import PlayerRegistry
from gateway.player.store import QueueStore

__all__ = [
    "CommandError",
    "Desired",
    "EngineLink",
    "Failure",
    "LoopMode",
    "Player",
    "PlayerCore",
    "PlayerRegistry",
    "PlayerStats",
    "PlayerStatus",
    "PlayerView",
    "QueueStore",
    "Track",
    "run_command",
]
