"""The gateway process (``python -m gateway``, ``audiogate gateway``).

Start-up, in order: parse settings; bind the HTTP port (a problem is one
``error:`` line naming the setting, exit code 78); build the gateway runtime,
its HTTP app, the playground on it, and the Discord bot when ``DISCORD_TOKEN``
is set; then run the runtime (engine socket, engine watch), the HTTP server and
the bot in one task group; print ``GATEWAY READY`` once the port accepts.

Shutdown on SIGTERM/SIGINT, in order, under ``GATEWAY_SHUTDOWN_TIMEOUT``: stop
accepting HTTP requests (tabs are closed), log the bot out of Discord (leaving
voice), stop the players and save their queues, close the engine connections.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from audiogate.config import load_settings, setting_name, start_logging
from audiogate.errors import EXIT_CONFIG, StartupError
from audiogate.listeners import bind_tcp
from audiogate.process import (
    add_runtime_metrics,
    raise_open_file_limit,
    run_process,
    watching_supervisor,
)
from audiogate.serving import HttpService
from bot import BotService
from gateway.app import create_app
from gateway.database import DatabaseError
from gateway.health import ReadinessCheck
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from lifecycle import declare
from playground_ws import mount_playground

__all__ = ["bind_gateway_port", "main", "serve_gateway"]

log = logging.getLogger(__name__)

_GROUP = "`gateway_process` task group"
GATEWAY_HTTP = declare(
    "gateway-http", owner=_GROUP,
    what="the gateway's HTTP server (health, metrics, the playground and its WebSockets)",
    ends="first at shutdown (tabs closed)")
GATEWAY_RUNTIME = declare(
    "gateway-runtime", owner=_GROUP,
    what="`Gateway.run`: the engine socket(s), watch, watchdog, housekeeping, positions",
    ends="`Gateway.stop`, after the players")
DISCORD_BOT = declare(
    "discord-bot", owner=_GROUP,
    what="the Discord bot (`BotService.run`: logs in, retries with the back-off)",
    ends="`BotService.close`: voice left, logged out")


def bind_gateway_port(settings: GatewaySettings) -> socket.socket:
    """The gateway's listening HTTP socket.

    Raises:
        StartupError: the port or host cannot be used.
    """
    return bind_tcp(settings.host, settings.port,
                    host_setting=setting_name(GatewaySettings, "host"),
                    port_setting=setting_name(GatewaySettings, "port"))


async def serve_gateway(
    settings: GatewaySettings,
    stop: asyncio.Event,
    *,
    listener: socket.socket | None = None,
    demo_tracks: dict[str, Path] | None = None,
    on_ready: Callable[[Gateway, int], None] | None = None,
    checks: tuple[ReadinessCheck, ...] = (),
) -> None:
    """Run the gateway until *stop* is set, then shut down in order.

    Args:
        listener: the HTTP socket, when the caller bound it already (it is
            closed here either way).
        demo_tracks: tracks the playground offers (``audiogate run``).
        on_ready: called with the runtime and the HTTP port once it accepts
            (``audiogate run`` adds its own metrics there).
        checks: extra readiness checks.

    Raises:
        StartupError: the port could not be bound, or a part could not start.
        BaseExceptionGroup: a long-lived task died (the rest were stopped).
    """
    http_listener = listener if listener is not None else bind_gateway_port(settings)
    try:
        gateway = _open_gateway(settings)
        try:
            bot = None
            if settings.discord_token is not None:
                bot = BotService(gateway, settings.discord_token.get_secret_value(),
                                 sync_guild=settings.discord_guild_id)
                checks = (*checks, bot.readiness)
            else:
                log.info("Discord bot disabled: DISCORD_TOKEN is not set")
            app = create_app(gateway, checks=checks)
            try:
                mount_playground(app, gateway, demo_tracks=demo_tracks or {})
            except OSError as exc:
                raise StartupError(
                    f"cannot keep the playground's cookie secret in {settings.data_dir} "
                    f"({exc.strerror or exc}); set {setting_name(GatewaySettings, 'data_dir')} "
                    f"or {setting_name(GatewaySettings, 'cookie_secret')}") from exc
            http = HttpService(app, http_listener, name="gateway",
                               request_timeout=settings.http_request_timeout,
                               graceful_timeout=settings.shutdown_timeout / 3, lifespan=True,
                               ws_max_message_bytes=settings.ws_max_message_bytes,
                               ws_message_timeout=settings.ws_message_timeout)
            http.register_metrics(gateway.metrics.registry, "audiogate_gateway")
            add_runtime_metrics(gateway.metrics.registry)
            await _run(settings, stop, gateway, http, bot, on_ready)
        finally:
            await gateway.stop()  # idempotent: after a failed start, a crash or an overrun
    finally:
        http_listener.close()
    log.info("gateway stopped")


def _open_gateway(settings: GatewaySettings) -> Gateway:
    try:
        return Gateway(settings)
    except DatabaseError as exc:
        raise StartupError(
            f"{exc}; set {setting_name(GatewaySettings, 'queue_db')} or "
            f"{setting_name(GatewaySettings, 'data_dir')}") from exc
    except (OSError, sqlite3.Error) as exc:
        raise StartupError(
            f"cannot open the queue database {settings.queue_path} ({exc}); set "
            f"{setting_name(GatewaySettings, 'queue_db')} or "
            f"{setting_name(GatewaySettings, 'data_dir')}") from exc


async def _run(settings: GatewaySettings, stop: asyncio.Event, gateway: Gateway,
               http: HttpService, bot: BotService | None,
               on_ready: Callable[[Gateway, int], None] | None) -> None:
    async with asyncio.TaskGroup() as tasks:
        await gateway.prepare()
        runtime = tasks.create_task(gateway.run(), name=GATEWAY_RUNTIME.name)
        server = tasks.create_task(http.serve(), name=GATEWAY_HTTP.name)
        discord_task = None
        if bot is not None:
            discord_task = tasks.create_task(bot.run(), name=DISCORD_BOT.name)
            log.info("Discord bot starting")
        await http.started.wait()
        url = f"http://{settings.host}:{http.port}/"
        log.info("gateway ready: playground at %s", url)
        if on_ready is not None:
            on_ready(gateway, http.port)
        print(f"GATEWAY READY {url}", flush=True)
        await stop.wait()
        log.info("gateway shutting down")
        try:
            async with asyncio.timeout(settings.shutdown_timeout):
                http.stop()
                await server
                if bot is not None:
                    await bot.close()
                await gateway.stop()
        except TimeoutError:
            log.error("gateway shutdown took longer than %.1f s; stopping now",
                      settings.shutdown_timeout)
            for task in (server, discord_task, runtime):
                if task is not None:
                    task.cancel()


def main(argv: list[str] | None = None) -> int:
    """Parse settings (environment, then flags) and run until SIGTERM/SIGINT;
    returns the exit code (``audiogate.errors``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(GatewaySettings, args)
        start_logging(GatewaySettings, settings.log_level, settings.log_json)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    raise_open_file_limit()

    async def run(stop: asyncio.Event) -> None:
        async with watching_supervisor(stop):
            await serve_gateway(settings, stop)

    return run_process(run, name="gateway", exit_deadline=1.0)
