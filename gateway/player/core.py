"""One player's rules, pure: its queue, its play binding and its position clock.

A player belongs to one key (a Discord guild id or a playground user id, which is
also the engine session id). Commands (``commands``) change the *desired* state:
which track, from which position, paused or not, at which volume, with which
filters. Engine events and the shell's answers move the play binding (``binding``)
through its phases, and the queue (``queue``) decides what comes next when a track
ends or fails. The async shell (``controller``) makes the engine match the desired
state; nothing here does I/O or reads a clock (``now`` is always passed in).

Race-freedom rests on two things:

* every change of track is a new play with a new ``nonce``; the shell sends only the
  latest desired state, so rapid commands resolve to the last one;
* events are matched to plays by the binding, so a late ``finished`` of a replaced
  stream never advances the queue.

A "play now" that fails gives the interrupted track back instead of cutting it off:
where it was (the engine refused the play and never replaced the stream), or played
again from where it was cut off (the new track failed after replacing it).

Gapless queues: with an engine that takes a next track ahead of time, the shell
tells it what a natural end leads to (``next_plan``) and names the engine's play
(``bind_next``). At the join the engine sends ``finished`` (reason ``end``) of the
current play and then ``ready`` of the next one: the queue moves on and the binding
JOINs that play at once, so no play is sent. A join that never shows its ``ready`` is
played plainly (``join_missed``).

A stream can also be lost without being over: the engine restarted, shut down or
dropped an idle session. ``stream_lost`` keeps the track and the position reached;
a playing player plays it again from there, a paused one parks there and plays from
there on resume.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any

from gateway.player.binding import (
    BindingState,
    EngineEvent,
    NextHeld,
    Phase,
    PlayBinding,
    Trigger,
)
from gateway.player.clock import ClockState, PositionClock
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
from gateway.player.queue import LoopMode, Queue
from gateway.player.track import Failure, Track
from gateway.player.view import PlayerStatus, PlayerView
from protocol import EventType, FinishReason
from protocol.filters import FilterError, Filters, parse_filters

__all__ = ["MAX_CROSSFADE", "UNDO_CLEAR_SECONDS", "Desired", "NextPlan", "PlayerCore"]

#: Longest crossfade between two tracks (seconds).
MAX_CROSSFADE = 12.0
#: How long a clear can be undone (seconds). One clear per player is kept: a
#: new clear replaces it, so what a player keeps for it is at most one queue.
UNDO_CLEAR_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Desired:
    """What the engine should be doing for this key.

    This is also all that is replayed when the stream is played again on a new
    engine process (an engine restart, a node failover, a drained node's move):
    the player plays ``track`` from the position reached with the volume, the
    filters and the crossfade, and pauses after it. A further per-session setting
    that must survive those belongs here too, sent with the play, and then carries
    over with no change to the pool.
    """

    nonce: int
    track: Track | None
    start_at: float
    paused: bool
    volume: float
    #: Lavalink's filter set (``Filters()``: no filter).
    filters: Filters = field(default_factory=Filters)
    #: Seconds the next track fades in over the end of the current one.
    crossfade: float = 0.0


@dataclass(frozen=True, slots=True)
class NextPlan:
    """The track a natural end of the current play (*nonce*) leads to, for an
    engine that joins it to the same stream ahead of time."""

    nonce: int
    track: Track


@dataclass(frozen=True, slots=True)
class _Cleared:
    """The upcoming tracks a clear removed at *at*, for ``UndoClear``."""

    tracks: tuple[Track, ...]
    at: float


@dataclass(frozen=True, slots=True)
class _Interrupted:
    """What a "play now" interrupted, to give it back if the new track fails.

    Valid while the current play is still *nonce* (any other change of track makes a
    new play) and the new track has not sent ``ready``.
    """

    nonce: int
    track: Track
    position: float
    paused: bool
    start_at: float
    binding: BindingState
    clock: ClockState
    #: The new track went to the engine as a replacement made once it has audio: the
    #: engine plays the interrupted stream until then, and on if the new one fails.
    kept_live: bool = False


class PlayerCore:
    """Queue, play binding, position clock and sound settings of one key."""

    def __init__(self, key: str, *, volume: float = 1.0) -> None:
        self.key = key
        self.queue = Queue()
        self.binding = PlayBinding()
        self.clock = PositionClock()
        self.volume = volume
        #: The user wants it paused (the engine follows).
        self.paused = False
        #: Where the current play starts (seconds into the track).
        self.start_at = 0.0
        self.error = ""
        #: The latest track that could not be played.
        self.failure: Failure | None = None
        self._failures = 0
        self._interrupted: _Interrupted | None = None
        self._cleared: _Cleared | None = None
        # Sound settings (kept across tracks).
        self.filters = Filters()
        self.filter_name = ""
        self.crossfade = 0.0

    # -- queries ----------------------------------------------------------------------

    @property
    def current(self) -> Track | None:
        """The track at the cursor, if any."""
        return self.queue.current

    @property
    def nonce(self) -> int:
        """The current play's number."""
        return self.binding.nonce

    @property
    def phase(self) -> Phase:
        """The current play's phase."""
        return self.binding.phase

    @property
    def status(self) -> PlayerStatus:
        """What fronts show: derived from the phase and the pause."""
        match self.binding.phase:
            case Phase.IDLE:
                return PlayerStatus.IDLE
            case Phase.PARKED:
                return PlayerStatus.PAUSED
            case Phase.STREAMING:
                return PlayerStatus.PAUSED if self.paused else PlayerStatus.PLAYING
            case _:
                return PlayerStatus.LOADING

    @property
    def at_engine(self) -> bool:
        """A track is loaded and was started at the engine since the queue was last
        parked (restored from the store, or lost while paused)."""
        return self.current is not None and self.binding.phase is not Phase.PARKED

    def position(self, now: float) -> float:
        """Seconds into the current track."""
        return self.clock.position(now)

    def desired(self) -> Desired:
        """What the engine should be doing now."""
        return Desired(self.nonce, self.current, self.start_at, self.paused, self.volume,
                       self.filters, self.crossfade)

    def next_plan(self) -> NextPlan | None:
        """The track the engine should join after the current play, or None (no
        track follows, or the current play is not streaming with a play id). Loop
        modes count: the same track again under ``TRACK``, the queue's first track
        (or the current one, when it is alone) under ``QUEUE``."""
        binding = self.binding
        if binding.phase is not Phase.STREAMING or binding.play_id is None:
            return None
        track = self.queue.after_end()
        return NextPlan(self.nonce, track) if track is not None else None

    @property
    def next_play_id(self) -> int | None:
        """The engine's play id of the next track it holds for us, if any."""
        held = self.binding.next
        return held.play_id if held is not None else None

    def view(self, now: float) -> PlayerView:
        """A snapshot for fronts."""
        current = self.current
        cleared = self._undoable(now)
        return PlayerView(
            key=self.key,
            status=self.status,
            current=current,
            position=self.position(now) if current else 0.0,
            duration=current.duration if current else None,
            paused=self.paused,
            volume=self.volume,
            upcoming=tuple(self.queue.upcoming),
            history=tuple(self.queue.history),
            error=self.error,
            loop=self.queue.loop,
            failure=self.failure,
            filter_name=self.filter_name,
            filters=self.filters,
            crossfade=self.crossfade,
            undo_clear=len(cleared.tracks) if cleared else 0,
            undo_seconds=cleared.at + UNDO_CLEAR_SECONDS - now if cleared else 0.0,
        )

    # -- commands ---------------------------------------------------------------------

    def apply(self, command: Command, now: float) -> Outcome:
        """Apply *command* at *now*.

        Raises:
            CommandError: it cannot apply now (its words say why); nothing changed.
        """
        track: Track | None = None
        position = count = 0
        queue = self.queue
        match command:
            case Enqueue(track=first, more=more):
                position, count = queue.add((first, *more))
                if position == 0:
                    self._start(0.0, now)
                track = first
            case PlayNow(track=first, more=more):
                count = self._play_now(first, more, now)
                track = first
            case Skip():
                track = self._need_track()
                self._advance(now, requeue=queue.loop is LoopMode.QUEUE)
            case Previous():
                track = queue.back()
                self._start(0.0, now)
            case Jump(position=at):
                track = queue.jump(at)
                self._start(0.0, now)
            case Remove(position=at):
                track = queue.remove(at)
            case Move(position=at, to=to):
                track = queue.move(at, to)
            case Clear():
                removed = tuple(queue.upcoming)
                count = queue.clear()
                if count:
                    self._cleared = _Cleared(removed, now)
            case UndoClear():
                count = self._undo_clear(now)
            case Shuffle(seed=seed):
                count = queue.shuffle(random.Random(seed))
            case PlayNext(track=first, more=more):
                position, count = queue.insert_next((first, *more))
                if position == 0:
                    self._start(0.0, now)
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
                self.volume = volume
            case SetFilters(filters=filters, name=name):
                self.filters = filters
                self.filter_name = name if filters != Filters() else ""
            case SetCrossfade(seconds=seconds):
                if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_CROSSFADE):
                    raise CommandError(
                        f"the crossfade must be between 0 and {MAX_CROSSFADE:g} seconds")
                self.crossfade = float(seconds)
        return Outcome(command, self.view(now), track, position, count)

    def _undoable(self, now: float) -> _Cleared | None:
        """The latest clear, while it can still be undone."""
        cleared = self._cleared
        if cleared is None or now - cleared.at >= UNDO_CLEAR_SECONDS:
            return None
        return cleared

    def _undo_clear(self, now: float) -> int:
        cleared = self._undoable(now)
        if cleared is None:
            raise CommandError(
                "there is no cleared queue to bring back" if self._cleared is None
                else f"too late: a clear can be undone for {UNDO_CLEAR_SECONDS:g} seconds")
        count = self.queue.put_back(cleared.tracks)
        self._cleared = None
        return count

    def _need_track(self) -> Track:
        current = self.current
        if current is None:
            raise CommandError("nothing is playing")
        return current

    def _play_now(self, track: Track, more: tuple[Track, ...], now: float) -> int:
        current = self.current
        saved = self._interruption(current, now) if current is not None else None
        self.queue.insert_now(track)
        self._start(0.0, now)
        if saved is not None:
            self._interrupted = dataclasses.replace(saved, nonce=self.nonce)
        added = 0
        if more and len(self.queue.upcoming) + 1 < Queue.MAX_TRACKS:
            added = self.queue.add(more)[1]
        return 1 + added

    def _seek(self, seconds: float, now: float) -> None:
        current = self._need_track()
        if seconds < 0:
            raise CommandError("the position must not be negative")
        if current.duration and seconds >= current.duration:
            raise CommandError(f"the track is only {_clock(current.duration)} long")
        self._start(seconds, now, keep_pause=True)

    def _seek_by(self, seconds: float, now: float) -> None:
        current = self._need_track()
        if not math.isfinite(seconds):
            raise CommandError("give a number of seconds")
        position = self.position(now)
        target = max(0.0, position + seconds)
        if current.duration and target >= current.duration:
            left = max(0.0, current.duration - position)
            raise CommandError(f"only {_clock(left)} of the track is left")
        self._start(target, now, keep_pause=True)

    def _pause(self, now: float) -> None:
        self._need_track()
        if self.paused:
            raise CommandError("already paused")
        self.paused = True
        self.clock.pause(now)

    def _resume(self, now: float) -> None:
        if self.queue.start() is not None:
            # A stopped queue: its first track plays from the start.
            self._start(0.0, now)
            return
        self._need_track()
        if not self.paused:
            raise CommandError("not paused")
        if self.binding.phase is Phase.PARKED:
            # Nothing runs at the engine: start it where it was left.
            self._start(self.clock.base, now)
            return
        self.paused = False
        self.clock.resume(now)

    def _stop(self, *, keep_queue: bool) -> None:
        if keep_queue:
            self.queue.stop()
        else:
            self.queue.forget()
            self._cleared = None
        self.paused = False
        self.error = ""
        self._interrupted = None
        self.binding.clear()
        self.clock.reset(0.0)
        self.start_at = 0.0

    # -- the shell's calls and engine events ------------------------------------------

    def sending(self, nonce: int) -> None:
        """The shell is about to send *nonce*'s play (or the stop, with no track).

        Raises:
            PhaseError: *nonce* is not current, or there is nothing to send.
        """
        self.binding.send(nonce)

    def bind_play(self, nonce: int, play_id: int | None, now: float) -> None:
        """The engine accepted *nonce*'s play and named it *play_id* (None for
        engines without play ids). Applies its events that arrived first; an answer
        for a play no longer current is ignored."""
        early = self.binding.answer(nonce, play_id)
        if early is not None:
            self._replay(early, now)

    def play_failed(self, nonce: int, message: str, now: float) -> None:
        """The engine refused the play for *nonce* (bad URL, limit reached...).

        A refused play has not touched the engine's session, so after a failed
        "play now" the interrupted stream is still playing there: it is taken
        back as it was. Otherwise the queue moves on (never looping the failed
        track)."""
        if not self.binding.refuse(nonce):
            return
        current = self.current
        self.error = _could_not_play(current, message)
        interrupted = self._interrupted
        if current is not None and interrupted is not None and interrupted.nonce == nonce:
            self._record_failure(current, message, kept=interrupted.track)
            self._reinstate(interrupted, now)
            return
        if current is not None:
            self._record_failure(current, message)
        self._advance(now, failed=True)

    def replaces_live(self, nonce: int) -> bool:
        """*nonce*'s play is a "play now" that interrupts a stream the engine plays
        (with a play id): an engine with ``play_now`` can keep that stream until the
        new track has audio, and on if it fails."""
        saved = self._interrupted
        return (saved is not None and saved.nonce == nonce == self.nonce
                and saved.binding.phase is Phase.STREAMING
                and saved.binding.play_id is not None)

    def replacing_live(self, nonce: int) -> None:
        """The shell sends *nonce*'s play as such a replacement (``replaces_live``)."""
        saved = self._interrupted
        if saved is not None and saved.nonce == nonce and saved.binding.play_id is not None:
            self._interrupted = dataclasses.replace(saved, kept_live=True)
            self.binding.keep_live(saved.binding.play_id)

    def sent_as_replacement(self, nonce: int) -> bool:
        """*nonce*'s play went to the engine as such a replacement."""
        saved = self._interrupted
        return saved is not None and saved.nonce == nonce and saved.kept_live

    def not_replacing_live(self, nonce: int) -> None:
        """The replacement could not be sent as such (the engine's stream had ended):
        a plain play follows."""
        saved = self._interrupted
        if saved is not None and saved.nonce == nonce:
            self._interrupted = dataclasses.replace(saved, kept_live=False)
            self.binding.live_play = None

    def on_event(self, event: EngineEvent, now: float) -> bool:
        """Apply an engine event. Returns True if it was taken as this player's
        current play's."""
        trigger = self.binding.match(event)
        if trigger is None:
            return False
        if trigger is Trigger.UNREADY:
            # The ready we took was the replaced stream's, and this is its end.
            if self.binding.phase is Phase.STREAMING:
                self.binding.fire(Trigger.UNREADY)
            self.clock.stop_running()
            return False
        self._apply_event(event, now)
        return True

    def bind_next(self, plan: NextPlan, play_id: int, now: float) -> bool:
        """The engine holds *plan*'s track as the next play *play_id*.

        If the queue moved on meanwhile by a plain ``finished`` to that very track
        and the engine did join it (its ``ready`` is already here), that play is
        taken as the current track's: returns True, and no play is needed."""
        binding = self.binding
        if plan.nonce == self.nonce:
            binding.hold_next(plan.nonce, plan.track.url, play_id)
            return False
        current = self.current
        if (current is not None and current.url == plan.track.url and self.start_at == 0.0
                and binding.phase is Phase.WANTED and binding.kept_ready(play_id)):
            self._replay(binding.join(play_id), now)
            return True
        return False

    def filters_refused(self, kept: Filters, message: str) -> None:
        """The engine refused the filters set last (its *message* names the wrong
        value): it still plays *kept*, which are the desired filters again."""
        self.filters = kept
        self.filter_name = "custom" if kept != Filters() else ""
        self.error = f"the filters were refused: {message}"

    def clear_next(self) -> None:
        """The engine no longer holds a next track for us (cancelled)."""
        self.binding.next = None

    def join_missed(self, now: float) -> bool:
        """The track a join moved to never started at the engine (the next track
        came too late to join, or another one joined): play it plainly. Returns
        True when a play is now desired."""
        if self.binding.phase is not Phase.JOINING or self.current is None:
            return False
        self._start(self.start_at, now)
        return True

    def stream_lost(self, at: float, now: float) -> bool:
        """The engine no longer has this player's stream, which was not over (the
        engine restarted or shut down at *at*, or dropped the session). The track
        and the position reached at *at* are kept. Returns True when a new play
        is now desired (the player was playing); a paused player parks there, with
        nothing at the engine, and plays from its position on resume."""
        binding = self.binding
        if binding.bound:
            binding.fire(Trigger.LOSE)
        binding.forget_streams()
        if self.current is None:
            return False
        position = self.clock.position_at(at)
        if self.paused:
            binding.park()
            self.clock.reset(position)
            self.start_at = position
            return False
        self._start(position, now, keep_pause=True)
        return True

    def ready_missed(self, now: float, position: float | None = None) -> bool:
        """The engine says the bound play is streaming, but its ``ready`` never
        reached us (the socket was down when it was written): take it as ready
        now, at *position* seconds when the engine told it. Returns True if that
        changed anything."""
        if self.current is None or self.binding.phase not in (Phase.STARTING,
                                                              Phase.JOINING):
            return False
        if position is not None:
            self.clock.set_base(position)
        self._apply_event(EngineEvent(EventType.READY), now)
        return True

    def stream_ended(self, now: float) -> None:
        """The engine reports this player's stream over (its end event never
        reached us, e.g. while the socket was down): go on as after ``finished``,
        without the loop."""
        if self.binding.bound:
            self.binding.fire(Trigger.FINISH)
        self.binding.stream_over()
        self._advance(now)

    # -- internals --------------------------------------------------------------------

    def _replay(self, events: list[EngineEvent], now: float) -> None:
        """Apply the current play's events that came before it was bound, in order,
        until one of them ends the play (the rest were that play's too)."""
        nonce = self.nonce
        for event in events:
            if self.nonce != nonce:
                return
            self._apply_event(event, now)

    def _apply_event(self, event: EngineEvent, now: float) -> None:
        binding = self.binding
        match event.trigger:
            case Trigger.READY:
                binding.fire(Trigger.READY)
                binding.replaced_live()
                self._interrupted = None
                self.clock.run(now, paused=self.paused)
                self.error = ""
            case Trigger.LOSE:
                self.stream_lost(now, now)
            case Trigger.FINISH:
                following = binding.next if event.reason is FinishReason.END else None
                binding.fire(Trigger.FINISH)
                binding.stream_over()
                ended = self.nonce
                self._ended(now)
                if following is not None and following.nonce == ended:
                    self._join(following, now)
            case Trigger.ERROR:
                binding.fire(Trigger.ERROR)
                binding.stream_over()
                self._failed(event.message, now)
            case trigger:
                raise AssertionError(f"an engine event is never {trigger}")

    def _failed(self, message: str, now: float) -> None:
        current = self.current
        self.error = _could_not_play(current, message)
        interrupted = self._interrupted
        if interrupted is not None and interrupted.nonce != self.nonce:
            interrupted = None
        if current is not None:
            self._record_failure(current, message,
                                 kept=interrupted.track if interrupted is not None else None)
        if interrupted is not None and interrupted.kept_live:
            # The engine never left the interrupted stream: take it back as it is.
            self._reinstate(interrupted, now)
        elif interrupted is not None:
            # The engine replaced the interrupted stream before this one
            # failed: play it again from where it was cut off.
            self._give_back(interrupted, now)
        else:
            self._advance(now, failed=True)

    def _join(self, following: NextHeld, now: float) -> None:
        """The engine went on to the next track it held, in the same stream: bind
        the track the queue moved to to that play (no play is sent). When the
        queue wants another track now, the plain play of it replaces the join."""
        current = self.current
        if current is None or current.url != following.url or self.start_at != 0.0:
            return
        self._replay(self.binding.join(following.play_id), now)

    def _start(self, start_at: float, now: float, *, keep_pause: bool = False) -> None:
        """A new play of the current track from *start_at*."""
        self._interrupted = None
        self.binding.new_play()
        self.start_at = start_at
        self.clock.reset(start_at)
        if not keep_pause:
            self.paused = False

    def _ended(self, now: float) -> None:
        """The current track played to its end: what comes next depends on the loop."""
        if self.queue.loop is LoopMode.TRACK and self.current is not None:
            self._start(0.0, now)
        else:
            self._advance(now, requeue=self.queue.loop is LoopMode.QUEUE)

    def _advance(self, now: float, *, requeue: bool = False, failed: bool = False) -> None:
        """Move the cursor on. *requeue* puts a copy of the track that ends at the
        end of the queue (loop queue); a *failed* track is never put back, so a
        queue of broken links ends instead of looping on errors, and it leaves the
        queue (what could not be played is not in the history)."""
        moved = self.queue.discard() if failed else self.queue.advance(requeue=requeue)
        if moved is not None:
            self._start(0.0, now)
            return
        self._interrupted = None
        self.binding.clear()
        self.clock.reset(0.0)
        self.start_at = 0.0
        self.paused = False

    def _record_failure(self, track: Track, message: str, *, kept: Track | None = None
                        ) -> None:
        self._failures += 1
        self.failure = Failure(track, message, self._failures, kept)

    def _interruption(self, current: Track, now: float) -> _Interrupted:
        return _Interrupted(
            nonce=self.nonce, track=current, position=self.position(now),
            paused=self.paused, start_at=self.start_at, binding=self.binding.state(),
            clock=self.clock.state())

    def _reinstate(self, saved: _Interrupted, now: float) -> None:
        """The play of a "play now" was refused: the interrupted stream never
        stopped at the engine, so take it back as it was, under the current
        nonce (the shell counts that nonce as sent: no engine call follows)."""
        if saved.binding.phase not in (Phase.PARKED, Phase.STARTING, Phase.JOINING,
                                       Phase.STREAMING):
            # The interrupted track's own play had not been answered: nothing of
            # it is known to be playing, so start it again.
            self._give_back(saved, now)
            return
        self._interrupted = None
        if not self.queue.take_back(saved.track):
            self._advance(now, failed=True)
            return
        pending, ended = self.binding.reinstate(saved.binding)
        self.paused = saved.paused
        self.clock.restore(saved.clock)
        self.start_at = saved.start_at
        if ended:
            self.binding.fire(Trigger.FINISH)
            self._ended(now)
            return
        self._replay(pending, now)

    def _give_back(self, saved: _Interrupted, now: float) -> None:
        """A "play now" failed after the engine had replaced the interrupted
        stream: play the interrupted track again from where it was cut off."""
        self._interrupted = None
        if not self.queue.take_back(saved.track):
            self._advance(now, failed=True)
            return
        self.paused = saved.paused
        self._start(saved.position, now, keep_pause=True)

    # -- persistence ------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """What survives a gateway restart."""
        return {
            **self.queue.snapshot(),
            "volume": self.volume,
            "position": self.position(now) if self.current else 0.0,
            "paused": self.paused,
            "playing": self.status in (PlayerStatus.PLAYING, PlayerStatus.LOADING),
            "settings": self.settings(),
        }

    def settings(self) -> dict[str, Any]:
        """The sound settings (kept per key, with or without a queue)."""
        return {"filters": self.filters.to_lavalink(), "filter_name": self.filter_name,
                "crossfade": self.crossfade}

    def restore_settings(self, data: object) -> None:
        """Take back ``settings()`` data; anything unreadable is left at its default."""
        if not isinstance(data, dict):
            return
        filters, name = data.get("filters"), data.get("filter_name")
        if isinstance(filters, dict):
            try:
                self.filters = parse_filters(filters)
            except FilterError:
                pass
            else:
                self.filter_name = (name if isinstance(name, str) else "custom") \
                    if self.filters != Filters() else ""
        crossfade = data.get("crossfade")
        if (isinstance(crossfade, int | float) and not isinstance(crossfade, bool)
                and math.isfinite(crossfade) and 0.0 <= crossfade <= MAX_CROSSFADE):
            self.crossfade = float(crossfade)

    @classmethod
    def restore(cls, key: str, data: dict[str, Any]) -> PlayerCore:
        """Rebuild a player from ``snapshot`` data. Playback is not resumed: the
        player comes back parked (paused) at its position."""
        core = cls(key, volume=float(data.get("volume", 1.0)))
        core.queue = Queue.restore(data)
        position = float(data.get("position", 0.0))
        core.clock.reset(position)
        core.start_at = position
        core.restore_settings(data.get("settings"))
        if core.current is not None:
            # Nothing plays at the engine until a command (resume, skip...)
            # starts a new play: the shell takes this state as already applied.
            core.paused = True
            core.binding.park()
        return core


def _could_not_play(track: Track | None, message: str) -> str:
    """A failed track, in the one wording every failure gets (a refused play, an
    error while it played): its name, then the engine's reason."""
    label = track.label if track else "the track"
    return f"could not play {label}: {message}" if message else f"could not play {label}"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
