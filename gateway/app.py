"""The gateway's own HTTP endpoints: liveness, readiness and metrics.

``create_app`` builds the FastAPI app the fronts mount their routes on; which
fronts are mounted is decided by the composition root (``audiogate``), never
here. ``/health`` answers 200 while the process serves (liveness), with
``ready`` and the counters; ``/ready`` answers 200 only when the engine socket
is connected, the engine's API answers and every extra check (the Discord login,
when a token is set) passes, else 503 with the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from gateway.health import ReadinessCheck
from gateway.nodes.admin import mount_admin
from gateway.runtime import Gateway

__all__ = ["create_app", "readiness"]


def readiness(gateway: Gateway, checks: Sequence[ReadinessCheck] = ()) -> list[str]:
    """Why the gateway is not ready (empty: ready): its own parts, then *checks*."""
    reasons = gateway.readiness()
    for check in checks:
        if (problem := check()) is not None:
            reasons.append(problem)
    return reasons


def create_app(gateway: Gateway, *, checks: Sequence[ReadinessCheck] = ()) -> FastAPI:
    """The gateway's HTTP app; *checks* are extra readiness checks (fronts)."""
    app = FastAPI(title="audiogate gateway", docs_url="/api/docs",
                  openapi_url="/api/openapi.json")

    @app.get("/health", summary="Liveness, readiness and routing counters")
    async def health() -> dict[str, Any]:
        reasons = readiness(gateway, checks)
        return {"status": "ok", "ready": not reasons, "not_ready": reasons, **gateway.stats()}

    @app.get("/ready", summary="200 when the gateway can serve, else 503 with the reasons")
    async def ready() -> JSONResponse:
        reasons = readiness(gateway, checks)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    token = gateway.settings.admin_token
    mount_admin(app, gateway.pool, token.get_secret_value() if token is not None else None)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return app
