"""Every key's player: created on first use, held by fronts, unloaded when idle.

The registry also relays the engine socket's state to the players: a loss is noted
by every player with a stream; on every connect the engine's features are read
again (``GET /health``) and every player checks its stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from gateway.database import DatabaseError
from gateway.engine_client import GO_ENGINE, EngineClient, EngineError
from gateway.player.controller import Player
from gateway.player.core import PlayerCore
from gateway.player.link import EngineApi, EngineLink, LinkView
from gateway.player.persistence import POSITION_SAVE_INTERVAL, save_positions
from gateway.player.stats import PlayerStats
from gateway.player.store import QueueStore
from gateway.player.view import PlayerStatus
from gateway.router import Router
from gateway.settings import setting_default
from lifecycle import TaskOwner, declare

__all__ = ["Binder", "PlayerRegistry"]

log = logging.getLogger(__name__)

DISCOVERY = declare(
    "engine-discovery", owner="PlayerRegistry",
    what="reading the engine's features (`/health`) after each socket connect, then having "
         "every player check its stream",
    ends="done, or cancelled by the next connect or `players.close()`")
UNLOAD = declare(
    "unload-{key}", owner="PlayerRegistry",
    what="unloading a released player (a front's `unload_soon`): its save and engine stop",
    ends="each step bounded; awaited (not cancelled) by `players.close()`")
POSITIONS = declare(
    "player-positions", owner="Gateway (`run`'s task group)",
    what=f"saving the position of every playing player every {POSITION_SAVE_INTERVAL:g} s, "
         "in one transaction (`PlayerRegistry.save_positions`)",
    ends="`Gateway.stop` (`run`'s task group), after the players' final saves")


class Binder(Protocol):
    """Gives each player its own engine and link: a pool of engine nodes binds a
    key to the node its session is placed on (``gateway.nodes``). Without one,
    every player shares the registry's engine client and link."""

    def bind(self, key: str) -> tuple[EngineApi, LinkView]:
        """The engine calls and the link view of *key*'s player."""
        ...

    def unbind(self, key: str) -> None:
        """*key*'s player was unloaded: forget its binding."""
        ...


class PlayerRegistry:
    """Every key's player: created on first use (its stored queue loaded), held by
    fronts, unloaded when idle and unheld (the queue stays in the store).

    Args:
        engine: the engine API client.
        router: event source.
        store: persistence (None: in memory only).
        output: the engine format every play asks for (``opus`` or ``web``).
        link: the shared engine connection state.
        idle_timeout: seconds an unheld player with nothing playing stays loaded.
        binder: gives each player its engine and link (a node pool); None: all
            share *engine* and *link*.
    """

    def __init__(
        self,
        *,
        engine: EngineClient,
        router: Router,
        store: QueueStore | None = None,
        output: str = "opus",
        clock: Callable[[], float] = time.monotonic,
        link: EngineLink | None = None,
        idle_timeout: float = setting_default("player_idle_timeout"),
        binder: Binder | None = None,
    ) -> None:
        self._engine = engine
        self._router = router
        self._store = store
        self._output = output
        self._clock = clock
        self.link = link or EngineLink()
        self.idle_timeout = idle_timeout
        self.stats = PlayerStats()
        self._players: dict[str, Player] = {}
        self._binder = binder
        #: Engine discovery, and players being unloaded at a front's request.
        self._tasks = TaskOwner(DISCOVERY.owner, logger=log)
        self._discovery: asyncio.Task[None] | None = None

    async def load(self) -> int:
        """How many queues the store holds (each is loaded when its key is used).

        Raises:
            DatabaseError: the store cannot be read.
        """
        return await self._store.count() if self._store is not None else 0

    def get(self, key: str, output: str | None = None) -> Player:
        """The player of *key*, created on first use (its stored queue is loaded
        before its first command applies)."""
        player = self._players.get(key)
        if player is None:
            engine: EngineApi = self._engine
            link: LinkView = self.link
            if self._binder is not None:
                engine, link = self._binder.bind(key)
            player = Player(PlayerCore(key), engine=engine, router=self._router,
                            link=link, store=self._store,
                            output=output or self._output, clock=self._clock,
                            stats=self.stats)
            self._players[key] = player
            player.start()
        elif output is not None:
            player.output = output
        player.touch()
        return player

    def existing(self, key: str) -> Player | None:
        """The player of *key* if it is loaded."""
        return self._players.get(key)

    @property
    def players(self) -> list[Player]:
        """Players loaded now."""
        return list(self._players.values())

    # -- the engine link ---------------------------------------------------------------

    def engine_lost(self) -> None:
        """The engine socket went down."""
        now = self._clock()
        self.link.mark_lost(now)
        for player in list(self._players.values()):
            player.link_lost(now)

    def engine_connected(self) -> None:
        """The engine socket connected: learn what the engine supports (``/health``),
        then have every player check its stream."""
        self.link.mark_connected()
        if self._discovery is not None:
            self._discovery.cancel()
        if not self._tasks.closed:
            self._discovery = self._tasks.spawn(DISCOVERY, self._discover())

    async def _discover(self) -> None:
        try:
            capabilities = await self._engine.capabilities()
        except EngineError as exc:
            log.warning("could not read the engine's features (%s); taking it for a Go "
                        "engine", exc.detail)
            capabilities = GO_ENGINE
        log.info("engine features: %s", capabilities.describe())
        self.link.set_capabilities(capabilities)
        for player in list(self._players.values()):
            player.link_back()

    # -- unloading ---------------------------------------------------------------------

    def idle_players(self, now: float) -> list[Player]:
        """Players that may be unloaded now: unheld, nothing playing or loading,
        nothing pending at the engine, idle for ``idle_timeout``."""
        return [
            p for p in self._players.values()
            if p.holders == 0 and not p.pending
            and p.status in (PlayerStatus.IDLE, PlayerStatus.PAUSED)
            and now - p.last_active >= self.idle_timeout
        ]

    async def evict_idle(self) -> int:
        """Unload idle players (their queue is saved; a paused one's engine session
        is stopped, freeing its slot). Returns how many."""
        evicted = self.idle_players(self._clock())
        for player in evicted:
            if self._players.get(player.key) is player:
                del self._players[player.key]
        if evicted:
            self.stats.evictions += len(evicted)
            log.debug("unloading %d idle players", len(evicted))
            await asyncio.gather(*(p.close(save=True, release=True) for p in evicted))
            if self._binder is not None:
                for player in evicted:
                    if player.key not in self._players:
                        self._binder.unbind(player.key)
        return len(evicted)

    def unload_soon(self, key: str) -> bool:
        """Unload *key*'s player now if nobody holds it: its queue, position and
        pause are saved and its engine session stopped, freeing the slot (a front
        whose user left). The work runs in a task of the registry's own, which
        ``close`` awaits. Returns whether it was unloaded."""
        player = self._players.get(key)
        if player is None or player.holders > 0:
            return False
        del self._players[key]
        self.stats.evictions += 1
        self._tasks.spawn(UNLOAD, self._unload(player), key=key)
        return True

    async def _unload(self, player: Player) -> None:
        await player.close(save=True, release=True)
        if self._binder is not None and player.key not in self._players:
            self._binder.unbind(player.key)

    async def close(self, *, release: bool = True) -> None:
        """Save every player's queue, position and pause state, stop their engine
        sessions (with *release*) and their tasks. Idempotent; bounded by
        ``CLOSE_TIMEOUT`` per step."""
        if self._discovery is not None:
            self._discovery.cancel()
            self._discovery = None
        await self._tasks.join()  # the unloads finish their saves
        await self._tasks.aclose()
        players = list(self._players.values())
        self._players.clear()
        if players:
            log.info("saving %d players", len(players))
        results = await asyncio.gather(
            *(p.close(save=True, release=release) for p in players), return_exceptions=True)
        for player, result in zip(players, results, strict=True):
            if isinstance(result, BaseException):
                player.log.error("closing the player failed: %r", result)
            if self._binder is not None:
                self._binder.unbind(player.key)

    # -- positions ---------------------------------------------------------------------

    async def save_positions(self, interval: float = POSITION_SAVE_INTERVAL) -> None:
        """Every *interval* seconds, save the snapshot of every playing player in one
        transaction: nothing changes while a track plays, yet a gateway killed without
        warning must bring users back near where they were. Runs until cancelled
        (a failed round is logged; the next writes newer positions)."""
        if self._store is None:
            return
        while True:
            await asyncio.sleep(interval)
            playing = [(p.key, p.snapshot()) for p in self._players.values()
                       if p.status is PlayerStatus.PLAYING and not p.closed]
            try:
                await save_positions(self._store, playing, self.stats)
            except DatabaseError as exc:
                log.error("saving the playing positions failed (%s); trying again in "
                          "%g s", exc, interval)
