"""``audiogate run`` (``make run``): the whole stack on one machine, on a
bundled demo track.

In order: parse settings; bind the playground's port; render the demo track
(first run only); start the engine as a supervised child (``supervisor``) and
wait until it is ready; then run the gateway process's work in this process.
On Ctrl-C or SIGTERM the gateway stops first (queues are saved), the engine
last. While running, an engine that dies is restarted (see ``supervisor`` for
when the stack gives up, and its exit codes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from audio_engine.settings import EngineSettings
from audiogate.config import load_settings, setting_name, start_logging
from audiogate.demo import ensure_demo_tracks
from audiogate.errors import EXIT_CONFIG, StartupError
from audiogate.gateway_process import bind_gateway_port, serve_gateway
from audiogate.process import raise_open_file_limit, run_process
from audiogate.settings_help import env_name, settings_table
from audiogate.supervisor import EngineChild
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from lifecycle import Process, TaskOwner, declare

__all__ = ["StackSettings", "main", "run_stack"]

log = logging.getLogger(__name__)

ENGINE_SUPERVISOR = declare(
    "engine-supervisor", owner="`stack` task group", process=Process.STACK,
    what="the engine child process (`EngineChild.run`), restarted with the back-off",
    ends="`EngineChild.stop`: SIGTERM, SIGKILL after 10 s, always awaited")
FIRST_READY = declare(
    "first-ready-{key}", owner="run_stack", process=Process.STACK,
    what="waiting for the engine's first readiness or a stop, whichever comes first",
    ends="either of them (the other is cancelled and awaited)")


class StackSettings(GatewaySettings):
    """The gateway's settings, plus how audiogate run keeps its engine child up."""

    model_config = SettingsConfigDict(cli_prog_name="audiogate run")

    engine_max_restarts: int = Field(
        5,
        ge=0,
        description="under audiogate run: engine deaths in a row tolerated (each "
        "restarted after a doubling delay) before the stack exits with code 69 "
        "[env GATEWAY_ENGINE_MAX_RESTARTS]",
    )
    engine_start_timeout: float = Field(
        30.0,
        gt=0,
        description="under audiogate run: seconds the engine has to become ready "
        "[env GATEWAY_ENGINE_START_TIMEOUT]",
    )


#: Engine variables audiogate run sets from its own settings (the flag or the
#: variable the stack read), whatever its environment says.
_ENGINE_FROM_STACK = {
    "GO_API_PORT": "go_api_port",
    "SOCKET_PATH": "socket_path",
    "ENGINE_API_HOST": "engine_host",
}
#: Engine variables defaulted from the stack's settings when its environment
#: does not set them.
_ENGINE_DEFAULTS = {
    "ENGINE_LOG_LEVEL": "log_level",
    "ENGINE_MEDIA_DIR": "data_dir",
}


def _engine_environment(settings: StackSettings, data_dir: Path) -> dict[str, str]:
    """The engine child's environment: this process's own (so every engine
    variable set there reaches the child), with ``_ENGINE_FROM_STACK`` set and
    ``_ENGINE_DEFAULTS`` filled in. *data_dir* is ``settings.data_dir`` resolved."""
    values = {**settings.model_dump(), "data_dir": data_dir}
    env = {**os.environ}
    for variable, field in _ENGINE_FROM_STACK.items():
        env[variable] = str(values[field])
    for variable, field in _ENGINE_DEFAULTS.items():
        env.setdefault(variable, str(values[field]))
    return env


def _help_epilog() -> str:
    """What ``audiogate run --help`` says after the gateway's flags: what the
    engine child gets, and every engine setting it passes on."""
    def pairs(table: dict[str, str]) -> str:
        width = max(len(variable) for variable in table)
        return "\n".join(f"    {variable:<{width}} = {setting_name(StackSettings, field)}"
                         for variable, field in table.items())

    def flag_of(field: str) -> str:
        return setting_name(StackSettings, field).split(" ", 1)[1].strip("()")

    fixed = set(_ENGINE_FROM_STACK) | set(_ENGINE_DEFAULTS)
    passed = [field for field in EngineSettings.model_fields
              if env_name(EngineSettings, field) not in fixed]
    return (
        "the engine child:\n"
        "  audiogate run starts the engine (python -m audio_engine) with its own\n"
        "  environment: every engine setting listed below that is set there reaches\n"
        "  the engine unchanged. Set them as variables; the flags above are the\n"
        "  gateway's. ENGINE_API_TOKEN is read by both (the engine requires it, the\n"
        f"  gateway sends it); {flag_of('engine_token')} reaches the gateway only.\n"
        "  set by audiogate run from its own settings:\n"
        f"{pairs(_ENGINE_FROM_STACK)}\n"
        "  defaulted from its own settings when the environment does not set them:\n"
        f"{pairs(_ENGINE_DEFAULTS)}\n\n"
        "engine settings passed on to the child (python -m audio_engine --help\n"
        "says what each does):\n"
        f"{settings_table(EngineSettings, passed)}"
    )


def _banner(settings: StackSettings, port: int, tracks: dict[str, Path]) -> str:
    bot = ("starting (DISCORD_TOKEN is set)" if settings.discord_token
           else "off (set DISCORD_TOKEN to start it)")
    return (
        f"\n  open the playground:  http://{settings.host}:{port}/"
        "   (the demo track is in the URL box: press Play)"
        f"\n  engine API:           {settings.engine_url}   (docs at /docs)"
        f"\n  engine socket:        {settings.socket_path}"
        f"\n  demo track:           {tracks['opus']}"
        f"\n  Discord bot:          {bot}\n"
    )


async def run_stack(settings: StackSettings, stop: asyncio.Event) -> None:
    """Run engine and gateway until *stop* is set.

    Raises:
        StartupError: a port is in use, or the engine could not start.
        GaveUp: the engine kept dying.
    """
    listener = bind_gateway_port(settings)
    data_dir = settings.data_dir.resolve()
    engine = EngineChild(
        _engine_environment(settings, data_dir), settings.engine_url,
        max_restarts=settings.engine_max_restarts,
        start_timeout=settings.engine_start_timeout,
    )
    try:
        try:
            tracks = await asyncio.to_thread(ensure_demo_tracks, data_dir / "demo")
        except OSError as exc:
            raise StartupError(f"cannot write the demo track under {data_dir} "
                               f"({exc.strerror or exc}); set GATEWAY_DATA_DIR") from exc
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(engine.run(), name=ENGINE_SUPERVISOR.name)
            if await _first_ready(engine, stop):
                await _serve(settings, stop, listener, tracks, engine)
            await engine.stop()
    finally:
        listener.close()
        await engine.stop()  # idempotent; never leaves the child behind


async def _first_ready(engine: EngineChild, stop: asyncio.Event) -> bool:
    """Wait for the engine's first readiness; False if a stop came first."""
    waits = TaskOwner(FIRST_READY.owner, logger=log)
    ready = waits.spawn(FIRST_READY, engine.ready.wait(), key="ready")
    stopped = waits.spawn(FIRST_READY, stop.wait(), key="stop")
    try:
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await waits.aclose()
    return engine.ready.is_set()


async def _serve(settings: StackSettings, stop: asyncio.Event, listener: socket.socket,
                 tracks: dict[str, Path], engine: EngineChild) -> None:
    def ready(gateway: Gateway, port: int) -> None:
        gateway.metrics.add_source(engine.metric_families)
        print(_banner(settings, port, tracks), flush=True)

    await serve_gateway(settings, stop, listener=listener, demo_tracks=tracks, on_ready=ready)


def main(argv: list[str] | None = None) -> int:
    """Run engine + gateway until interrupted; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(StackSettings, args, epilog=_help_epilog())
        start_logging(StackSettings, settings.log_level, settings.log_json)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    raise_open_file_limit()

    async def run(stop: asyncio.Event) -> None:
        await run_stack(settings, stop)

    return run_process(run, name="audiogate run", exit_deadline=1.0)


if __name__ == "__main__":
    sys.exit(main())
