"""The async shell around ``PlayerCore``: commands in, engine calls out.

Fronts hand a player commands as values (``commands``): ``await player.apply(Skip())``
returns an ``Outcome``, or raises ``CommandError`` with words for the user. They read
it only through ``view()`` (a ``PlayerView``) and ``subscribe``.

Each player has one task (``task``), run under a supervisor that logs, counts and
restarts it after any unexpected error. Commands change the core's desired state and
wake the task; the task has the ``Reconciler`` make the engine calls that close the
gap, one at a time, so a burst of commands costs one engine call per *settled* state
(five quick skips play one track). Engine events arrive from the router (``events``),
go through the core, and may change the desired state again (auto-advance).

The failure policy of each call (``task``, ``reconcile``, ``plays``):

* engine unreachable: the desired state is kept, the view says so (``notice``,
  ``pending``), and the call is made again when the engine is back;
* engine error (5xx): retried with growing delays (a play gives up after a few
  attempts and goes on to the next track with the error);
* a play whose connection broke after it was sent is never sent again blindly:
  the engine is asked first.

Engines without a feature (a Go engine: no live volume, filters, crossfade) refuse
the command in words; nothing pretends.

Gapless queues (engines with ``next_track``): at the join the core moves on without a
play; a join whose ``ready`` does not come within ``JOIN_READY_WAIT`` is checked with
the engine and played plainly if it did not happen.

After the socket reconnects, every player with a stream asks the engine about it:
a stream the engine lost (it restarted) is played again from the position it had
reached, a paused one parks there; one that ended meanwhile advances.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from applog import SessionLogger, session_logger
from gateway.engine_client import EngineError, Feature
from gateway.player.binding import Phase
from gateway.player.commands import (
    Command,
    Outcome,
    Resume,
    SetCrossfade,
    SetFilters,
    SetVolume,
)
from gateway.player.core import PlayerCore
from gateway.player.errors import CommandError
from gateway.player.events import EngineEvents
from gateway.player.link import EngineApi, EngineLink, LinkView
from gateway.player.persistence import CLOSE_TIMEOUT, PlayerSaver
from gateway.player.reconcile import Reconciler
from gateway.player.stats import PlayerStats
from gateway.player.store import QueueStore
from gateway.player.task import UNAVAILABLE, PlayerTask
from gateway.player.view import PlayerStatus, PlayerView
from gateway.router import Router
from lifecycle import Backoff, TaskOwner, declare

__all__ = ["CLOSE_TIMEOUT", "UNAVAILABLE", "Player", "PlayerStats"]

log = logging.getLogger(__name__)

ViewListener = Callable[[PlayerView], None]

#: What a volume change gets from an engine without live volume (a Go engine).
NO_VOLUME = "this audio engine cannot change the volume"
#: What a filter change gets from an engine without filters (a Go engine).
NO_FILTERS = "this audio engine does not support filters"
#: What a crossfade change gets from an engine without crossfade (a Go engine).
NO_CROSSFADE = "this audio engine does not support crossfade"
#: After a gapless join, the next track's ``ready`` comes in the same socket write
#: as the ``finished`` before it; if it has not come after this long, the engine is
#: asked whether the join happened (seconds).
JOIN_READY_WAIT = 1.0
#: Delays between attempts after an engine error: first, longest (seconds).
RETRY_FIRST, RETRY_MAX = 0.5, 30.0
#: Delays before a crashed player task is restarted: first, longest (seconds).
RESTART_FIRST, RESTART_MAX = 0.1, 10.0
#: A ``finished`` without a reason, from an engine that gives no reasons, is held
#: this long: an engine shutting down writes ``finished`` for every session just
#: before its socket closes, and such a ``finished`` is not the end of a track.
HOLD_REASONLESS_FINISHED = 0.3

PLAYER_TASK = declare(
    "player-{key}", owner="Player",
    what="one player's supervised task: loads its stored queue, then makes the engine "
         "match the desired state one call at a time",
    ends="`Player.close` (unload, or `players.close()` in `Gateway.stop`, queue saved)")


class Player:
    """One key's player: the core, its supervised task, its listeners.

    Args:
        core: the state (a fresh one while a stored queue is loaded).
        engine: the engine API client.
        router: event source.
        link: the shared engine connection state.
        store: persistence (None: memory only); the stored queue of the key is
            loaded before the first command applies.
        output: the engine format of every play (``opus`` or ``web``).
        stats: shared counters.
    """

    def __init__(
        self,
        core: PlayerCore,
        *,
        engine: EngineApi,
        router: Router,
        link: LinkView | None = None,
        store: QueueStore | None = None,
        output: str = "opus",
        clock: Callable[[], float] = time.monotonic,
        stats: PlayerStats | None = None,
    ) -> None:
        self._core = core
        self.key = core.key
        self.output = output
        self._router = router
        self._link: LinkView = link or EngineLink()
        self._clock = clock
        self.stats = stats or PlayerStats()
        self.log: SessionLogger = session_logger(log, self.key)
        self._engine = engine
        self._reconciler = Reconciler(self, engine=engine, link=self._link, clock=clock)
        self._saver = (PlayerSaver(self.key, store, snapshot=self.snapshot, stats=self.stats,
                                   log=self.log,
                                   retry=lambda: Backoff(RETRY_FIRST, cap=RETRY_MAX))
                       if store is not None else None)
        self._tasks = TaskOwner(PLAYER_TASK.owner, logger=self.log)
        self._settled = asyncio.Event()
        self._loaded = asyncio.Event()
        if store is None:
            self._loaded.set()
        self._task = PlayerTask(self, reconciler=self._reconciler, link=self._link,
                                loaded=self._loaded, clock=clock,
                                retry=Backoff(RETRY_FIRST, cap=RETRY_MAX),
                                restart=lambda: Backoff(RESTART_FIRST, cap=RESTART_MAX))
        self._events = EngineEvents(self, reconciler=self._reconciler, router=router,
                                    link=self._link, clock=clock,
                                    hold=HOLD_REASONLESS_FINISHED, join_wait=JOIN_READY_WAIT)
        self._listeners: list[ViewListener] = []
        self._notice = ""
        self._resume_on_hold = False
        self.holders = 0
        self.closed = False
        #: Clock time of the last command, event or hold change.
        self.last_active = clock()
        router.add_listener(self.key, self._events.on_event)

    @property
    def core(self) -> PlayerCore:
        """The pure state (the shell and its reconciler only; fronts read ``view()``)."""
        return self._core

    @property
    def engine_calls(self) -> int:
        """Engine calls made (for tests and metrics)."""
        return self._reconciler.calls

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervised task (loads the stored queue first)."""
        if not self._tasks.tasks and not self.closed:
            self._tasks.spawn(PLAYER_TASK, self._task.supervise(), key=self.key)

    async def close(self, *, save: bool = True, release: bool = False) -> None:
        """Stop the task; with *save*, store the queue one last time; with
        *release*, stop the engine session too (a playing stream keeps playing
        otherwise). Idempotent; each step is bounded by ``CLOSE_TIMEOUT``."""
        if self.closed:
            return
        self.closed = True
        self._router.remove_listener(self.key, self._events.on_event)
        self._events.close()
        await self._tasks.aclose()
        loaded = self._loaded.is_set()
        if self._saver is not None:
            # Nothing loaded: the stored queue is still what it was.
            await self._saver.aclose(final=self.snapshot() if save and loaded else None)
        if loaded and release and self._reconciler.has_session():
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._engine.stop(self.key)
            except (EngineError, TimeoutError) as exc:
                self.log.warning("could not stop the engine session at unload: %s",
                                 getattr(exc, "detail", exc))

    # -- fronts -----------------------------------------------------------------------

    async def loaded(self) -> None:
        """Return once the stored queue is loaded (at once without a store).
        Cancelling is safe."""
        await self._loaded.wait()

    def view(self) -> PlayerView:
        """Now playing, position and queue, with ``pending``/``notice`` saying
        whether the engine does what it shows."""
        view = self._core.view(self._clock())
        changes: dict[str, Any] = {"pending": self.pending, "notice": self._notice}
        if self._link.discovered:
            # Settings kept from an engine that had them are not shown as heard on
            # one that does not (they apply again once such an engine is back).
            if view.filter_name and not self._supports(Feature.FILTERS):
                changes.update(filter_name="", filters=type(view.filters)())
            if view.crossfade and not self._supports(Feature.CROSSFADE):
                changes["crossfade"] = 0.0
        return dataclasses.replace(view, **changes)

    @property
    def status(self) -> PlayerStatus:
        """What the player is doing (``view().status``, without building a view)."""
        return self._core.status

    @property
    def holds_engine_session(self) -> bool:
        """Whether the engine has (or is about to have) a session for this key: a
        track is loaded and was started at the engine since the last restore."""
        return self._reconciler.has_session()

    @property
    def pending(self) -> bool:
        """True while the engine is not known to match the desired state."""
        return (self._reconciler.differs() or self._reconciler.verify
                or not self._loaded.is_set())

    def subscribe(self, listener: ViewListener) -> Callable[[], None]:
        """Call *listener* with a fresh view after every change; returns an
        unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def hold(self, *, resume: bool = True) -> Callable[[], None]:
        """Mark the player in use by a front (an open tab, a voice connection):
        a held player is never unloaded. A player that was playing when the
        gateway stopped plays on from its position once held, unless the front
        says *resume* False (it applies the user's own command next, as the bot
        does when a command makes it join voice). Returns the release function
        (idempotent)."""
        self.holders += 1
        self.touch()
        if not resume:
            self._resume_on_hold = False
        elif self._resume_on_hold:
            self._task.wake()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.holders -= 1
                self.touch()

        return release

    def touch(self) -> None:
        """Note activity (delays unloading)."""
        self.last_active = self._clock()

    async def apply(self, command: Command) -> Outcome:
        """Apply *command* (once the stored queue is loaded) and schedule the engine
        work it implies. Cancelling is safe.

        Raises:
            CommandError: the core refused it, or the engine lacks what it needs
                (live volume, filters, crossfade); nothing changed.
        """
        await self._loaded.wait()
        if self.closed:
            raise CommandError("this player was just unloaded; send the command again")
        return self.apply_nowait(command)

    def apply_nowait(self, command: Command) -> Outcome:
        """``apply`` from code that cannot wait (a timer); the player must be loaded.

        Raises:
            CommandError: as ``apply``, or when the player is closed or still
                loading its stored queue.
        """
        if self.closed or not self._loaded.is_set():
            raise CommandError("the player is not ready; send the command again")
        self._refuse_unsupported(command)
        outcome = self._core.apply(command, self._clock())
        self.touch()
        self.changed()
        return dataclasses.replace(outcome, view=self.view())

    def refusal(self, command: Command) -> str | None:
        """Why *command* would be refused now, or None (tried on a copy of the
        core: nothing changes). For fronts that do something first (join voice)
        only for a command that will apply."""
        try:
            self._refuse_unsupported(command)
            copy.deepcopy(self._core).apply(command, self._clock())
        except CommandError as exc:
            return str(exc)
        return None

    def _refuse_unsupported(self, command: Command) -> None:
        core = self._core
        match command:
            case SetVolume(volume=volume) if (volume != core.volume
                                               and not self._supports(Feature.VOLUME)):
                raise CommandError(f"{NO_VOLUME}; it stays at {round(core.volume * 100)} %")
            case SetFilters(filters=filters) if (filters != core.sound.filters
                                                  and not self._supports(Feature.FILTERS)):
                raise CommandError(NO_FILTERS)
            case SetCrossfade(seconds=seconds) if (
                    seconds != core.sound.crossfade and not self._supports(Feature.CROSSFADE)):
                raise CommandError(NO_CROSSFADE)

    async def settled(self) -> None:
        """Wait until the engine matches the desired state (tests, /status). Waits
        as long as the engine is unreachable: bound it with ``asyncio.timeout``.
        Cancelling is safe."""
        while self.pending:
            self._settled.clear()
            await self._settled.wait()

    def snapshot(self) -> dict[str, Any]:
        """What the store keeps: the core's snapshot, the output format and the
        wall-clock time. While the engine is away, the position is where the
        stream was when it went."""
        now = self._clock()
        lost_at = self._link.lost_at
        at = min(now, lost_at) if (not self._link.connected and lost_at is not None) else now
        state = self._core.snapshot(at)
        state["output"] = self.output
        state["saved_at"] = time.time()
        return state

    # -- engine link (called by the registry) -------------------------------------------

    def link_lost(self, now: float) -> None:
        """The engine socket went down: what the engine has is unknown until it is
        back. A ``finished`` held for its reason is taken as the engine shutting
        down, not as the end of the track."""
        core = self._core
        held_at = self._events.drop_held()
        if held_at is not None:
            if core.binding.bound:
                self.stats.lost_streams += 1
                core.stream_lost(held_at, now)
                self._reconciler.took_as_applied()
                self.log.info("the engine went away right after ending the stream: keeping "
                              "the track at %.1f s", core.start_at)
                self.changed()
        if self._reconciler.has_session():
            self._reconciler.lost_at = now
            self._reconciler.verify = True
            self.set_notice(UNAVAILABLE)

    def stream_moved(self, at: float) -> None:
        """The stream's engine node is gone (dead or drained) and its binding was
        released: ask again (no node now: no session), which plays the track from
        where it was at *at* on the node placement picks next; a paused player
        parks there. No notice: a move takes about a second."""
        self._events.drop_held()
        if self._reconciler.has_session():
            self._reconciler.lost_at = at
            self._reconciler.verify = True
        self._task.wake()
        self.update_settled()

    def link_back(self) -> None:
        """The socket is back (and capabilities known): check the stream."""
        if self._reconciler.has_session():
            self._reconciler.verify = True
        self._task.wake()

    @property
    def silence_candidate(self) -> bool:
        """True when audio of this key should be arriving right now."""
        return self._core.status is PlayerStatus.PLAYING and not self.pending

    # -- what the reconciler, the events, the task and the saver call ---------------------

    def changed(self) -> None:
        """The core changed: wake the task, save soon, tell the listeners."""
        self._task.wake()
        self.update_settled()
        if self._saver is not None and not self.closed and self._loaded.is_set():
            self._saver.schedule()
        self._notify()

    def took_join(self) -> None:
        """After an event or an answer: take a track the engine joined to the stream
        (``EngineEvents.took_join``)."""
        self._events.took_join()

    @property
    def notice(self) -> str:
        """What the view says about the engine ("": nothing to say)."""
        return self._notice

    def set_notice(self, notice: str) -> None:
        """Say *notice* about the engine in the view (tells the listeners)."""
        if notice != self._notice:
            self._notice = notice
            self._notify()

    def update_settled(self) -> None:
        """Wake ``settled()`` waiters once nothing is pending."""
        if self.pending:
            self._settled.clear()
        else:
            self._settled.set()

    async def load(self) -> None:
        """Load the stored queue (the task, first; only with a store)."""
        assert self._saver is not None
        saved = await self._saver.load()
        if saved:
            core = self._core = PlayerCore.restore(self.key, saved)
            self._reconciler.restored()
            self._resume_on_hold = bool(saved.get("playing")) and not saved.get("paused")
            self.log.info("restored a queue of %d tracks (at %.1f s of %s)",
                          len(core.queue.tracks), core.position(self._clock()),
                          core.current.label if core.current else "nothing")
        self._loaded.set()
        self.update_settled()
        self._notify()

    def resume_if_held(self) -> None:
        """Play on a queue that was playing when the gateway stopped, once a front
        holds the player (the task, whenever it wakes)."""
        if not (self._resume_on_hold and self.holders > 0):
            return
        self._resume_on_hold = False
        core = self._core
        if core.current is not None and core.phase is Phase.PARKED and core.paused:
            self.log.info("a front is back: playing on from %.1f s",
                          core.position(self._clock()))
            core.apply(Resume(), self._clock())
            self.changed()

    # -- internals: state and notifications ------------------------------------------------

    def _supports(self, feature: Feature) -> bool:
        return feature in self._link.capabilities

    def _notify(self) -> None:
        view = self.view()
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                self.log.exception("player listener failed")
