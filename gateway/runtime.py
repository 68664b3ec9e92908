"""The gateway's parts wired together: what both fronts share.

``Gateway`` owns the router, the socket client, the engine API client and its
watch, the queue store and the players. Fronts (the playground, the Discord bot)
register sinks with ``router`` and drive ``players``. The process around it is
assembled by the composition root (``audiogate.gateway_process``), which runs
``run()`` in its task group; tests embed it with ``start()``/``stop()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from gateway.engine_client import EngineClient
from gateway.health import EngineWatch
from gateway.metrics import GatewayMetrics, counter, gauge
from gateway.player import PlayerRegistry, QueueStore
from gateway.router import Router
from gateway.settings import GatewaySettings
from gateway.socket_client import SocketClient

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """Router, socket client, engine client and players of one gateway process."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.router = Router()
        token = settings.engine_token.get_secret_value() if settings.engine_token else None
        self.engine = EngineClient(settings.engine_url, token=token)
        self.socket = SocketClient(settings.socket_path, self.router)
        self.engine_watch = EngineWatch(self.engine, interval=settings.engine_check_interval)
        self.socket.add_state_listener(lambda _connected: self.engine_watch.nudge())
        self.store = QueueStore(settings.queue_path)
        self.players = PlayerRegistry(engine=self.engine, router=self.router, store=self.store)
        self.metrics = GatewayMetrics()
        self.metrics.add_source(self._metric_families)
        self._prepared = False
        self._stopping = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._stopped = False

    async def prepare(self) -> None:
        """Load stored queues. Idempotent."""
        if self._prepared:
            return
        self._prepared = True
        restored = await self.players.load()
        if restored:
            log.info("restored %d stored queues", restored)

    async def run(self) -> None:
        """Read the engine socket and watch the engine's API until ``stop``.

        Raises what ends either of them (a bug). Cancelling is safe.
        """
        await self.prepare()
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self.socket.run(), name="engine-socket")
            watch = tasks.create_task(self.engine_watch.run(), name="engine-watch")
            await self._stopping.wait()
            reader.cancel()
            watch.cancel()

    async def start(self) -> None:
        """``prepare``, then ``run`` in a task this object owns (for embedding
        the gateway without a composition root, as the tests do)."""
        await self.prepare()
        self._run_task = asyncio.get_running_loop().create_task(self.run(), name="gateway")

    async def stop(self) -> None:
        """Stop players, the socket client and the watch; close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.players.close()
        self._stopping.set()
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)
        await self.engine.aclose()
        self.store.close()

    def readiness(self) -> list[str]:
        """Why the gateway cannot serve now (empty: ready)."""
        reasons = []
        if self._stopping.is_set():
            reasons.append("shutting down")
        if not self.socket.connected.is_set():
            reasons.append("not connected to the engine socket")
        if (problem := self.engine_watch.readiness()) is not None:
            reasons.append(problem)
        return reasons

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
                      "Connections dropped for malformed bytes", self.socket.protocol_errors)
        yield gauge("audiogate_gateway_players", "Players (guilds and users) loaded",
                    len(self.players.players))

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
        }
