"""The engine process (``python -m audio_engine``, ``audiogate engine``): its front.

Start-up, in order: parse settings; bind the HTTP port and the Unix socket
(any problem is one ``error:`` line naming the setting, exit code 78, with
nothing left behind); build the front (and, with ``LAVALINK_SERVER_PASSWORD``, the
Lavalink node on the same HTTP port) and start its worker processes
(``audiogate.engine_worker``, ``ENGINE_WORKERS`` of them) and wait until every one
ticks; start accepting socket consumers and the HTTP server, all owned by one task
group; print ``ENGINE READY`` once both sockets accept.

Shutdown on SIGTERM/SIGINT, in order, under ``ENGINE_SHUTDOWN_TIMEOUT``: stop
accepting HTTP requests and finish those in flight, kill the resolution workers,
end every session in every worker (``finished`` events go out), stop the workers,
flush and close the consumer connections, remove the socket file. Past the
deadline the rest is cut short (workers are killed) and the socket file is still
removed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys

from audio_engine.cluster.front import Front
from audio_engine.http.api import create_app
from audio_engine.lavalink import LavalinkNode
from audio_engine.settings import EngineSettings
from audio_engine.sources.proxy_env import scrub_proxy_environment
from audiogate.config import load_settings, setting_name, start_logging
from audiogate.errors import EXIT_CONFIG, StartupError
from audiogate.listeners import UnixListener, bind_tcp, bind_unix
from audiogate.process import (
    add_runtime_metrics,
    raise_open_file_limit,
    run_process,
    watching_supervisor,
)
from audiogate.scheduling import RealtimeClock
from audiogate.serving import HttpService
from lifecycle import Process, declare

__all__ = ["WORKER_COMMAND", "main", "serve_engine", "tls_context"]

log = logging.getLogger(__name__)

_GROUP = "`engine_process` task group"
ENGINE_HTTP = declare(
    "engine-http", owner=_GROUP, process=Process.ENGINE,
    what="the engine's HTTP server",
    ends="first at shutdown (`HttpService.stop`; requests in flight get half the deadline)")
ENGINE_FRONT = declare(
    "engine-front", owner=_GROUP, process=Process.ENGINE,
    what="the front's load sampler and libopus complexity steps (`Front.run`)",
    ends="`Front.stop`, after every worker stopped")

#: Seconds worker threads get to end after the engine stopped (see run_process).
_THREAD_GRACE = 1.0
#: The command line of one engine worker process.
WORKER_COMMAND = (sys.executable, "-m", "audiogate.engine_worker")


def _bind(settings: EngineSettings
          ) -> tuple[socket.socket, UnixListener, socket.socket | None]:
    http = bind_tcp(settings.api_host, settings.go_api_port,
                    host_setting=setting_name(EngineSettings, "api_host"),
                    port_setting=setting_name(EngineSettings, "go_api_port"))
    tcp: socket.socket | None = None
    try:
        if settings.tcp_port is not None:
            tcp = bind_tcp(settings.tcp_host, settings.tcp_port,
                           host_setting=setting_name(EngineSettings, "tcp_host"),
                           port_setting=setting_name(EngineSettings, "tcp_port"))
        unix = bind_unix(settings.socket_path, settings.socket_mode_bits,
                         setting=setting_name(EngineSettings, "socket_path"))
    except StartupError:
        http.close()
        if tcp is not None:
            tcp.close()
        raise
    return http, unix, tcp


def tls_context(settings: EngineSettings) -> ssl.SSLContext | None:
    """The server TLS context of the TCP socket, or None without a certificate.

    Raises:
        StartupError: the certificate or key cannot be loaded (named by setting).
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    for path, field in ((settings.tls_cert, "tls_cert"), (settings.tls_key, "tls_key")):
        if not path.is_file():
            raise StartupError(f"the TLS file {path} does not exist; set "
                               f"{setting_name(EngineSettings, field)}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as exc:
        raise StartupError(
            "the TLS files are not a PEM certificate (chain) and its matching private key; "
            f"check {setting_name(EngineSettings, 'tls_cert')} and "
            f"{setting_name(EngineSettings, 'tls_key')}"
        ) from exc
    except OSError as exc:
        raise StartupError(
            f"cannot read the TLS files ({exc.strerror or exc}); check "
            f"{setting_name(EngineSettings, 'tls_cert')} and "
            f"{setting_name(EngineSettings, 'tls_key')}"
        ) from exc
    return context


async def serve_engine(settings: EngineSettings, stop: asyncio.Event, *,
                       worker_command: tuple[str, ...] = WORKER_COMMAND) -> None:
    """Run the engine until *stop* is set, then shut down in order.

    Raises:
        StartupError: a socket could not be bound, or a worker did not start
            (nothing is left running).
        BaseExceptionGroup: a long-lived task died (the rest were stopped).
    """
    tls = tls_context(settings)  # before binding: a bad file leaves nothing behind
    http_listener, unix, tcp = _bind(settings)
    try:
        front = Front(settings, worker_command=worker_command, workers=settings.workers)
        front.overview.clock_scheduling = RealtimeClock(settings.clock_priority).start()
        log.info("event loop thread: %s", front.overview.clock_scheduling)
        lavalink = LavalinkNode(
            front, player_update_interval=settings.lavalink_player_update_interval,
        ) if settings.lavalink_password else None
        http = HttpService(create_app(front, lavalink=lavalink), http_listener, name="engine",
                           request_timeout=settings.http_request_timeout,
                           graceful_timeout=settings.shutdown_timeout / 2)
        http.register_metrics(front.metrics.registry, "audiogate_engine")
        add_runtime_metrics(front.metrics.registry)
        try:
            try:
                await front.start(unix.sock, unix.path, tcp=tcp, tls=tls)
            except RuntimeError as exc:
                raise StartupError(f"{exc}; see the log above") from exc
            async with asyncio.TaskGroup() as tasks:
                running = tasks.create_task(front.run(), name=ENGINE_FRONT.name)
                server = tasks.create_task(http.serve(), name=ENGINE_HTTP.name)
                await http.started.wait()
                log.info("engine %s ready: http://%s:%d, socket %s, %d workers",
                         front.version, settings.api_host, http.port, unix.path,
                         front.worker_count)
                tcp_note = (f" {'tls' if tls else 'tcp'}://{front.hub.tcp_address}"
                            if front.hub.tcp_address else "")
                print(f"ENGINE READY http://{settings.api_host}:{http.port} {unix.path}"
                      f"{tcp_note}", file=sys.stderr, flush=True)
                await stop.wait()
                log.info("shutting down")
                try:
                    async with asyncio.timeout(settings.shutdown_timeout):
                        http.stop()
                        # Catalogue calls in flight get their answer now (503, the Go
                        # error body) instead of being cut off at the HTTP deadline.
                        await front.resolve_pool.close()
                        await server
                        if lavalink is not None:
                            await lavalink.close()
                        await front.stop()
                except TimeoutError:
                    log.error("shutdown took longer than %.1f s; stopping now",
                              settings.shutdown_timeout)
                    server.cancel()
                    running.cancel()
        finally:
            # After an overrun or a crash: what stop() did not get to.
            if lavalink is not None:
                await lavalink.close()
            await front.close_now()
    finally:
        http_listener.close()
        unix.close()
        if tcp is not None:
            tcp.close()
    log.info("engine stopped")


def main(argv: list[str] | None = None) -> int:
    """Parse settings (environment, then flags) and run until SIGTERM/SIGINT;
    returns the exit code (``audiogate.errors``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(EngineSettings, args)
        start_logging(EngineSettings, settings.log_level, settings.log_json)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    raise_open_file_limit()
    ignored = scrub_proxy_environment()  # before any thread: FFmpeg reads them at each open
    if ignored:
        log.warning("ignoring %s: every connection the engine makes goes through its "
                    "egress proxy, which connects directly", ", ".join(ignored))
    # A short GIL switch interval lets the clock thread take the GIL back from
    # busy codec threads within ~1 ms instead of 5 ms.
    sys.setswitchinterval(0.001)

    async def run(stop: asyncio.Event) -> None:
        async with watching_supervisor(stop):
            await serve_engine(settings, stop)

    return run_process(run, name="engine", exit_deadline=_THREAD_GRACE)
