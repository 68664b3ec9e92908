"""One player's rules, pure: its queue, its play binding and its position clock.

A player belongs to one key (a Discord guild id or a playground user id, which is
also the engine session id). Commands (``commands``) change the *desired* state:
which track, from which position, paused or not, at which volume, with which
filters. Engine events and the shell's answers move the play binding (``binding``)
through its phases, and the queue (``queue``) decides what comes next when a track
ends or fails. The async shell (``controller``) makes the engine match the desired
state; nothing here does I/O or reads a clock (``now`` is always passed in).

Besides those three, the core owns three parts of its own: its ``CommandApplier``
(``applier``) applies the fronts' commands, its ``Fallback`` (``fallback``) decides
what follows a track that cannot be played, and its ``SoundSettings`` (``sound``) are
the filters and the crossfade. The core keeps the state, answers the queries, takes
the shell's answers and the engine's events, and makes the moves all of them share: a
new play, the end of a track, the queue moving on.

Race-freedom rests on two things:

* every change of track is a new play with a new ``nonce``; the shell sends only the
  latest desired state, so rapid commands resolve to the last one;
* events are matched to plays by the binding, so a late ``finished`` of a replaced
  stream never advances the queue.

A "play now" that fails gives the interrupted track back instead of cutting it off:
where it was (the engine refused the play and never replaced the stream), or played
again from where it was cut off (the new track failed after replacing it); see
``fallback``.

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

from dataclasses import dataclass, field
from typing import Any

from gateway.player.applier import UNDO_CLEAR_SECONDS, CommandApplier
from gateway.player.binding import EngineEvent, NextHeld, Phase, PlayBinding, Trigger
from gateway.player.clock import PositionClock
from gateway.player.commands import Command, Outcome
from gateway.player.fallback import Fallback
from gateway.player.queue import LoopMode, Queue
from gateway.player.sound import MAX_CROSSFADE, SoundSettings
from gateway.player.track import Failure, Track
from gateway.player.view import PlayerStatus, PlayerView
from protocol import EventType, FinishReason
from protocol.filters import Filters

__all__ = ["MAX_CROSSFADE", "UNDO_CLEAR_SECONDS", "Desired", "LoopMode", "NextPlan",
           "PlayerCore"]


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
        #: Filters and crossfade (kept across tracks).
        self.sound = SoundSettings()
        #: What follows a failed track (the queue moves on, or what a "play now"
        #: interrupted is given back).
        self.fallback = Fallback(self)
        #: The fronts' commands, and the latest clear for ``UndoClear``.
        self.commands = CommandApplier(self)

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
        sound = self.sound
        return Desired(self.nonce, self.current, self.start_at, self.paused, self.volume,
                       sound.filters, sound.crossfade)

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
        cleared = self.commands.undoable(now)
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
            filter_name=self.sound.filter_name,
            filters=self.sound.filters,
            crossfade=self.sound.crossfade,
            undo_clear=len(cleared.tracks) if cleared else 0,
            undo_seconds=cleared.at + UNDO_CLEAR_SECONDS - now if cleared else 0.0,
        )

    # -- commands ---------------------------------------------------------------------

    def apply(self, command: Command, now: float) -> Outcome:
        """Apply *command* at *now* (``CommandApplier.apply``).

        Raises:
            CommandError: it cannot apply now (its words say why); nothing changed.
        """
        return self.commands.apply(command, now)

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
            self.replay(early, now)

    def play_failed(self, nonce: int, message: str, now: float) -> None:
        """The engine refused the play for *nonce* (bad URL, limit reached...): the
        failure is recorded and the ``fallback`` decides what follows. A refusal of a
        play no longer current is ignored."""
        if self.binding.refuse(nonce):
            self.fallback.refused(nonce, message, now)

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
            self.replay(binding.join(play_id), now)
            return True
        return False

    def filters_refused(self, kept: Filters, message: str) -> None:
        """The engine refused the filters set last (its *message* names the wrong
        value): it still plays *kept*, which are the desired filters again."""
        self.sound.filters_refused(kept)
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
        self.play_from(self.start_at, now)
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
        self.play_from(position, now, keep_pause=True)
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
        self.advance(now)

    # -- engine events (internals) ----------------------------------------------------

    def _apply_event(self, event: EngineEvent, now: float) -> None:
        binding = self.binding
        match event.trigger:
            case Trigger.READY:
                binding.fire(Trigger.READY)
                binding.replaced_live()
                self.fallback.forget()
                self.clock.run(now, paused=self.paused)
                self.error = ""
            case Trigger.LOSE:
                self.stream_lost(now, now)
            case Trigger.FINISH:
                following = binding.next if event.reason is FinishReason.END else None
                binding.fire(Trigger.FINISH)
                binding.stream_over()
                ended = self.nonce
                self.track_ended(now)
                if following is not None and following.nonce == ended:
                    self._join(following, now)
            case Trigger.ERROR:
                binding.fire(Trigger.ERROR)
                binding.stream_over()
                self.fallback.failed(event.message, now)
            case trigger:
                raise AssertionError(f"an engine event is never {trigger}")

    def _join(self, following: NextHeld, now: float) -> None:
        """The engine went on to the next track it held, in the same stream: bind
        the track the queue moved to to that play (no play is sent). When the
        queue wants another track now, the plain play of it replaces the join."""
        current = self.current
        if current is None or current.url != following.url or self.start_at != 0.0:
            return
        self.replay(self.binding.join(following.play_id), now)

    # -- moves: shared by the commands, the engine events and the fallback ------------

    def play_from(self, start_at: float, now: float, *, keep_pause: bool = False) -> None:
        """A new play of the current track from *start_at*."""
        self.fallback.forget()
        self.binding.new_play()
        self.start_at = start_at
        self.clock.reset(start_at)
        if not keep_pause:
            self.paused = False

    def track_ended(self, now: float) -> None:
        """The current track played to its end: what comes next depends on the loop."""
        if self.queue.loop is LoopMode.TRACK and self.current is not None:
            self.play_from(0.0, now)
        else:
            self.advance(now, requeue=self.queue.loop is LoopMode.QUEUE)

    def advance(self, now: float, *, requeue: bool = False, failed: bool = False) -> None:
        """Move the cursor on. *requeue* puts a copy of the track that ends at the
        end of the queue (loop queue); a *failed* track is never put back, so a
        queue of broken links ends instead of looping on errors, and it leaves the
        queue (what could not be played is not in the history)."""
        moved = self.queue.discard() if failed else self.queue.advance(requeue=requeue)
        if moved is not None:
            self.play_from(0.0, now)
            return
        self.fallback.forget()
        self.binding.clear()
        self.clock.reset(0.0)
        self.start_at = 0.0
        self.paused = False

    def replay(self, events: list[EngineEvent], now: float) -> None:
        """Apply the current play's events that came before it was bound, in order,
        until one of them ends the play (the rest were that play's too)."""
        nonce = self.nonce
        for event in events:
            if self.nonce != nonce:
                return
            self._apply_event(event, now)

    # -- persistence ------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """What survives a gateway restart."""
        return {
            **self.queue.snapshot(),
            "volume": self.volume,
            "position": self.position(now) if self.current else 0.0,
            "paused": self.paused,
            "playing": self.status in (PlayerStatus.PLAYING, PlayerStatus.LOADING),
            "settings": self.sound.to_dict(),
        }

    @classmethod
    def restore(cls, key: str, data: dict[str, Any]) -> PlayerCore:
        """Rebuild a player from ``snapshot`` data. Playback is not resumed: the
        player comes back parked (paused) at its position."""
        core = cls(key, volume=float(data.get("volume", 1.0)))
        core.queue = Queue.restore(data)
        position = float(data.get("position", 0.0))
        core.clock.reset(position)
        core.start_at = position
        core.sound.restore(data.get("settings"))
        if core.current is not None:
            # Nothing plays at the engine until a command (resume, skip...)
            # starts a new play: the shell takes this state as already applied.
            core.paused = True
            core.binding.park()
        return core
