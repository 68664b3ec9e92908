"""Per-key players, as three pure parts under one pure core and a thin async shell:

* ``queue``: the tracks, history, loop mode, shuffles and moves;
* ``binding``: which engine play is the current track's, its phase written as a
  transition table (``TRANSITIONS``), and the matching of engine events to plays;
* ``clock``: where the current track is;
* ``core``: the three together, applying ``commands`` (its ``applier``) and engine
  events, with what follows a failed track (``fallback``) and the filters and
  crossfade (``sound``);
* ``controller``: the shell (``Player``): commands in (``Player.apply(command) ->
  Outcome``), views out (``PlayerView``), engine events in (``events``), one
  supervised ``task`` whose ``reconcile`` makes the engine match the core (the
  ``plays`` among its calls, and its ``questions`` about the stream), and
  ``persistence`` in the ``store``;
* ``registry``: every key's player, and ``link``: what they share about the engine.
"""

from __future__ import annotations

from gateway.player.binding import TRANSITIONS, EngineEvent, Phase, Trigger
from gateway.player.commands import (
    Clear,
    Command,
    Enqueue,
    Jump,
    Move,
    Outcome,
    Pause,
    PlayNext,
    PlayNow,
    Previous,
    Remove,
    RemoveDuplicates,
    Resume,
    Seek,
    SeekBy,
    SetCrossfade,
    SetFilters,
    SetLoop,
    SetVolume,
    Shuffle,
    Skip,
    Stop,
    UndoClear,
)
from gateway.player.controller import Player
from gateway.player.core import Desired, PlayerCore
from gateway.player.errors import CommandError, PhaseError
from gateway.player.link import EngineLink
from gateway.player.queue import LoopMode, Queue
from gateway.player.registry import PlayerRegistry
from gateway.player.stats import PlayerStats
from gateway.player.store import QueueStore
from gateway.player.track import Failure, Track
from gateway.player.view import PlayerStatus, PlayerView

__all__ = [
    "TRANSITIONS",
    "Clear",
    "Command",
    "CommandError",
    "Desired",
    "EngineEvent",
    "EngineLink",
    "Enqueue",
    "Failure",
    "Jump",
    "LoopMode",
    "Move",
    "Outcome",
    "Pause",
    "Phase",
    "PhaseError",
    "PlayNext",
    "PlayNow",
    "Player",
    "PlayerCore",
    "PlayerRegistry",
    "PlayerStats",
    "PlayerStatus",
    "PlayerView",
    "Previous",
    "Queue",
    "QueueStore",
    "Remove",
    "RemoveDuplicates",
    "Resume",
    "Seek",
    "SeekBy",
    "SetCrossfade",
    "SetFilters",
    "SetLoop",
    "SetVolume",
    "Shuffle",
    "Skip",
    "Stop",
    "Track",
    "Trigger",
    "UndoClear",
]
