"""The async shell around ``PlayerCore``: commands in, engine calls out.

Each player has one reconcile task. Commands change the core's desired state and
wake the task; the task compares desired with what it last told the engine and
issues the calls that close the gap, one at a time. A burst of commands thus
costs one engine call per *settled* state (five quick skips play one track).
Engine events arrive from the router, go through the core, and may change the
desired state again (auto-advance).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from applog import SessionLogger, session_logger
from gateway.engine_client import EngineClient, EngineError, EngineUnavailable
from gateway.player.core import CommandError, Desired, PlayerCore, PlayerView
from gateway.player.store import QueueStore
from gateway.router import Router
from protocol import Event

__all__ = ["Player", "PlayerRegistry", "run_command"]

log = logging.getLogger(__name__)

ViewListener = Callable[[PlayerView], None]


@dataclass(frozen=True, slots=True)
class _Applied:
    nonce: int
    paused: bool
    volume: float


class Player:
    """One key's player: the core, its reconcile task, its listeners."""

    def __init__(
        self,
        core: PlayerCore,
        *,
        engine: EngineClient,
        router: Router,
        store: QueueStore | None,
        output: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.key = core.key
        self._engine = engine
        self._router = router
        self._store = store
        self._output = output
        self._clock = clock
        self._wake = asyncio.Event()
        #: Set whenever the desired or the applied state may have changed.
        self._progress = asyncio.Event()
        self._listeners: list[ViewListener] = []
        desired = core.desired()
        # A restored player is taken as already applied: nothing plays until a
        # command asks for it.
        self._applied = _Applied(desired.nonce, desired.paused, desired.volume)
        self._task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._dirty = False
        self.log: SessionLogger = session_logger(log, self.key)
        #: Engine calls made (for tests and metrics).
        self.engine_calls = 0
        router.add_listener(self.key, self._on_event)

    def start(self) -> None:
        """Start the reconcile task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._reconcile(), name=f"player-{self.key}"
            )

    async def close(self) -> None:
        """Stop the task (the engine session is left as it is). Idempotent."""
        self._router.remove_listener(self.key, self._on_event)
        for task in (self._task, self._save_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._task, self._save_task) if t is not None),
            return_exceptions=True,
        )
        self._task = None

    # -- fronts -----------------------------------------------------------------------

    def view(self) -> PlayerView:
        """Now playing, position and queue."""
        return self.core.view(self._clock())

    def subscribe(self, listener: ViewListener) -> Callable[[], None]:
        """Call *listener* with a fresh view after every change; returns an
        unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def command(self, apply: Callable[[PlayerCore, float], object]) -> object:
        """Run ``apply(core, now)`` and schedule the engine work it implies.

        Raises:
            CommandError: from the core; nothing changed.
        """
        result = apply(self.core, self._clock())
        self._changed()
        return result

    async def settled(self, within: float = 10.0) -> None:
        """Wait until the engine matches the desired state (tests, /status).

        Raises:
            TimeoutError: not settled *within* seconds.
        """
        async with asyncio.timeout(within):
            while self._pending():
                self._progress.clear()
                await self._progress.wait()

    # -- internals --------------------------------------------------------------------

    def _pending(self) -> bool:
        desired = self.core.desired()
        return (desired.nonce, desired.paused, desired.volume) != (
            self._applied.nonce, self._applied.paused, self._applied.volume)

    def _changed(self) -> None:
        self._wake.set()
        self._progress.set()
        self._dirty = True
        if self._store is not None and (self._save_task is None or self._save_task.done()):
            self._save_task = asyncio.get_running_loop().create_task(self._save())
        view = self.view()
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                self.log.exception("player listener failed")

    async def _save(self) -> None:
        assert self._store is not None
        while self._dirty:
            self._dirty = False
            try:
                await self._store.save(self.key, self.core.snapshot(self._clock()))
            except Exception:
                self.log.exception("saving the queue failed")
                return

    def _on_event(self, event: Event) -> None:
        play = event.extra.get("play")
        play_id = play if isinstance(play, int) and not isinstance(play, bool) else None
        packets = self._router.packets_by_session.get(self.key, 0)
        taken = self.core.on_event(event.type.value, play_id, event.message, self._clock(),
                                   packets_since_ready=packets)
        if taken:
            self.log.info("engine %s%s", event.type.value,
                          f": {event.message}" if event.message else "")
            self._changed()

    async def _reconcile(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending():
                desired = self.core.desired()
                try:
                    await self._apply(desired)
                    self._progress.set()
                except EngineUnavailable as exc:
                    # Keep the desired state; try again when the engine is back.
                    self.log.warning("%s", exc)
                    self.core.error = str(exc)
                    self._notify_only()
                    await asyncio.sleep(1.0)
                    continue

    def _notify_only(self) -> None:
        view = self.view()
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                self.log.exception("player listener failed")

    async def _apply(self, desired: Desired) -> None:
        applied = self._applied
        engine = self._engine
        self.engine_calls += 1
        if desired.nonce != applied.nonce:
            self.core.sending(desired.nonce)
            if desired.track is None:
                await engine.stop(self.key)
                self._applied = _Applied(desired.nonce, False, desired.volume)
                return
            try:
                result = await engine.play(
                    self.key, desired.track.url, format=self._output,  # type: ignore[arg-type]
                    start_at=desired.start_at, duration=desired.track.duration or 0.0,
                    volume=desired.volume,
                )
            except EngineUnavailable:
                raise
            except EngineError as exc:
                self._applied = _Applied(desired.nonce, desired.paused, desired.volume)
                self.core.play_failed(desired.nonce, str(exc), self._clock())
                self.log.warning("play refused: %s", exc)
                self._changed()
                return
            self.core.bind_play(desired.nonce, result.play_id, self._clock())
            paused = False
            if desired.paused:
                await engine.pause(self.key)
                paused = True
            self._applied = _Applied(desired.nonce, paused, desired.volume)
            self._changed()
            return
        if desired.paused != applied.paused:
            try:
                await (engine.pause if desired.paused else engine.resume)(self.key)
            except EngineError as exc:
                self.log.warning("pause/resume refused: %s", exc)
            self._applied = _Applied(applied.nonce, desired.paused, applied.volume)
            return
        if desired.volume != applied.volume:
            try:
                await engine.set_volume(self.key, desired.volume)
            except EngineUnavailable:
                raise
            except EngineError as exc:
                # An engine without live volume (Go): applied at the next play.
                self.log.info("live volume not available: %s", exc)
            self._applied = _Applied(applied.nonce, applied.paused, desired.volume)


class PlayerRegistry:
    """Every key's player, created on first use and restored from the store.

    Args:
        engine: the engine API client.
        router: event source.
        store: persistence (None: in memory only).
        output: the engine format every play asks for (``opus`` or ``web``).
    """

    def __init__(
        self,
        *,
        engine: EngineClient,
        router: Router,
        store: QueueStore | None = None,
        output: str = "opus",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._router = router
        self._store = store
        self._output = output
        self._clock = clock
        self._players: dict[str, Player] = {}
        self._saved: dict[str, dict[str, object]] = {}

    async def load(self) -> int:
        """Read stored queues (players are rebuilt lazily). Returns how many."""
        if self._store is not None:
            self._saved = await self._store.load_all()
        return len(self._saved)

    def get(self, key: str, output: str | None = None) -> Player:
        """The player of *key*, created (or restored) on first use."""
        player = self._players.get(key)
        if player is None:
            saved = self._saved.pop(key, None)
            core = PlayerCore.restore(key, saved) if saved else PlayerCore(key)
            player = Player(core, engine=self._engine, router=self._router, store=self._store,
                            output=output or self._output, clock=self._clock)
            self._players[key] = player
            player.start()
        return player

    def existing(self, key: str) -> Player | None:
        """The player of *key* if it was created."""
        return self._players.get(key)

    @property
    def players(self) -> list[Player]:
        """Players created so far."""
        return list(self._players.values())

    async def close(self) -> None:
        """Stop every player's task. Idempotent."""
        players = list(self._players.values())
        self._players.clear()
        await asyncio.gather(*(p.close() for p in players), return_exceptions=True)


async def run_command(player: Player, apply: Callable[[PlayerCore, float], object]
                      ) -> tuple[object, str | None]:
    """Run a command; returns (result, None) or (None, the user-facing error)."""
    try:
        return await player.command(apply), None
    except CommandError as exc:
        return None, str(exc)

