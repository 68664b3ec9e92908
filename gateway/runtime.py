"""The gateway's parts wired together: what both fronts share.

``Gateway`` owns the router, the socket client (and its reconnect task), the
engine API client, the queue store and the players. Fronts (the playground, the
Discord bot) register sinks with ``router`` and drive ``players``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.engine_client import EngineClient
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
