"""The fronts' commands applied to a player's core. Pure.

Each command (``commands``) either changes the core's desired state and the queue, or
is refused with a ``CommandError`` whose words are for the user, before anything
changed. A command that changes the track starts a new play (``PlayerCore.play_from``);
the engine side (binding, events) is the core's. The applier also keeps the latest
clear, for ``UndoClear``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from gateway.player.binding import Phase, PlayBinding
from gateway.player.clock import PositionClock
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
from gateway.player.errors import CommandError
from gateway.player.fallback import Fallback
from gateway.player.queue import LoopMode, Queue
from gateway.player.sound import SoundSettings
from gateway.player.track import Track
from gateway.player.view import PlayerView

__all__ = ["UNDO_CLEAR_SECONDS", "Cleared", "CommandApplier"]

#: How long a clear can be undone (seconds). One clear per player is kept: a
#: new clear replaces it, so what a player keeps for it is at most one queue.
UNDO_CLEAR_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Cleared:
    """The upcoming tracks a clear removed at *at*, for ``UndoClear``."""

    tracks: tuple[Track, ...]
    at: float


class _Core(Protocol):
    """What the commands need of the player's core (``PlayerCore``)."""

    queue: Queue
    binding: PlayBinding
    clock: PositionClock
    volume: float
    paused: bool
    start_at: float
    error: str
    sound: SoundSettings
    fallback: Fallback

    @property
    def current(self) -> Track | None: ...

    def position(self, now: float) -> float: ...

    def view(self, now: float) -> PlayerView: ...

    def play_from(self, start_at: float, now: float, *, keep_pause: bool = False) -> None: ...

    def advance(self, now: float, *, requeue: bool = False, failed: bool = False) -> None: ...


class CommandApplier:
    """Applies commands to one core.

    Args:
        core: the player's core.
    """

    def __init__(self, core: _Core) -> None:
        self._core = core
        self._cleared: Cleared | None = None

    def apply(self, command: Command, now: float) -> Outcome:
        """Apply *command* at *now*.

        Raises:
            CommandError: it cannot apply now (its words say why); nothing changed.
        """
        core = self._core
        track: Track | None = None
        position = count = 0
        queue = core.queue
        match command:
            case Enqueue(track=first, more=more):
                position, count = queue.add((first, *more))
                if position == 0:
                    core.play_from(0.0, now)
                track = first
            case PlayNow(track=first, more=more):
                count = self._play_now(first, more, now)
                track = first
            case Skip():
                track = self._need_track()
                core.advance(now, requeue=queue.loop is LoopMode.QUEUE)
            case Previous():
                track = queue.back()
                core.play_from(0.0, now)
            case Jump(position=at):
                track = queue.jump(at)
                core.play_from(0.0, now)
            case Remove(position=at):
                track = queue.remove(at)
            case Move(position=at, to=to):
                track = queue.move(at, to)
            case Clear():
                removed = tuple(queue.upcoming)
                count = queue.clear()
                if count:
                    self._cleared = Cleared(removed, now)
            case UndoClear():
                count = self._undo_clear(now)
            case Shuffle(seed=seed):
                count = queue.shuffle(random.Random(seed))
            case PlayNext(track=first, more=more):
                position, count = queue.insert_next((first, *more))
                if position == 0:
                    core.play_from(0.0, now)
                track = first
            case SeekBy(seconds=seconds):
                self._seek_by(seconds, now)
            case RemoveDuplicates():
                count = queue.remove_duplicates()
            case SetLoop(mode=mode):
                queue.loop = mode
            case Seek(seconds=seconds):
                self._seek(seconds, now)
            case Pause():
                self._pause(now)
            case Resume():
                self._resume(now)
            case Stop(keep_queue=keep):
                self._stop(keep_queue=keep)
            case SetVolume(volume=volume):
                if not 0.0 <= volume <= 2.0:
                    raise CommandError("the volume must be between 0 and 200 %")
                core.volume = volume
            case SetFilters(filters=filters, name=name):
                core.sound.set_filters(filters, name)
            case SetCrossfade(seconds=seconds):
                core.sound.set_crossfade(seconds)
        return Outcome(command, core.view(now), track, position, count)

    def undoable(self, now: float) -> Cleared | None:
        """The latest clear, while it can still be undone."""
        cleared = self._cleared
        if cleared is None or now - cleared.at >= UNDO_CLEAR_SECONDS:
            return None
        return cleared

    def _undo_clear(self, now: float) -> int:
        cleared = self.undoable(now)
        if cleared is None:
            raise CommandError(
                "there is no cleared queue to bring back" if self._cleared is None
                else f"too late: a clear can be undone for {UNDO_CLEAR_SECONDS:g} seconds")
        count = self._core.queue.put_back(cleared.tracks)
        self._cleared = None
        return count

    def _need_track(self) -> Track:
        current = self._core.current
        if current is None:
            raise CommandError("nothing is playing")
        return current

    def _play_now(self, track: Track, more: tuple[Track, ...], now: float) -> int:
        core = self._core
        saved = core.fallback.capture(now)
        core.queue.insert_now(track)
        core.play_from(0.0, now)
        if saved is not None:
            core.fallback.keep(saved)
        added = 0
        if more and len(core.queue.upcoming) + 1 < Queue.MAX_TRACKS:
            added = core.queue.add(more)[1]
        return 1 + added

    def _seek(self, seconds: float, now: float) -> None:
        current = self._need_track()
        if seconds < 0:
            raise CommandError("the position must not be negative")
        if current.duration and seconds >= current.duration:
            raise CommandError(f"the track is only {_clock(current.duration)} long")
        self._core.play_from(seconds, now, keep_pause=True)

    def _seek_by(self, seconds: float, now: float) -> None:
        current = self._need_track()
        if not math.isfinite(seconds):
            raise CommandError("give a number of seconds")
        position = self._core.position(now)
        target = max(0.0, position + seconds)
        if current.duration and target >= current.duration:
            left = max(0.0, current.duration - position)
            raise CommandError(f"only {_clock(left)} of the track is left")
        self._core.play_from(target, now, keep_pause=True)

    def _pause(self, now: float) -> None:
        self._need_track()
        core = self._core
        if core.paused:
            raise CommandError("already paused")
        core.paused = True
        core.clock.pause(now)

    def _resume(self, now: float) -> None:
        core = self._core
        if core.queue.start() is not None:
            # A stopped queue: its first track plays from the start.
            core.play_from(0.0, now)
            return
        self._need_track()
        if not core.paused:
            raise CommandError("not paused")
        if core.binding.phase is Phase.PARKED:
            # Nothing runs at the engine: start it where it was left.
            core.play_from(core.clock.base, now)
            return
        core.paused = False
        core.clock.resume(now)

    def _stop(self, *, keep_queue: bool) -> None:
        core = self._core
        if keep_queue:
            core.queue.stop()
        else:
            core.queue.forget()
            self._cleared = None
        core.paused = False
        core.error = ""
        core.fallback.forget()
        core.binding.clear()
        core.clock.reset(0.0)
        core.start_at = 0.0


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
