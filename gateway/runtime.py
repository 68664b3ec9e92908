"""The gateway's parts wired together: what both fronts share.

``Gateway`` owns the router, the socket client (and its reconnect task), the
engine API client, the queue store and the players. Fronts (the playground, the
Discord bot) register sinks with ``router`` and drive ``players``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from gateway.engine_client import EngineClient
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
        self.store = QueueStore(settings.queue_path)
        self.players = PlayerRegistry(engine=self.engine, router=self.router, store=self.store)
        self.metrics = GatewayMetrics()
        self.metrics.add_source(self._metric_families)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Load stored queues and start reading the engine socket."""
        restored = await self.players.load()
        if restored:
            log.info("restored %d stored queues", restored)
        task = asyncio.get_running_loop().create_task(self.socket.run(), name="engine-socket")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop players and the socket client, close the store. Idempotent."""
        await self.players.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.aclose()
        self.store.close()

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
