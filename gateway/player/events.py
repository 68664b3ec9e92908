"""The engine's events for one player: translated for its core, held while they may
mean a shutdown, and a gapless join's ``ready`` waited for. Runs on the event loop.

Events come from the router as ``protocol.Event`` and go to the core as
``EngineEvent``: the play id, the ``FinishReason`` (an unknown one, from a newer
engine, is a plain end) and the packets the router counted since ``ready``. An event
the core takes as its current play's counts as activity, may end a stream the engine
lost (reason ``shutdown`` or ``idle``) and may have moved to a track the engine joined
to the stream.

Two timers:

* a ``finished`` without a reason, from an engine that gives no reasons, is held a
  moment (``hold``): an engine shutting down writes ``finished`` for every session
  just before its socket closes, and such a ``finished`` is not the end of the track
  (``drop_held``, when the link is lost within that moment);
* after a gapless join the next track's ``ready`` comes in the same socket write as
  the ``finished`` before it; if it has not come within ``join_wait``, the reconciler
  asks the engine whether the join happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from applog import SessionLogger
from gateway.engine_client import Feature
from gateway.player.binding import EngineEvent, Phase
from gateway.player.core import PlayerCore
from gateway.player.link import LinkView
from gateway.player.reconcile import Reconciler
from gateway.player.stats import PlayerStats
from gateway.router import Router
from protocol import Event, EventType, FinishReason

__all__ = ["EngineEvents"]


class _Player(Protocol):
    """What the events need of their player."""

    key: str
    log: SessionLogger
    stats: PlayerStats
    closed: bool

    @property
    def core(self) -> PlayerCore: ...

    def touch(self) -> None: ...

    def changed(self) -> None: ...


class EngineEvents:
    """One player's engine events (the router's listener is ``on_event``).

    Args:
        player: the player (its core, its notifications).
        reconciler: the player's engine side, told what the events mean for it.
        router: event source (and its packet counts).
        link: the engine connection's capabilities.
        clock: the shell's monotonic clock.
        hold: seconds a reason-less ``finished`` is held.
        join_wait: seconds a join's ``ready`` is waited for before the engine is asked.
    """

    def __init__(self, player: _Player, *, reconciler: Reconciler, router: Router,
                 link: LinkView, clock: Callable[[], float], hold: float,
                 join_wait: float) -> None:
        self._player = player
        self._reconciler = reconciler
        self._router = router
        self._link = link
        self._clock = clock
        self._hold = hold
        self._join_wait = join_wait
        self._held: list[Event] = []
        self._held_at = 0.0
        self._held_timer: asyncio.TimerHandle | None = None
        self._join_timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Cancel the timers (the player is closing). Idempotent."""
        for timer in (self._held_timer, self._join_timer):
            if timer is not None:
                timer.cancel()

    def on_event(self, event: Event) -> None:
        """An engine event of this player's key (the router's listener)."""
        if self._held:
            self._held.append(event)
            return
        core = self._player.core
        if (event.type is EventType.FINISHED and "reason" not in event.extra
                and Feature.FINISH_REASON not in self._link.capabilities
                and core.current is not None and core.binding.expected_terminals == 0):
            self._held = [event]
            self._held_at = self._clock()
            self._held_timer = asyncio.get_running_loop().call_later(
                self._hold, self._release_held)
            return
        self._deliver(event)

    def drop_held(self) -> float | None:
        """Forget the events being held (the link was lost meanwhile: the engine was
        shutting down). Returns the clock time the first was held, or None when
        none was."""
        if not self._held:
            return None
        held_at = self._held_at
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._held = []
        return held_at

    def took_join(self) -> None:
        """After an event or an answer: if the core moved to a track the engine
        joined to the stream, that track's play is what the engine has (no play is
        sent), and the engine's next track was used up."""
        player = self._player
        core = player.core
        if not core.binding.joined or self._reconciler.applied.nonce == core.nonce:
            return
        player.stats.gapless_joins += 1
        self._reconciler.joined()
        player.log.info("gapless: %s joined the stream (play %s)",
                        core.current.label if core.current else "?", core.binding.play_id)
        if self._join_timer is not None:
            self._join_timer.cancel()
        self._join_timer = asyncio.get_running_loop().call_later(
            self._join_wait, self._join_overdue)

    def _join_overdue(self) -> None:
        self._join_timer = None
        player = self._player
        if player.core.phase is Phase.JOINING and not player.closed:
            self._reconciler.check_join = True
            player.changed()

    def _release_held(self) -> None:
        self._held_timer = None
        events, self._held = self._held, []
        for event in events:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        player = self._player
        play = event.extra.get("play")
        reason = event.extra.get("reason")
        try:
            finish_reason = FinishReason(reason) if isinstance(reason, str) else None
        except ValueError:
            finish_reason = None  # a newer engine's reason: a plain end
        taken = player.core.on_event(EngineEvent(
            event.type,
            play_id=play if isinstance(play, int) and not isinstance(play, bool) else None,
            message=event.message, reason=finish_reason,
            packets_since_ready=self._router.packets_by_session.get(player.key, 0),
        ), self._clock())
        if taken:
            player.touch()
            player.log.info("engine %s%s%s", event.type.value,
                            f": {event.message}" if event.message else "",
                            f" ({reason})" if isinstance(reason, str) and reason else "")
            if event.type is EventType.FINISHED and finish_reason in (FinishReason.SHUTDOWN,
                                                                      FinishReason.IDLE):
                player.stats.lost_streams += 1
                self._reconciler.lost_at = None
            self.took_join()
            self._reconciler.took_as_applied()
            player.changed()
