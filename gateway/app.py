"""The gateway process: the shared runtime, its HTTP server, and the fronts.

``run_gateway`` starts the ``Gateway`` (router, socket client, players), serves
the gateway's HTTP app (the playground, ``/health``, ``/metrics``) with uvicorn,
starts the Discord bot when a token is configured, and shuts everything down in
order on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings

__all__ = ["create_app", "run_gateway"]

log = logging.getLogger(__name__)


def create_app(gateway: Gateway, *, demo_tracks: dict[str, Path] | None = None) -> FastAPI:
    """The gateway's HTTP app."""
    app = FastAPI(title="audiogate gateway", docs_url="/api/docs", openapi_url="/api/openapi.json")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **gateway.stats()}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    try:
        from playground_ws import mount_playground
    except ImportError:  # the playground package is optional for a bot-only gateway
        mount_playground = None
    if mount_playground is not None:
        mount_playground(app, gateway, demo_tracks=demo_tracks or {})
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the gateway owns the order)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def run_gateway(
    settings: GatewaySettings,
    *,
    demo_tracks: dict[str, Path] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (or *stop*)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    gateway = Gateway(settings)
    await gateway.start()
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(create_app(gateway, demo_tracks=demo_tracks),
                                    log_config=None, access_log=False, lifespan="on"))
    http = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-http")
    bot = None
    if settings.discord_token is not None:
        from bot import start_bot

        bot = await start_bot(gateway, settings)
    else:
        log.info("Discord bot disabled: DISCORD_TOKEN is not set")
    url = f"http://{settings.host}:{port}/"
    log.info("gateway ready: playground at %s", url)
    print(f"GATEWAY READY {url}", flush=True)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({http, waiter}, return_when=asyncio.FIRST_COMPLETED)
    log.info("gateway shutting down")
    server.should_exit = True
    try:
        async with asyncio.timeout(10):
            if bot is not None:
                await bot.close()
            await asyncio.gather(http, return_exceptions=True)
            await gateway.stop()
    except TimeoutError:
        log.error("gateway shutdown took longer than 10 s")
    finally:
        waiter.cancel()
        sock.close()
