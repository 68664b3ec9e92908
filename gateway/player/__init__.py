"""Per-key players: queue rules (pure ``core``), the supervised async shell that
drives the engine (``controller``), the shared engine connection state (``link``),
and their persistence (``store``)."""

from __future__ import annotations

from gateway.player.controller import Player, PlayerRegistry, PlayerStats, run_command
from gateway.player.core import CommandError, Desired, PlayerCore, PlayerStatus, PlayerView, Track
from gateway.player.link import EngineLink
from gateway.player.store import QueueStore, QueueStoreError

__all__ = [
    "CommandError",
    "Desired",
    "EngineLink",
    "Player",
    "PlayerCore",
    "PlayerRegistry",
    "PlayerStats",
    "PlayerStatus",
    "PlayerView",
    "QueueStore",
    "QueueStoreError",
    "Track",
    "run_command",
]
