"""The front's handle on one worker process: spawn it, talk to it, notice its death.

A worker is started as its own process (in its own session, so a terminal's Ctrl-C
reaches only the front, which stops the workers in order) with one end of a
``socketpair`` as its channel. The first message on the channel is the ``configure``
notice with the engine's settings and the worker's number; from then on the worker
reports every half second and sends its ticks as batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from audio_engine.cluster.channel import Batch, encode_cast
from audio_engine.cluster.peer import Peer
from audio_engine.cluster.reports import WorkerReport

__all__ = ["WORKER_FD_ENV", "FrontSide", "WorkerProcess"]

log = logging.getLogger(__name__)

#: Environment variable naming the channel's file descriptor in a worker.
WORKER_FD_ENV = "AUDIOGATE_ENGINE_WORKER_FD"
#: Socket buffers of a channel: a few ticks of a busy worker in the kernel, so a
#: worker rarely waits on its front's read.
_CHANNEL_BUFFER = 4 * 1024 * 1024


class FrontSide(Protocol):
    """What a worker's messages reach in the front."""

    def worker_batch(self, worker: WorkerProcess, batch: Batch) -> None: ...

    def worker_events(self, worker: WorkerProcess, lines: bytes) -> None: ...

    def worker_report(self, worker: WorkerProcess, report: WorkerReport) -> None: ...

    def worker_forgot(self, worker: WorkerProcess, session_id: str) -> None: ...

    def worker_voice_event(self, worker: WorkerProcess, fields: dict[str, Any]) -> None: ...

    def worker_voice_closed(self, worker: WorkerProcess, session_id: str, code: int,
                            reason: str, by_remote: bool) -> None: ...

    async def run_job(self, job: dict[str, Any], caller: str) -> dict[str, Any]: ...

    def worker_lost(self, worker: WorkerProcess) -> None: ...


class WorkerProcess(Peer):
    """One worker process and its channel, seen from the front.

    Args:
        index: the worker's number (0 ..), stable across restarts.
        generation: how many workers had this number before (0 for the first).
        front: where its messages go.
    """

    def __init__(self, index: int, generation: int, front: FrontSide) -> None:
        super().__init__(f"worker {index}")
        self.index = index
        self.generation = generation
        self._front = front
        self.process: asyncio.subprocess.Process | None = None
        #: Its latest report (None until the first).
        self.report: WorkerReport | None = None
        #: Set with its first report: the worker runs and its clock ticks.
        self.started = asyncio.Event()
        #: Set when it started or its channel closed, whichever came first.
        self.settled = asyncio.Event()
        #: The front is stopping this worker on purpose (not a death to recover from).
        self.retiring = False
        self.handlers.update({
            "report": self._on_report,
            "forget": lambda session_id: front.worker_forgot(self, session_id),
            "voice_event": lambda fields: front.worker_voice_event(self, fields),
            "voice_closed": lambda *args: front.worker_voice_closed(self, *args),
            "resolve_job": front.run_job,
        })

    @property
    def alive(self) -> bool:
        return self.connected and not self.retiring

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def spawn(self, command: Sequence[str], configure: tuple[Any, ...],
                    env: dict[str, str] | None = None) -> None:
        """Start the process with *command* and send it ``configure(*configure)``.

        Raises:
            OSError: the process could not be started.
        """
        front_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (front_end, worker_end):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CHANNEL_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _CHANNEL_BUFFER)
        try:
            environment = {**(env if env is not None else os.environ),
                           WORKER_FD_ENV: str(worker_end.fileno())}
            self.process = await asyncio.create_subprocess_exec(
                *command, pass_fds=(worker_end.fileno(),), env=environment,
                stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            front_end.close()
            raise
        finally:
            worker_end.close()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: self, front_end)
        self.write(encode_cast("configure", configure))

    def _on_report(self, report: WorkerReport) -> None:
        self.report = report
        if report.last_tick_at is not None:
            self.started.set()
            self.settled.set()
        self._front.worker_report(self, report)

    def on_batch(self, batch: Batch) -> None:
        self._front.worker_batch(self, batch)

    def on_events(self, lines: bytes) -> None:
        self._front.worker_events(self, lines)

    def on_lost(self, exc: Exception | None) -> None:
        self.settled.set()
        self._front.worker_lost(self)

    def kill(self) -> None:
        """SIGKILL the process (a worker that does not stop in time)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def wait(self, within: float) -> int | None:
        """Wait for the process to exit (killing it after *within* seconds); its exit
        code."""
        if self.process is None:
            return None
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            self.kill()
            return await self.process.wait()


#: Builds a worker's command line (the composition root's choice).
WorkerCommand = Callable[[], Sequence[str]]
