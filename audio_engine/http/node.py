"""The engine as a node: ``/health``, ``/ready``, ``/stats``, ``/metrics`` and the
session list (``/sessions``, ``/sessions/{id}``)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from audio_engine.cluster.front import Front, SessionNotFound
from audio_engine.http.bodies import SessionId
from audio_engine.http.gojson import GoJSONResponse

__all__ = ["node_router"]


def node_router(front: Front) -> APIRouter:
    """The node endpoints of *front*."""
    router = APIRouter()

    @router.get("/health", summary="Liveness and engine statistics")
    async def health() -> Response:
        return GoJSONResponse(await front.overview.health())

    @router.get("/ready", summary="Readiness: 200 when the engine can take work, else 503 "
                "with the reasons")
    async def ready() -> Response:
        reasons = front.readiness()
        if reasons:
            return GoJSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return GoJSONResponse({"status": "ready", "reasons": []})

    @router.get("/stats", summary="Node statistics in Lavalink's shape (frameStats per minute)")
    async def stats() -> Response:
        return GoJSONResponse(await front.overview.stats())

    @router.get("/sessions", summary="Every session with state, position and counters")
    async def list_sessions() -> Response:
        return GoJSONResponse({"sessions": await front.overview.views()})

    @router.get("/sessions/{session_id}", summary="One session with state, position, counters")
    async def one_session(session_id: SessionId) -> Response:
        view = await front.calls.view(session_id)
        if view is None:
            raise SessionNotFound(session_id)
        return GoJSONResponse(view)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(await front.overview.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return router
