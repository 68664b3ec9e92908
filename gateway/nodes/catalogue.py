"""Catalogue calls (metadata, playlists, search, health) of a pool: any node will do.

Fronts ask ``gateway.engine`` for a URL's title or a search; with a pool those
calls are not tied to a session, so each goes to the node placement would pick
now (the least loaded usable one), or to any node that is up.
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.engine_client import EngineClient, EngineUnavailable
from gateway.nodes.pool import NO_NODE, NodePool

__all__ = ["PoolCatalogue"]


class PoolCatalogue(EngineClient):
    """An ``EngineClient`` whose every request goes to one of the pool's nodes."""

    def __init__(self, pool: NodePool) -> None:
        super().__init__("http://engine-nodes.invalid", retries=0)
        self._pool = pool

    async def _request(self, method: str, path: str, *, seconds: float | None = None,
                       idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        node = self._pool.best() or next((n for n in self._pool.nodes if n.up), None)
        if node is None:
            raise EngineUnavailable("the audio engine is unreachable", detail=NO_NODE)
        return await node.client._request(method, path, seconds=seconds,
                                          idempotent=idempotent, **kwargs)
