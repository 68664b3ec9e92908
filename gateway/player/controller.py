"""The async shell around ``PlayerCore``: commands in, engine calls out.

Each player has one task, run under a supervisor that logs, counts and restarts
it after any unexpected error. Commands change the core's desired state and wake
the task; the task compares desired with what the engine is known to have
applied and makes the calls that close the gap, one at a time, so a burst of
commands costs one engine call per *settled* state (five quick skips play one
track). Engine events arrive from the router, go through the core, and may change
the desired state again (auto-advance).

A call counts as applied only when the engine said so:

* engine unreachable: the desired state is kept, the view says so (``notice``,
  ``pending``), and the call is made again when the engine is back;
* engine error (5xx): retried with growing delays (a play gives up after a few
  attempts and goes on to the next track with the error);
* a play whose connection broke after it was sent is never sent again blindly:
  the engine is asked first (the play id of our engine, or the session's status
  and URL on a Go engine).

Sound settings (filters, crossfade) are part of the desired state too: carried by
every play, and set live on a playing session. Engines without them (a Go engine)
refuse the command in words; nothing pretends.

Gapless queues (engines with ``next_track``): once the current play is streaming,
the task tells the engine the track a natural end leads to (``set_next``), again
whenever that changes (skip, move, remove, clear, shuffle, loop), or cancels it. At
the join the core moves on without a play; a join whose ``ready`` does not come
within ``JOIN_READY_WAIT`` is checked with the engine and played plainly if it did
not happen.

After the socket reconnects, every player with a stream asks the engine about it:
a stream the engine lost (it restarted) is played again from the position it had
reached, a paused one stays paused there; one that ended meanwhile advances.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from applog import SessionLogger, session_logger
from gateway.database import DatabaseError
from gateway.engine_client import (
    EngineError,
    EngineFault,
    EngineInvalidRequest,
    EngineNotFound,
    EngineOutcomeUnknown,
    EngineUnavailable,
    Feature,
    Format,
)
from gateway.player.core import (
    LOST_STREAM_REASONS,
    CommandError,
    Desired,
    NextPlan,
    PlayerCore,
    PlayerStatus,
    PlayerView,
)
from gateway.player.link import EngineApi, EngineLink, LinkView
from gateway.player.store import QueueStore
from gateway.router import Router
from lifecycle import Backoff
from protocol import Event, EventType

__all__ = ["Player", "PlayerStats", "run_command"]

log = logging.getLogger(__name__)

ViewListener = Callable[[PlayerView], None]

#: Engine states of a session that still has (or is about to have) a stream.
LIVE_STATES = frozenset({"extracting", "streaming", "paused"})
#: What the view says while the engine cannot be reached.
UNAVAILABLE = "the audio engine is unavailable; waiting for it to come back"
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
#: Attempts of a play the engine fails with 5xx before the track is given up.
PLAY_ATTEMPTS = 3
#: Delays between attempts after an engine error: first, longest (seconds).
RETRY_FIRST, RETRY_MAX = 0.5, 30.0
#: Delays before a crashed player task is restarted: first, longest (seconds).
RESTART_FIRST, RESTART_MAX = 0.1, 10.0
#: A ``finished`` without a reason, from an engine that gives no reasons, is held
#: this long: an engine shutting down writes ``finished`` for every session just
#: before its socket closes, and such a ``finished`` is not the end of a track.
HOLD_REASONLESS_FINISHED = 0.3
#: Longest wait for the final save and the engine stop of one player at close.
CLOSE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class _Applied:
    nonce: int
    paused: bool
    volume: float
    filters: Any = None
    crossfade: float = 0.0

    @classmethod
    def of(cls, desired: Desired, *, nonce: int | None = None, paused: bool | None = None
           ) -> _Applied:
        return cls(desired.nonce if nonce is None else nonce,
                   desired.paused if paused is None else paused,
                   desired.volume, desired.filters, desired.crossfade)


@dataclass(slots=True)
class PlayerStats:
    """Counters of every player of a registry (for metrics)."""

    #: Player tasks restarted after an unexpected error.
    restarts: int = 0
    #: Players unloaded for being idle with nobody attached.
    evictions: int = 0
    #: Saves of a queue that did not land (each is retried).
    failed_saves: int = 0
    #: Streams the engine lost (restart, shutdown, idle) while they were not over:
    #: kept at their position (played again, or paused there).
    lost_streams: int = 0
    #: Plays whose answer was lost and whose outcome was asked of the engine.
    play_checks: int = 0
    #: Tracks that started by a gapless join (no play sent).
    gapless_joins: int = 0
    #: Joins whose next track never started at the engine (played plainly instead).
    missed_joins: int = 0


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
        self.core = core
        self.key = core.key
        self.output = output
        self._engine = engine
        self._router = router
        self._link: LinkView = link or EngineLink()
        self._store = store
        self._clock = clock
        self.stats = stats or PlayerStats()
        self.log: SessionLogger = session_logger(log, self.key)
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._loaded = asyncio.Event()
        if store is None:
            self._loaded.set()
        self._listeners: list[ViewListener] = []
        desired = core.desired()
        # A fresh or restored player has nothing at the engine: taken as applied.
        self._applied = _Applied.of(desired)
        #: The next track the engine was told (None: none, or not asked).
        self._next_applied: NextPlan | None = None
        self._join_timer: asyncio.TimerHandle | None = None
        self._check_join = False
        self._task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._verify = False
        self._notice = ""
        self._retry = Backoff(RETRY_FIRST, cap=RETRY_MAX)
        self._play_faults = 0
        #: The nonce whose play may have reached the engine without our hearing back.
        self._unknown_play: int | None = None
        #: The engine's play id of the latest play bound (None: unknown / Go engine).
        self._engine_play_id: int | None = None
        self._engine_generation = self._link.generation
        #: Clock time the engine link was lost under this player's stream.
        self._lost_at: float | None = None
        self._held: list[Event] = []
        self._held_at = 0.0
        self._held_timer: asyncio.TimerHandle | None = None
        self._resume_on_hold = False
        self.holders = 0
        self.closed = False
        #: Clock time of the last command, event or hold change.
        self.last_active = clock()
        #: Engine calls made (for tests and metrics).
        self.engine_calls = 0
        router.add_listener(self.key, self._on_event)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervised task (loads the stored queue first)."""
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"player-{self.key}")

    async def close(self, *, save: bool = True, release: bool = False) -> None:
        """Stop the task; with *save*, store the queue one last time; with
        *release*, stop the engine session too (a playing stream keeps playing
        otherwise). Idempotent; each step is bounded by ``CLOSE_TIMEOUT``."""
        if self.closed:
            return
        self.closed = True
        self._router.remove_listener(self.key, self._on_event)
        if self._held_timer is not None:
            self._held_timer.cancel()
        if self._join_timer is not None:
            self._join_timer.cancel()
        tasks = [t for t in (self._task, self._save_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = self._save_task = None
        if not self._loaded.is_set():
            return  # nothing was loaded: the stored queue is still what it was
        if save and self._store is not None:
            await self._final_save()
        if release and self._engine_has_session():
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._engine.stop(self.key)
            except (EngineError, TimeoutError) as exc:
                self.log.warning("could not stop the engine session at unload: %s",
                                 getattr(exc, "detail", exc))

    async def _final_save(self) -> None:
        assert self._store is not None
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if self.core.tracks:
                    await self._store.save(self.key, self.snapshot())
                else:
                    await self._store.delete(self.key)
                    await self._store.save_settings(self.key, self.core.settings())
        except (DatabaseError, TimeoutError) as exc:
            self.stats.failed_saves += 1
            self.log.error("the queue could not be saved (%s); it is lost",
                           exc or "timed out")

    # -- fronts -----------------------------------------------------------------------

    async def loaded(self) -> None:
        """Return once the stored queue is loaded (at once without a store).
        Cancelling is safe."""
        await self._loaded.wait()

    def view(self) -> PlayerView:
        """Now playing, position and queue, with ``pending``/``notice`` saying
        whether the engine does what it shows."""
        view = self.core.view(self._clock())
        view = dataclasses.replace(view, pending=self.pending, notice=self._notice)
        if self._link.discovered:
            # Settings kept from an engine that had them are not shown as heard on
            # one that does not (they apply again once such an engine is back).
            if view.filters and not self._supports(Feature.FILTERS):
                view = dataclasses.replace(view, filter_name="", filters={})
            if view.crossfade and not self._supports(Feature.CROSSFADE):
                view = dataclasses.replace(view, crossfade=0.0)
        return view

    @property
    def holds_engine_session(self) -> bool:
        """Whether the engine has (or is about to have) a session for this key: a
        track is loaded and was started at the engine since the last restore."""
        return self._engine_has_session()

    @property
    def pending(self) -> bool:
        """True while the engine is not known to match the desired state."""
        return self._pending() or self._verify or not self._loaded.is_set()

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
            self._wake.set()
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

    async def command(self, apply: Callable[[PlayerCore, float], object]) -> object:
        """Run ``apply(core, now)`` and schedule the engine work it implies.
        Waits for the stored queue to be loaded first. Cancelling is safe.

        Raises:
            CommandError: from the core, or a volume change an engine without
                live volume cannot make; nothing changed.
        """
        await self._loaded.wait()
        if self.closed:
            raise CommandError("this player was just unloaded; send the command again")
        return self.command_nowait(apply)

    def command_nowait(self, apply: Callable[[PlayerCore, float], object]) -> object:
        """``command`` from code that cannot wait (a timer); the player must be
        loaded.

        Raises:
            CommandError: from the core, or when the player is closed or still
                loading its stored queue.
        """
        if self.closed or not self._loaded.is_set():
            raise CommandError("the player is not ready; send the command again")
        core = self.core
        volume = core.volume
        filters, filter_name, crossfade = core.filters, core.filter_name, core.crossfade
        result = apply(core, self._clock())
        if core.volume != volume and not self._supports(Feature.VOLUME):
            core.volume = volume
            raise CommandError(f"{NO_VOLUME}; it stays at {round(volume * 100)} %")
        if core.filters != filters and not self._supports(Feature.FILTERS):
            core.filters, core.filter_name = filters, filter_name
            raise CommandError(NO_FILTERS)
        if core.crossfade != crossfade and not self._supports(Feature.CROSSFADE):
            core.crossfade = crossfade
            raise CommandError(NO_CROSSFADE)
        self.touch()
        self._changed()
        return result

    async def settled(self) -> None:
        """Wait until the engine matches the desired state (tests, /status). Waits
        as long as the engine is unreachable: bound it with ``asyncio.timeout``.
        Cancelling is safe."""
        while self.pending:
            self._settled.clear()
            await self._settled.wait()

    # -- engine link (called by the registry) -------------------------------------------

    def link_lost(self, now: float) -> None:
        """The engine socket went down: what the engine has is unknown until it is
        back. A ``finished`` held for its reason is taken as the engine shutting
        down, not as the end of the track."""
        if self._held:
            held_at = self._held_at
            self._drop_held()
            self.stats.lost_streams += 1
            self.core.stream_lost(held_at, now)
            self._applied_if_nothing_to_do()
            self.log.info("the engine went away right after ending the stream: keeping "
                          "the track at %.1f s", self.core.start_at)
            self._changed()
        if self._engine_has_session():
            self._lost_at = now
            self._verify = True
            self._set_notice(UNAVAILABLE)

    def stream_moved(self, at: float) -> None:
        """The stream's engine node is gone (dead or drained) and its binding was
        released: ask again (no node now: no session), which plays the track from
        where it was at *at* on the node placement picks next; a paused player
        stays paused there. No notice: a move takes about a second."""
        if self._held:
            self._drop_held()
        if self._engine_has_session():
            self._lost_at = at
            self._verify = True
        self._wake.set()
        self._update_settled()

    def link_back(self) -> None:
        """The socket is back (and capabilities known): check the stream."""
        if self._engine_has_session():
            self._verify = True
        self._wake.set()

    @property
    def silence_candidate(self) -> bool:
        """True when audio of this key should be arriving right now."""
        core = self.core
        return (core.status is PlayerStatus.PLAYING and not core.paused and core.stream_live
                and not self.pending)

    def snapshot(self) -> dict[str, Any]:
        """What the store keeps: the core's snapshot, the output format and the
        wall-clock time. While the engine is away, the position is where the
        stream was when it went."""
        now = self._clock()
        lost_at = self._link.lost_at
        at = min(now, lost_at) if (not self._link.connected and lost_at is not None) else now
        state = self.core.snapshot(at)
        state["output"] = self.output
        state["saved_at"] = time.time()
        return state

    # -- internals: state and notifications ------------------------------------------------

    def _supports(self, feature: Feature) -> bool:
        return feature in self._link.capabilities

    def _pending(self) -> bool:
        desired = self.core.desired()
        applied = self._applied
        return ((desired.nonce, desired.paused, desired.volume, desired.crossfade)
                != (applied.nonce, applied.paused, applied.volume, applied.crossfade)
                or desired.filters != applied.filters
                or self._next_wanted() != self._next_applied
                or self._check_join)

    def _next_wanted(self) -> NextPlan | None:
        """The next track the engine should hold now (engines with ``next_track``)."""
        if not self._supports(Feature.NEXT_TRACK):
            return None
        return self.core.next_plan()

    def _engine_has_session(self) -> bool:
        core = self.core
        return core.current is not None and not core.restored

    def _applied_if_nothing_to_do(self) -> None:
        """After ``stream_lost`` left a paused player with nothing at the engine,
        that state is what the engine has."""
        desired = self.core.desired()
        if desired.nonce == self._applied.nonce and self.core.restored:
            self._applied = _Applied.of(desired)

    def _changed(self) -> None:
        self._wake.set()
        self._update_settled()
        self._schedule_save()
        self._notify()

    def _notify(self) -> None:
        view = self.view()
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                self.log.exception("player listener failed")

    def _set_notice(self, notice: str) -> None:
        if notice != self._notice:
            self._notice = notice
            self._notify()

    def _update_settled(self) -> None:
        if self.pending:
            self._settled.clear()
        else:
            self._settled.set()

    # -- internals: persistence ------------------------------------------------------

    def _schedule_save(self) -> None:
        if self._store is None or self.closed or not self._loaded.is_set():
            return
        self._dirty = True
        if self._save_task is None or self._save_task.done():
            self._save_task = asyncio.get_running_loop().create_task(
                self._save_loop(), name=f"player-save-{self.key}")

    async def _save_loop(self) -> None:
        assert self._store is not None
        backoff = Backoff(RETRY_FIRST, cap=RETRY_MAX)
        while self._dirty:
            self._dirty = False
            try:
                await self._store.save(self.key, self.snapshot())
            except DatabaseError as exc:
                # Never dropped: keep it dirty and try again (a newer change
                # saves the newer state).
                self._dirty = True
                self.stats.failed_saves += 1
                delay = backoff.next()
                self.log.error("saving the queue failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                backoff.reset()

    async def _load(self) -> None:
        assert self._store is not None
        try:
            saved = await self._store.load(self.key)
        except DatabaseError as exc:
            self.log.error("the saved queue could not be read (%s); starting empty", exc)
            saved = None
        if saved:
            core = PlayerCore.restore(self.key, saved)
            self.core = core
            desired = core.desired()
            self._applied = _Applied.of(desired)
            self._resume_on_hold = bool(saved.get("playing")) and not saved.get("paused")
            self.log.info("restored a queue of %d tracks (at %.1f s of %s)",
                          len(core.tracks), core.position(self._clock()),
                          core.current.label if core.current else "nothing")
        self._loaded.set()
        self._update_settled()
        self._notify()

    # -- internals: events -------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if self._held:
            self._held.append(event)
            return
        if (event.type is EventType.FINISHED and "reason" not in event.extra
                and not self._supports_reasons() and self.core.current is not None
                and self.core.expected_terminals == 0):
            self._held = [event]
            self._held_at = self._clock()
            self._held_timer = asyncio.get_running_loop().call_later(
                HOLD_REASONLESS_FINISHED, self._release_held)
            return
        self._deliver(event)

    def _supports_reasons(self) -> bool:
        return Feature.FINISH_REASON in self._link.capabilities

    def _release_held(self) -> None:
        self._held_timer = None
        events, self._held = self._held, []
        for event in events:
            self._deliver(event)

    def _drop_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._held = []

    def _deliver(self, event: Event) -> None:
        play = event.extra.get("play")
        play_id = play if isinstance(play, int) and not isinstance(play, bool) else None
        reason = event.extra.get("reason")
        packets = self._router.packets_by_session.get(self.key, 0)
        now = self._clock()
        taken = self.core.on_event(event.type.value, play_id, event.message, now,
                                   packets_since_ready=packets,
                                   reason=reason if isinstance(reason, str) else "")
        if taken:
            self.touch()
            self.log.info("engine %s%s%s", event.type.value,
                          f": {event.message}" if event.message else "",
                          f" ({reason})" if isinstance(reason, str) and reason else "")
            if event.type is EventType.FINISHED and reason in LOST_STREAM_REASONS:
                self.stats.lost_streams += 1
                self._lost_at = None
            self._took_join()
            self._applied_if_nothing_to_do()
            self._changed()

    def _took_join(self) -> None:
        """After an event or an answer: if the core moved to a track the engine
        joined to the stream, that track's play is what the engine has (no play is
        sent), and the engine's next track was used up."""
        core = self.core
        if core.joined_nonce != core.nonce or self._applied.nonce == core.nonce:
            return
        self.stats.gapless_joins += 1
        self._applied = dataclasses.replace(self._applied, nonce=core.nonce, paused=False)
        self._next_applied = None
        self.log.info("gapless: %s joined the stream (play %s)",
                      core.current.label if core.current else "?", core.play_id)
        if self._join_timer is not None:
            self._join_timer.cancel()
        self._join_timer = asyncio.get_running_loop().call_later(
            JOIN_READY_WAIT, self._join_overdue)

    def _join_overdue(self) -> None:
        self._join_timer = None
        core = self.core
        if core.joined_nonce == core.nonce and not core.stream_live and not self.closed:
            self._check_join = True
            self._changed()

    # -- internals: the supervised task ---------------------------------------------------

    async def _supervise(self) -> None:
        backoff = Backoff(RESTART_FIRST, cap=RESTART_MAX)
        while True:
            started = self._clock()
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.restarts += 1
                if self._clock() - started > 60.0:
                    backoff.reset()
                delay = backoff.next()
                self.log.exception("player task failed; restarting it in %.1f s", delay)
                # Whatever the call in flight did at the engine is unknown.
                self._verify = self.core.current is not None
                self._loaded.set()
                await asyncio.sleep(delay)
                self._wake.set()

    async def _run(self) -> None:
        if not self._loaded.is_set():
            await self._load()
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._maybe_resume_on_hold()
            while self.pending:
                await self._step()
                self._maybe_resume_on_hold()
            if self._link.connected:
                # Settled with the socket up (it may have come back after the
                # last call): nothing left to warn about.
                self._set_notice("")
            self._update_settled()

    def _maybe_resume_on_hold(self) -> None:
        if not (self._resume_on_hold and self.holders > 0):
            return
        self._resume_on_hold = False
        core = self.core
        if core.current is not None and core.restored and core.paused:
            self.log.info("a front is back: playing on from %.1f s",
                          core.position(self._clock()))
            core.resume(self._clock())
            self._changed()

    async def _step(self) -> None:
        """One engine call towards the desired state, with its failure policy."""
        try:
            if self._link.generation != self._engine_generation:
                # A new connection: the engine may be a new process (play ids
                # start again).
                self._engine_generation = self._link.generation
                self._engine_play_id = None
            if self._verify:
                await self._check_stream()
                self._verify = False
            elif self._check_join:
                await self._check_joined()
                self._check_join = False
            elif self._pending():
                await self._apply(self.core.desired())
            self._retry.reset()
            self._play_faults = 0
            if self._link.connected:
                # (With the socket down no audio reaches us, whatever the API says:
                # an engine shutting down may still answer on an open connection.)
                self._set_notice("")
        except EngineUnavailable as exc:
            # Keep the desired state; try again when the engine is back (or after
            # a delay, for an engine whose API is down while its socket is up).
            delay = self._retry.next()
            if self._notice != UNAVAILABLE:
                self.log.warning("%s (%s); retrying when it is back", exc, exc.detail)
            self._set_notice(UNAVAILABLE)
            await self._link.wait_change(delay)
        except EngineFault as exc:
            delay = self._retry.next()
            self.log.warning("the engine failed (%s %s); retrying in %.1f s",
                             exc.status, exc, delay)
            self._set_notice(f"the audio engine failed ({exc}); retrying")
            await asyncio.sleep(delay)
        except EngineError as exc:
            # An answer that makes no sense here (a question about the stream
            # only: every call that changes something handles its refusals).
            delay = self._retry.next()
            self.log.warning("unexpected answer from the engine (%s); retrying in %.1f s",
                             exc.detail, delay)
            await asyncio.sleep(delay)
        self._update_settled()

    async def _check_stream(self) -> None:
        """Ask the engine whether this player's stream still exists, and recover
        when it does not: played again from the position reached when the link
        was lost (paused players stay paused there), or advanced when it ended."""
        core = self.core
        if core.current is None or core.restored or core.nonce != self._applied.nonce:
            return  # nothing at the engine to check, or a new play replaces it anyway
        nonce = core.nonce
        self.engine_calls += 1
        status = await self._engine.status(self.key)
        if core.nonce != nonce or self.core is not core:
            return  # changed while we asked: the new desired state decides
        now = self._clock()
        current = core.current
        lost_at, self._lost_at = self._lost_at, None
        if status is not None and status.status in ("streaming", "paused"):
            await self._ready_if_missed()
            return
        if status is not None and status.status in LIVE_STATES:
            return
        if status is not None and status.status in ("stopped", "error"):
            self.log.info("the stream ended while the engine was out of reach")
            core.stream_ended(now)
            self._changed()
            return
        self.stats.lost_streams += 1
        if core.stream_lost(min(lost_at if lost_at is not None else now, now), now):
            self.log.info("the engine lost the stream; playing %s again from %.1f s",
                          current.label, core.start_at)
        else:
            self._applied_if_nothing_to_do()
            self.log.info("the engine lost the paused stream; it stays paused at %.1f s",
                          core.start_at)
        self._changed()

    async def _check_joined(self) -> None:
        """A join's ``ready`` did not come: if the engine streams the joined play,
        take it as started; otherwise the join did not happen (the next track came
        too late, or another joined), so play the track plainly."""
        core = self.core
        if core.joined_nonce != core.nonce or core.stream_live:
            return
        nonce, play_id = core.nonce, core.play_id
        self.engine_calls += 1
        info = await self._engine.session_info(self.key)
        if core.nonce != nonce or core.stream_live:
            return
        if (info is not None and info.status in ("streaming", "paused")
                and info.play_id == play_id):
            if core.ready_missed(self._clock(), info.position):
                self.log.info("gapless: the joined play streams; its ready was lost")
                self._changed()
            return
        if core.join_missed(self._clock()):
            self.stats.missed_joins += 1
            self.log.info("gapless: the next track did not join the stream; playing it")
            self._changed()

    async def _ready_if_missed(self) -> None:
        """The engine streams our bound play: if its ``ready`` was lost (written
        while the socket was down), take it now, at the engine's position when it
        can tell (our engine), else at the play's start."""
        core = self.core
        if core.stream_live or core.bound_nonce != core.nonce or core.current is None:
            return
        nonce = core.nonce
        position: float | None = None
        if Feature.PLAY_ID in self._link.capabilities:
            info = await self._engine.session_info(self.key)
            if info is None or core.nonce != nonce or (
                    info.play_id is not None and info.play_id != core.play_id):
                return
            position = info.position
        if core.ready_missed(self._clock(), position):
            self.log.info("the engine streams the play but its ready was lost; taking it "
                          "as started")
            self._changed()

    async def _apply(self, desired: Desired) -> None:
        applied = self._applied
        if desired.nonce != applied.nonce:
            await self._apply_track(desired)
        elif desired.paused != applied.paused:
            await self._apply_pause(desired)
        elif desired.volume != applied.volume:
            await self._apply_volume(desired)
        elif desired.filters != applied.filters:
            await self._apply_filters(desired)
        elif desired.crossfade != applied.crossfade:
            await self._apply_crossfade(desired)
        else:
            await self._apply_next(self._next_wanted())

    async def _apply_track(self, desired: Desired) -> None:
        engine = self._engine
        self.core.sending(desired.nonce)
        if desired.track is None:
            self.engine_calls += 1
            try:
                await engine.stop(self.key)
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                self.log.warning("stop refused: %s", exc)
            self._applied = _Applied.of(desired, paused=False)
            self._next_applied = None
            self._changed()
            return
        play_id: int | None = None
        played = False
        # At most two sends: a second only after the engine said the first did
        # not arrive.
        for _ in range(2):
            if self._unknown_play == desired.nonce:
                played, play_id = await self._play_outcome(desired)
                if played:
                    break
            try:
                self.engine_calls += 1
                # Until an answer arrives, whether the engine acted is unknown
                # (also if this task is cancelled or fails meanwhile).
                self._unknown_play = desired.nonce
                result = await engine.play(
                    self.key, desired.track.url, format=self._output_format(),
                    start_at=desired.start_at, duration=desired.track.duration or 0.0,
                    volume=desired.volume if self._supports(Feature.VOLUME) else None,
                    filters=desired.filters if (
                        desired.filters and self._supports(Feature.FILTERS)) else None,
                    crossfade=desired.crossfade if (
                        desired.crossfade and self._supports(Feature.CROSSFADE)) else None,
                )
            except EngineOutcomeUnknown as exc:
                self.stats.play_checks += 1
                self.log.warning("the play's answer was lost (%s); asking the engine what "
                                 "it did", exc.detail)
                continue
            except EngineUnavailable:
                self._unknown_play = None
                raise
            except EngineFault as exc:
                self._unknown_play = None
                self._play_faults += 1
                if self._play_faults < PLAY_ATTEMPTS:
                    raise
                self._play_refused(desired, exc)
                return
            except EngineError as exc:
                self._unknown_play = None
                self._play_refused(desired, exc)
                return
            play_id = result.play_id
            played = True
            break
        if not played:
            raise EngineOutcomeUnknown("the connection to the audio engine broke")
        self._unknown_play = None
        self._engine_play_id = play_id
        self.core.bind_play(desired.nonce, play_id, self._clock())
        # The play is applied (with the filters and crossfade it carried); a pause
        # it needs is a separate step, so an engine failure there is retried
        # rather than lost. A new session holds no next track.
        self._applied = _Applied.of(desired, paused=False)
        self._next_applied = None
        self._changed()

    def _play_refused(self, desired: Desired, exc: EngineError) -> None:
        self._play_faults = 0
        self._applied = _Applied.of(desired)
        self.log.warning("play refused: %s", exc)
        self.core.play_failed(desired.nonce, str(exc), self._clock())
        self._changed()

    async def _play_outcome(self, desired: Desired) -> tuple[bool, int | None]:
        """Whether the play for *desired* reached the engine (and its play id),
        for a play whose answer was lost. Raises ``EngineUnavailable`` when the
        engine cannot be asked (the question is asked again later)."""
        assert desired.track is not None
        url = desired.track.url
        self.engine_calls += 1
        if Feature.PLAY_ID in self._link.capabilities:
            info = await self._engine.session_info(self.key)
            if (info is not None and info.url == url and info.status in LIVE_STATES
                    and info.play_id is not None and info.play_id != self._engine_play_id):
                self.log.info("the engine had started the play (play %d)", info.play_id)
                return True, info.play_id
            return False, None
        status = await self._engine.status(self.key)
        if status is not None and status.url == url and status.status in LIVE_STATES:
            # A Go engine names no plays: a live session of this URL is taken as
            # this play (a replay of the same URL cannot be told apart).
            self.log.info("the engine had started the play")
            return True, None
        return False, None

    async def _apply_pause(self, desired: Desired) -> None:
        self.engine_calls += 1
        try:
            await (self._engine.pause if desired.paused else self._engine.resume)(self.key)
        except EngineNotFound:
            # The engine has no session for us any more: find out what happened.
            self._verify = True
            if desired.paused:
                return
            # A resume of a session that is gone: play it again from its position.
            self._verify = False
            self.stats.lost_streams += 1
            self.core.stream_lost(self._clock(), self._clock())
            self._changed()
            return
        except (EngineUnavailable, EngineFault):
            raise
        except EngineError as exc:
            self.log.warning("%s refused: %s", "pause" if desired.paused else "resume", exc)
        self._applied = dataclasses.replace(self._applied, paused=desired.paused)

    async def _apply_volume(self, desired: Desired) -> None:
        if self._supports(Feature.VOLUME) and self._engine_has_session():
            self.engine_calls += 1
            try:
                await self._engine.set_volume(self.key, desired.volume)
            except EngineNotFound:
                pass  # no live session: the next play carries the volume
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                self.log.warning("volume refused: %s", exc)
        self._applied = dataclasses.replace(self._applied, volume=desired.volume)

    async def _apply_filters(self, desired: Desired) -> None:
        if self._supports(Feature.FILTERS) and self._engine_has_session():
            self.engine_calls += 1
            try:
                await self._engine.set_filters(self.key, desired.filters)
            except EngineNotFound:
                pass  # no live session: the next play carries the filters
            except (EngineUnavailable, EngineFault):
                raise
            except EngineInvalidRequest as exc:
                # The engine's words say which value is wrong: keep what it plays.
                core = self.core
                self.log.warning("filters refused: %s", exc)
                core.filters = dict(self._applied.filters or {})
                core.filter_name = "custom" if core.filters else ""
                core.error = f"the filters were refused: {exc}"
                self._changed()
                return
            except EngineError as exc:
                self.log.warning("filters refused: %s", exc)
        self._applied = dataclasses.replace(self._applied, filters=desired.filters)

    async def _apply_crossfade(self, desired: Desired) -> None:
        if self._supports(Feature.CROSSFADE) and self._engine_has_session():
            self.engine_calls += 1
            try:
                await self._engine.set_crossfade(self.key, desired.crossfade)
            except EngineNotFound:
                pass  # no live session: the next play carries it
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                self.log.warning("crossfade refused: %s", exc)
        self._applied = dataclasses.replace(self._applied, crossfade=desired.crossfade)

    async def _apply_next(self, wanted: NextPlan | None) -> None:
        """Tell the engine the next track (or that there is none any more)."""
        core = self.core
        held = self._next_applied
        if wanted is None:
            self._next_applied = None
            if held is not None and held.nonce == core.nonce and core.next_play_id is not None:
                self.engine_calls += 1
                try:
                    await self._engine.cancel_next(self.key)
                except EngineNotFound:
                    pass  # the session is gone, and its next track with it
                except (EngineUnavailable, EngineFault):
                    self._next_applied = held
                    raise
                except EngineError as exc:
                    self.log.warning("cancelling the next track failed: %s", exc)
                core.clear_next()
            return
        track = wanted.track
        self.engine_calls += 1
        try:
            result = await self._engine.set_next(self.key, track.url,
                                                 duration=track.duration or 0.0)
        except (EngineUnavailable, EngineFault):
            raise
        except EngineError as exc:
            # Refused (the session ended, or the engine cannot use the URL): the
            # track is played plainly when the current one ends.
            self.log.info("the engine did not take the next track (%s); it will be a new "
                          "play", exc)
            self._next_applied = wanted
            return
        self._next_applied = wanted
        if core.bind_next(wanted, result.play_id, self._clock()):
            self._took_join()
            self._changed()

    def _output_format(self) -> Format:
        return "web" if self.output == "web" else "pcm" if self.output == "pcm" else "opus"


async def run_command(player: Player, apply: Callable[[PlayerCore, float], object]
                      ) -> tuple[object, str | None]:
    """Run a command; returns (result, None) or (None, the user-facing error)."""
    try:
        return await player.command(apply), None
    except CommandError as exc:
        return None, str(exc)

