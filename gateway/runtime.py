"""The gateway's parts wired together: what both fronts share.

``Gateway`` owns the router, the socket client, the engine API client and its
watch, the queue store, the players, and its long-lived tasks: the socket's
reconnect loop, the engine watch, the silence watchdog, and housekeeping
(unloading idle players, plus what fronts register with ``add_housekeeping``).
Fronts (the playground, the Discord bot) register sinks with ``router`` and drive
``players``. The process around it is assembled by the composition root
(``audiogate.gateway_process``), which runs ``run()`` in its task group; tests
embed it with ``start()``/``stop()``.

The socket's state drives the players: on every connect the engine's features are
read again from ``/health`` and every player checks its stream; on a loss every
player notes when its stream was last heard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from gateway.database import Database
from gateway.engine_client import EngineClient
from gateway.health import EngineWatch
from gateway.lyrics import LrclibClient, LyricsService
from gateway.metrics import GatewayMetrics, counter, gauge
from gateway.nodes.catalogue import PoolCatalogue
from gateway.nodes.metrics import node_metric_families
from gateway.nodes.pool import NodePool, PoolConnection
from gateway.player import PlayerRegistry, QueueStore
from gateway.player.link import EngineLink
from gateway.player.registry import POSITIONS
from gateway.router import Router
from gateway.settings import GatewaySettings
from gateway.socket_client import SocketClient
from gateway.watchdog import SilenceWatchdog
from lifecycle import TaskOwner, declare

__all__ = ["Gateway"]

log = logging.getLogger(__name__)

_GROUP = "Gateway (`run`'s task group)"
HOUSEKEEPING = declare(
    "housekeeping", owner=_GROUP,
    what="unloading idle players and the fronts' jobs (every quarter of "
         "`GATEWAY_PLAYER_IDLE_TIMEOUT`, at most 30 s)",
    ends="`Gateway.stop`, after the players")
ENGINE_SOCKET = declare(
    "engine-socket", owner=_GROUP,
    what="the engine socket (single engine): connect, read, reconnect with the back-off",
    ends="`Gateway.stop`, after the players")
ENGINE_WATCH = declare(
    "engine-watch", owner=_GROUP,
    what="the engine API's `/health` (single engine), every `GATEWAY_ENGINE_CHECK_INTERVAL`",
    ends="`Gateway.stop`, after the players")
SILENCE_WATCHDOG = declare(
    "silence-watchdog", owner=_GROUP,
    what="the silence watchdog (single engine, every 1 s at most)",
    ends="`Gateway.stop`, after the players")
ENGINE_NODES = declare(
    "engine-nodes", owner=_GROUP,
    what="the node pool, with `GATEWAY_NODES` (`NodePool.run`)",
    ends="`Gateway.stop`, after the players")
EMBEDDED = declare(
    "gateway", owner="Gateway",
    what="`Gateway.run` when embedded without a root (`Gateway.start`, the tests)",
    ends="`Gateway.stop`")


class Gateway:
    """Router, socket client, engine client and players of one gateway process."""

    def __init__(self, settings: GatewaySettings,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        """Raises ``DatabaseError`` when the database file cannot be opened."""
        self.settings = settings
        self.router = Router()
        nodes = settings.node_configs
        #: The gateway's SQLite file (queues, sound settings, the bot's guild settings).
        self.database = Database(settings.queue_path, lock_timeout=settings.queue_lock_timeout)
        self.store = QueueStore(self.database)
        self.link = EngineLink()
        #: The engine nodes, with ``GATEWAY_NODES``; None: the one engine of
        #: ``GO_API_PORT``/``SOCKET_PATH``, as a single socket and link.
        self.pool: NodePool | None = None
        self.socket: SocketClient | PoolConnection
        self.engine_watch: EngineWatch | None = None
        self.watchdog: SilenceWatchdog | None = None
        self.engine: EngineClient
        if nodes:
            pool = self.pool = NodePool(nodes, self.router,
                                        interval=settings.engine_check_interval,
                                        drained=settings.drained_nodes,
                                        move_after=settings.drain_move_after, clock=clock)
            self.engine = PoolCatalogue(pool)
            self.socket = PoolConnection(pool)
            self.players = PlayerRegistry(engine=self.engine, router=self.router,
                                          store=self.store, link=self.link, clock=clock,
                                          idle_timeout=settings.player_idle_timeout,
                                          binder=pool)
            pool.attach(self.players)
        else:
            token = settings.engine_token.get_secret_value() if settings.engine_token else None
            self.engine = EngineClient(settings.engine_url, token=token)
            socket = self.socket = SocketClient(settings.socket_path, self.router)
            watch = self.engine_watch = EngineWatch(self.engine,
                                                    interval=settings.engine_check_interval)
            socket.add_state_listener(lambda _connected: watch.nudge())
            self.players = PlayerRegistry(engine=self.engine, router=self.router,
                                          store=self.store, link=self.link, clock=clock,
                                          idle_timeout=settings.player_idle_timeout)
            self.watchdog = SilenceWatchdog(registry=self.players, router=self.router,
                                            socket=socket, engine=self.engine,
                                            threshold=settings.silence_timeout,
                                            interval=min(1.0, settings.silence_timeout / 3),
                                            clock=clock)
            socket.add_state_listener(self._socket_state)
        #: Lyrics from LRCLIB (``GATEWAY_LYRICS_URL``; empty: none), for every front.
        self.lyrics = LyricsService(
            LrclibClient(settings.lyrics_url, timeout=settings.lyrics_timeout)
            if settings.lyrics_url else None, clock=clock)
        self.metrics = GatewayMetrics()
        self.metrics.add_source(self._metric_families)
        self._housekeeping: list[Callable[[float], object]] = []
        self._prepared = False
        self._stopping = asyncio.Event()
        self._tasks = TaskOwner(EMBEDDED.owner, logger=log)
        self._stopped = False

    def add_housekeeping(self, job: Callable[[float], object]) -> None:
        """Run ``job(loop_time)`` every housekeeping round (e.g. a front dropping
        idle per-user state). It must be quick and must not raise."""
        self._housekeeping.append(job)

    async def prepare(self) -> None:
        """Count stored queues (players come back lazily). Idempotent."""
        if self._prepared:
            return
        self._prepared = True
        stored = await self.players.load()
        if stored:
            log.info("%d queues stored; each comes back when its guild or user returns",
                     stored)

    async def run(self) -> None:
        """Read the engine socket, watch the engine's API and the socket's silence,
        and keep house, until ``stop``.

        Raises what ends any of them (a bug). Cancelling is safe.
        """
        await self.prepare()
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(self._housekeep(), name=HOUSEKEEPING.name),
                tasks.create_task(self.players.save_positions(), name=POSITIONS.name),
            ]
            if self.pool is not None:
                running.append(tasks.create_task(self.pool.run(), name=ENGINE_NODES.name))
            else:
                assert isinstance(self.socket, SocketClient)
                assert self.engine_watch is not None and self.watchdog is not None
                running += [
                    tasks.create_task(self.socket.run(), name=ENGINE_SOCKET.name),
                    tasks.create_task(self.engine_watch.run(), name=ENGINE_WATCH.name),
                    tasks.create_task(self.watchdog.run(), name=SILENCE_WATCHDOG.name),
                ]
            await self._stopping.wait()
            for task in running:
                task.cancel()

    async def start(self) -> None:
        """``prepare``, then ``run`` in a task this object owns (for embedding
        the gateway without a composition root, as the tests do)."""
        await self.prepare()
        self._tasks.spawn(EMBEDDED, self.run())

    async def stop(self) -> None:
        """Save every player (queue, position, pause) and stop its engine session,
        then stop the tasks and close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.players.close(release=True)
        self._stopping.set()
        await self._tasks.join()
        await self.lyrics.aclose()
        await self.engine.aclose()
        if self.pool is not None:
            await self.pool.aclose()
        await self.database.aclose()

    def readiness(self) -> list[str]:
        """Why the gateway cannot serve now (empty: ready)."""
        reasons = []
        if self._stopping.is_set():
            reasons.append("shutting down")
        if self.pool is not None:
            if (problem := self.pool.readiness()) is not None:
                reasons.append(problem)
            return reasons
        if not self.socket.connected.is_set():
            reasons.append("not connected to the engine socket")
        if self.engine_watch is not None and (problem := self.engine_watch.readiness()) \
                is not None:
            reasons.append(problem)
        return reasons

    def _socket_state(self, connected: bool) -> None:
        if connected:
            self.players.engine_connected()
        else:
            self.players.engine_lost()

    @property
    def housekeeping_interval(self) -> float:
        """Seconds between housekeeping rounds: a quarter of the players' idle
        timeout, so an idle player goes within 25 % of it (50 ms to 30 s)."""
        return min(30.0, max(0.05, self.players.idle_timeout / 4))

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            try:
                await self.players.evict_idle()
            except Exception:
                log.exception("unloading idle players failed")
            for job in list(self._housekeeping):
                try:
                    job(loop.time())
                except Exception:
                    log.exception("housekeeping job failed")

    def _metric_families(self) -> Iterable[Metric]:
        router = self.router
        yield counter("audiogate_gateway_packets_routed", "Audio packets read from the engine",
                      router.packets)
        yield counter("audiogate_gateway_packets_unknown_session",
                      "Audio packets dropped: no sink for their session id",
                      router.unknown_packets)
        yield counter("audiogate_gateway_events_routed", "Event lines read from the engine",
                      router.events)
        yield counter("audiogate_gateway_messages_discarded",
                      "Well-framed messages from the engine that could not be used",
                      router.discarded)
        drops = CounterMetricFamily("audiogate_gateway_sink_frames_dropped",
                                    "Frames dropped because a sink's buffer was full",
                                    labels=["sink"])
        for kind, value in sorted(router.sink_drops().items()):
            drops.add_metric([kind], value)
        yield drops
        yield gauge("audiogate_gateway_sinks", "Sinks registered with the router",
                    router.sink_count)
        yield gauge("audiogate_gateway_engine_socket_connected",
                    "1 while connected to the engine socket", int(self.socket.connected.is_set()))
        yield counter("audiogate_gateway_engine_socket_reconnects",
                      "Reconnections to the engine socket", self.socket.reconnects)
        yield counter("audiogate_gateway_engine_socket_protocol_errors",
                      "Connections dropped for malformed bytes, or closed in the middle of a "
                      "message", self.socket.protocol_errors)
        yield gauge("audiogate_gateway_players", "Players (guilds and users) loaded",
                    len(self.players.players))
        stats = self.players.stats
        yield counter("audiogate_gateway_player_restarts",
                      "Player tasks restarted after an unexpected error", stats.restarts)
        yield counter("audiogate_gateway_player_evictions",
                      "Idle players unloaded (their queue stays stored)", stats.evictions)
        yield counter("audiogate_gateway_player_lost_streams",
                      "Streams the engine lost before their end (restart, shutdown, idle), "
                      "kept at their position", stats.lost_streams)
        yield counter("audiogate_gateway_player_play_checks",
                      "Plays whose answer was lost and whose outcome was asked of the engine",
                      stats.play_checks)
        yield counter("audiogate_gateway_player_gapless_joins",
                      "Tracks that started by joining the stream before them (no play sent)",
                      stats.gapless_joins)
        yield counter("audiogate_gateway_player_missed_joins",
                      "Next tracks that did not join the stream and were played plainly",
                      stats.missed_joins)
        yield counter("audiogate_gateway_lyrics_lookups",
                      "Lyrics lookups sent to LRCLIB", self.lyrics.lookups)
        yield counter("audiogate_gateway_lyrics_cache_hits",
                      "Lyrics answered from the cache", self.lyrics.cache_hits)
        yield counter("audiogate_gateway_lyrics_failures",
                      "Lyrics lookups that could not reach LRCLIB (or got nonsense)",
                      self.lyrics.failures)
        yield counter("audiogate_gateway_queue_saves_failed",
                      "Queue saves that did not land (each is retried)", stats.failed_saves)
        yield counter("audiogate_gateway_queue_db_recoveries",
                      "Damaged queue databases moved aside", self.database.corrupt_recoveries)
        yield counter("audiogate_gateway_queue_db_lock_retries",
                      "Retries of a locked queue database", self.database.lock_retries)
        yield counter("audiogate_gateway_engine_socket_silent_reconnects",
                      "Reconnections because the socket carried no audio for sessions "
                      "the engine said were streaming",
                      self.watchdog.reconnects if self.watchdog is not None else 0)
        if self.pool is not None:
            yield from node_metric_families(self.pool)
        yield gauge("audiogate_gateway_engine_go_api_only",
                    "1 when the engine announced no features (a Go engine)",
                    int(self.link.discovered and self.link.capabilities.is_go_engine))

    def stats(self) -> dict[str, Any]:
        """Counters for ``/health``."""
        router = self.router
        return {
            "engine_socket_connected": self.socket.connected.is_set(),
            "socket_reconnects": self.socket.reconnects,
            "packets_routed": router.packets,
            "packets_unknown_session": router.unknown_packets,
            "events_routed": router.events,
            "messages_discarded": router.discarded,
            "sinks": router.sink_count,
            "players": len(self.players.players),
            "engine_features": sorted(self.link.capabilities.features),
            "silent_socket_reconnects": self.watchdog.reconnects if self.watchdog else 0,
            "player_restarts": self.players.stats.restarts,
            "queue_saves_failed": self.players.stats.failed_saves,
            **({"nodes": self.pool.view()} if self.pool is not None else {}),
        }
