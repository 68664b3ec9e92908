"""The engine as a supervised child of ``audiogate run``.

``EngineChild.run`` starts ``python -m audio_engine``, waits until its
``/ready`` answers 200, and when the child dies starts it again after a
doubling delay (1 s up to 30 s; back to 1 s once a child has stayed up for a
minute), counted and logged. Each child is awaited, so none is left a zombie.
Two endings are for the stack's own supervisor to handle:

* a child that exits with code 78 could not start because of a setting (its
  ``error:`` line is already on stderr): restarting cannot help, so the stack
  stops with ``StartupError`` (exit code 78);
* more than ``max_restarts`` deaths in a row: the stack stops with ``GaveUp``
  (exit code 69), and systemd or the container runtime decides what next.

The child runs in its own session, so a Ctrl-C in the terminal reaches the
stack alone, which stops the gateway first and the engine last. The child is
told the stack's pid (``AUDIOGATE_SUPERVISOR_PID``) and stops by itself if the
stack disappears without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence

import httpx
from prometheus_client.core import Metric

from audiogate.errors import EXIT_CONFIG, GaveUp, StartupError
from audiogate.process import SUPERVISOR_PID_ENV
from gateway.metrics import counter, gauge
from lifecycle import Backoff, Process, TaskOwner, declare

__all__ = ["EngineChild", "describe_exit"]

log = logging.getLogger(__name__)

READY_WATCH = declare(
    "engine-ready-watch", owner="EngineChild", process=Process.STACK,
    what="polling a new engine child's `/ready` (killed if not ready in time)",
    ends="ready, killed, or the child exits (cancelled and awaited)")

#: Seconds between ``/ready`` probes while a child starts.
_READY_POLL = 0.1


def describe_exit(code: int) -> str:
    """``code 1`` or ``signal SIGKILL`` (asyncio reports a signal as -signum)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class EngineChild:
    """Keeps one engine child process running.

    Args:
        env: the child's environment (its settings).
        url: the child's API base URL, for ``/ready``.
        max_restarts: deaths in a row tolerated before giving up.
        start_timeout: seconds a child has to become ready before it is killed
            (and counted as a death).
        stop_timeout: seconds a child gets after SIGTERM before SIGKILL.
        backoff_initial, backoff_max: delay before a restart, doubling.
        stable_after: seconds up after which a child's death is not "in a row".
        command: the child's command line.
    """

    def __init__(
        self,
        env: dict[str, str],
        url: str,
        *,
        max_restarts: int = 5,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        command: Sequence[str] = (sys.executable, "-m", "audio_engine"),
    ) -> None:
        self.env = {**env, SUPERVISOR_PID_ENV: str(os.getpid())}
        self.url = url
        self.max_restarts = max_restarts
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        #: Delays before a restart: doubling, back to the first after a stable run.
        self.backoff = Backoff(backoff_initial, cap=backoff_max)
        self.stable_after = stable_after
        self.command = list(command)
        #: Set while the current child answers ``/ready``.
        self.ready = asyncio.Event()
        #: Children started after the first one.
        self.restarts = 0
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()

    @property
    def pid(self) -> int | None:
        """The current child's pid."""
        return self.process.pid if self.process is not None else None

    async def run(self) -> None:
        """Run and restart the child until ``stop``.

        Raises:
            StartupError: a child exited with code 78 (a setting is wrong).
            GaveUp: more than ``max_restarts`` deaths in a row.
        """
        loop = asyncio.get_running_loop()
        in_a_row = 0
        while not self._stopping.is_set():
            started = loop.time()
            code = await self._run_once()
            if self._stopping.is_set():
                return
            if code == EXIT_CONFIG:
                raise StartupError("the engine could not start (its error is above)")
            if loop.time() - started > self.stable_after:
                self.backoff.reset()
                in_a_row = 0
            in_a_row += 1
            if in_a_row > self.max_restarts:
                times = "once" if in_a_row == 1 else f"{in_a_row} times in a row"
                raise GaveUp(f"the engine died {times} (last: {describe_exit(code)}) and "
                             f"the restart limit is {self.max_restarts}; giving up")
            self.restarts += 1
            delay = self.backoff.next()
            log.error("the engine exited with %s after %.1f s; restarting it in %.1f s "
                      "(restart %d)", describe_exit(code), loop.time() - started, delay,
                      self.restarts)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _run_once(self) -> int:
        """Start one child, wait for it to become ready and then to exit;
        returns its exit code (asyncio's: negative for a signal)."""
        process = self.process = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, start_new_session=True)
        log.info("engine started (pid %d)", process.pid)
        watch = TaskOwner(READY_WATCH.owner, logger=log)
        watch.spawn(READY_WATCH, self._watch_start(process))
        try:
            return await process.wait()
        finally:
            self.ready.clear()
            await watch.aclose()
            if process.returncode is None:  # cancelled: never leave it behind
                await self._terminate(process)

    async def _watch_start(self, process: asyncio.subprocess.Process) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0,
                                     trust_env=False) as client:
            try:
                async with asyncio.timeout(self.start_timeout):
                    while True:
                        with contextlib.suppress(httpx.HTTPError):
                            if (await client.get("/ready")).status_code == 200:
                                break
                        await asyncio.sleep(_READY_POLL)
            except TimeoutError:
                log.error("the engine (pid %d) did not become ready in %.0f s; killing it",
                          process.pid, self.start_timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                return
        log.info("engine ready (pid %d)", process.pid)
        self.ready.set()

    async def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``stop_timeout``) and
        make ``run`` return. Idempotent."""
        self._stopping.set()
        if self.process is not None:
            await self._terminate(self.process)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await process.wait()
            except TimeoutError:
                log.error("the engine (pid %d) did not stop in %.0f s; killing it",
                          process.pid, self.stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    def metric_families(self) -> Iterable[Metric]:
        """The supervisor's metrics (added to the gateway's ``/metrics``)."""
        yield counter("audiogate_stack_engine_restarts",
                      "Times audiogate run restarted the engine after it died", self.restarts)
        yield gauge("audiogate_stack_engine_ready", "1 while the engine child answers /ready",
                    int(self.ready.is_set()))
