"""An engine worker process (started by the engine's front, never by hand).

The front starts ``python -m audiogate.engine_worker`` with one end of a
``socketpair`` (its number in ``AUDIOGATE_ENGINE_WORKER_FD``). The first message on
it is ``configure(settings, index, complexity, go_style, codec_threads, calibrate)``;
the worker then builds its ``Engine`` with the channel as its hub (timing the bare
codec pipeline first when asked to), reports every half second, and runs
until the front asks it to ``shutdown`` or the channel closes (the front stopped or
died: a worker never outlives its front, and ``PR_SET_PDEATHSIG`` kills it if the
front is killed).

The worker runs in its own session (a terminal's Ctrl-C goes to the front, which
stops the workers in order); SIGTERM sent to it directly stops it at once, as a
crash would (the front moves its sessions).

Its codec, read and open threads run at a lower priority than its event loop (the
20 ms clock): a worker's own decoding must never delay its ticks.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from typing import Any

from audio_engine.audio.codec import ComplexityDial
from audio_engine.cluster.channel import ChannelReader, Kind
from audio_engine.cluster.voice import VoicePlayers, VoiceRouting
from audio_engine.cluster.worker import RemoteJobs, WorkerLink, WorkerService
from audio_engine.cluster.workers import WORKER_FD_ENV
from audio_engine.engine import Engine
from audio_engine.metrics import EngineMetrics
from audio_engine.settings import EngineSettings
from audio_engine.sources.proxy_env import scrub_proxy_environment
from audio_engine.sources.resolve_pool import WorkerLimits
from audiogate.config import start_logging
from audiogate.errors import EXIT_CONFIG
from audiogate.process import add_runtime_metrics, raise_open_file_limit, run_process
from audiogate.scheduling import RealtimeClock
from lifecycle import Process, declare
from protocol import NEED_DATA

__all__ = ["main", "serve_worker"]

log = logging.getLogger(__name__)

_GROUP = "`engine_worker` task group"
WORKER_ENGINE = declare(
    "worker-engine", owner=_GROUP, process=Process.WORKER,
    what="the worker's engine: its clock, idle reaper and reports (`Engine.run`)",
    ends="the front's `shutdown` call (sessions end first), or the channel closes")
WORKER_CHANNEL = declare(
    "worker-channel", owner=_GROUP, process=Process.WORKER,
    what="waiting for the front to close the channel (it stopped, or died)",
    ends="the channel closes: the engine stops")
WORKER_STOP = declare(
    "worker-stop", owner=_GROUP, process=Process.WORKER,
    what="waiting for a signal to the worker itself (it then exits as a crash would: "
         "the front moves its sessions)",
    ends="SIGTERM/SIGINT, or the worker stops")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the channel's end stops us
        pass


def _read_configure(sock: socket.socket) -> tuple[Any, ...]:
    """Block until the front's ``configure`` notice arrives; its arguments."""
    reader = ChannelReader()
    while True:
        data = sock.recv(65536)
        if not data:
            raise SystemExit(1)  # the front went away before configuring us
        reader.receive_data(data)
        message = reader.next_message()
        if message is not NEED_DATA:
            assert isinstance(message, tuple)
            kind, (method, args) = message
            if kind is not Kind.CAST or method != "configure":
                raise SystemExit(f"engine worker: expected configure, got {method}")
            if reader.buffered:
                raise SystemExit("engine worker: data after configure")
            return tuple(args)


async def serve_worker(settings: EngineSettings, index: int, complexity: int,
                       go_style: bool, codec_threads: int, calibrate: bool,
                       channel: socket.socket, stop: asyncio.Event) -> None:
    """Run one worker on *channel* until the front stops it (``shutdown``: every
    session ends with ``finished``), the channel closes (the front is gone), or
    *stop* is set (a signal: the worker leaves its sessions as a crash would, and the
    front moves them)."""
    link = WorkerLink(EngineMetrics())
    link.handlers["consumers"](go_style)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: link, channel)
    # Lavalink players' voice connections; their sessions' event lines go to the
    # front as notices, not to the socket consumers.
    voices = VoicePlayers(link)
    engine = Engine(settings, hub=VoiceRouting(link, voices),
                    jobs=RemoteJobs(link, WorkerLimits(deadline=settings.resolve_timeout)),
                    complexity=ComplexityDial(complexity),
                    codec_threads=codec_threads)
    engine.clock_scheduling = RealtimeClock(settings.clock_priority).start()
    log.info("engine worker %d clock thread: %s", index, engine.clock_scheduling)
    link.use_metrics(engine.metrics)
    # Added up with the front's (CPU, memory): /metrics describes the whole engine.
    add_runtime_metrics(engine.metrics.registry)
    service = WorkerService(engine, link, index=index, voices=voices)
    await engine.start(calibrate=calibrate)
    try:
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(engine.run(service.report), name=WORKER_ENGINE.name)
            lost = tasks.create_task(link.lost(), name=WORKER_CHANNEL.name)
            halted = tasks.create_task(stop.wait(), name=WORKER_STOP.name)
            done, _ = await asyncio.wait({running, lost, halted},
                                         return_when=asyncio.FIRST_COMPLETED)
            if halted not in done:
                await engine.stop()
            running.cancel()
            lost.cancel()
            halted.cancel()
    finally:
        await engine.close_now()
        await voices.close_all()
        await link.aclose()
    log.info("engine worker %d stopped", index)


def main() -> int:
    """The worker process; returns its exit code."""
    _die_with_parent()
    # The front started us without proxy variables; scrub again in case someone else
    # did not (FFmpeg would follow them around the egress proxy).
    scrub_proxy_environment()
    fd = os.environ.get(WORKER_FD_ENV, "")
    if not fd.isdigit():
        print(f"error: {WORKER_FD_ENV} is not set: engine workers are started by the "
              "engine (python -m audio_engine)", file=sys.stderr)
        return EXIT_CONFIG
    channel = socket.socket(fileno=int(fd))
    settings, index, complexity, go_style, codec_threads, calibrate = _read_configure(channel)
    assert isinstance(settings, EngineSettings)
    start_logging(EngineSettings, settings.log_level, settings.log_json)
    raise_open_file_limit()
    sys.setswitchinterval(0.001)

    async def run(stop: asyncio.Event) -> None:
        await serve_worker(settings, index, complexity, go_style, codec_threads, calibrate,
                           channel, stop)

    return run_process(run, name=f"engine worker {index}", exit_deadline=1.0)


if __name__ == "__main__":
    sys.exit(main())
