"""Resolution workers: yt-dlp and probes run in child processes that can be killed.

A Python thread cannot be stopped: ``asyncio.wait_for`` around a thread only
stops *waiting* for it, and the thread goes on reading whatever page it was
given (an endless one: until memory runs out) and keeps the process from
exiting. So every resolution runs in a worker process (``resolve_worker.py``):

* a job holds one of the engine's fair slots (``fair.py``): at most
  ``slots`` jobs run at once, at most ``per_caller`` for one caller;
* it has a hard deadline: past it, or when its caller gives up (the task is
  cancelled), the worker is killed (SIGKILL) and a fresh one is started for the
  next job; a slow or hostile URL costs one slot for at most its deadline;
* workers cap their own memory, download through the egress proxy with the
  job's own byte cap, and die with the engine (``PR_SET_PDEATHSIG``);
* idle workers are kept for ``idle_exit`` seconds (starting one costs ~0.4 s
  of CPU for Python and yt-dlp) and replaced after ``recycle_after`` jobs.

``close()`` kills every worker at once, so shutdown never waits for a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audio_engine.sources.fair import FairSlots, SlotsBusy
from audio_engine.sources.proxy_env import scrub_proxy_environment
from lifecycle import Process, TaskOwner, declare

__all__ = ["JobFailed", "JobTimedOut", "ResolvePool", "WorkerLimits"]

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The job did not produce an answer; ``str()`` says why, for the user."""


class JobTimedOut(JobFailed):
    """The job passed its deadline and its worker was killed."""


class PoolClosed(JobFailed):
    """The pool was closed (the engine is shutting down): the job's worker was
    killed, or the job came too late to start."""


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """Bounds of the worker processes."""

    #: Jobs running at once (one worker process each).
    slots: int = 8
    #: Of those, most for one caller.
    per_caller: int = 4
    #: Requests one caller may have waiting for a slot.
    max_waiting: int = 32
    #: Seconds a job may run before its worker is killed.
    deadline: float = 20.0
    #: Seconds a request may wait for a slot before it is refused.
    queue_wait: float = 20.0
    #: Data memory of one worker (RLIMIT_DATA), megabytes.
    memory_mb: int = 512
    #: Longest answer line accepted from a worker; results are trimmed to far
    #: less (500 playlist entries of a few hundred bytes).
    answer_bytes: int = 4 * 1024 * 1024
    #: Seconds an idle worker is kept.
    idle_exit: float = 60.0
    #: Jobs after which a worker is replaced (keeps a long-lived worker's
    #: memory from creeping).
    recycle_after: int = 200


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    jobs: int = 0
    idle_since: float = field(default_factory=time.monotonic)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    scrub_proxy_environment(env)  # every spelling: the egress proxy is the only way out
    return env


_OWNER = "ResolvePool (the front's)"
REAPER = declare(
    "resolve-pool-reaper", owner=_OWNER, process=Process.ENGINE,
    what="stopping resolution worker processes idle for 60 s",
    ends="`ResolvePool.close`, first at shutdown (every worker killed)")
COLLECT = declare(
    "resolve-collect-{key}", owner=_OWNER, process=Process.ENGINE,
    what="collecting a killed resolution worker process (its exit status)",
    ends="the process is gone; awaited (2 s at most) by `ResolvePool.close`")


async def _collect(process: asyncio.subprocess.Process) -> None:
    await process.wait()


class ResolvePool:
    """Runs jobs on worker processes (see the module docstring).

    Args:
        limits: the bounds above.
        command: the worker's command line (default: this Python, the module).
        on_outcome: called with "ok", "error", "timeout", "busy", "crashed" or
            "cancelled" after each job, for metrics.
    """

    def __init__(self, limits: WorkerLimits, *, command: list[str] | None = None,
                 on_outcome: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self._command = command or [sys.executable, "-m", "audio_engine.sources.resolve_worker",
                                    "--memory-mb", str(limits.memory_mb)]
        self._slots = FairSlots(limits.slots, limits.per_caller, limits.max_waiting)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._tasks = TaskOwner(_OWNER, logger=log)
        self._reaper: asyncio.Task[None] | None = None
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._closed = False
        #: Workers started and killed over the pool's life (for /health).
        self.started = 0
        self.killed = 0

    @property
    def workers(self) -> int:
        """Worker processes alive now."""
        return len(self._idle) + len(self._busy)

    @property
    def running(self) -> int:
        """Jobs running now."""
        return self._slots.held

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot now."""
        return self._slots.waiting

    async def run(self, job: dict[str, Any], *, caller: str) -> dict[str, Any]:
        """Run *job* on a worker for *caller*; returns the worker's answer
        (``{"ok": ..., "result" | "error": ...}``).

        Raises:
            JobTimedOut: past the deadline (the worker was killed).
            JobFailed: no slot came in time, or the worker died or misbehaved.
        Cancelling is safe: the worker running the job is killed.
        """
        if self._closed:
            raise PoolClosed("the engine is shutting down")
        try:
            async with self._slots.hold(caller, wait=self.limits.queue_wait):
                return await self._on_worker(job)
        except SlotsBusy as exc:
            self._on_outcome("busy")
            raise JobFailed("the engine is busy resolving other URLs; try again") from exc

    async def _on_worker(self, job: dict[str, Any]) -> dict[str, Any]:
        worker = self._idle.pop() if self._idle else await self._spawn()
        self._busy.add(worker)
        finished = False
        try:
            answer = await self._exchange(worker, job)
            finished = True
        except asyncio.CancelledError:
            self._on_outcome("cancelled")
            raise
        finally:
            self._busy.discard(worker)
            if finished and worker.jobs < self.limits.recycle_after and not self._closed:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
            else:
                self._kill(worker)
        self._on_outcome("ok" if answer.get("ok") else "error")
        return answer

    async def _exchange(self, worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
        process = worker.process
        assert process.stdin is not None and process.stdout is not None
        worker.jobs += 1
        try:
            async with asyncio.timeout(self.limits.deadline):
                process.stdin.write(json.dumps(job).encode() + b"\n")
                await process.stdin.drain()
                line = await process.stdout.readline()
        except TimeoutError as exc:
            self._on_outcome("timeout")
            raise JobTimedOut(f"timed out after {self.limits.deadline:g} s") from exc
        except (ValueError, asyncio.LimitOverrunError) as exc:
            self._on_outcome("crashed")
            raise JobFailed("the answer was too large") from exc
        except (ConnectionError, BrokenPipeError):
            line = b""
        if not line and self._closed:  # killed by close(): not the page's doing
            self._on_outcome("cancelled")
            raise PoolClosed("the engine is shutting down")
        if not line:
            self._on_outcome("crashed")
            raise JobFailed("the resolver stopped (the page may need too much memory)")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self._on_outcome("crashed")
            raise JobFailed("the resolver answered nonsense")
        return answer

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=_worker_env(), limit=self.limits.answer_bytes,
        )
        self.started += 1
        if self._reaper is None:
            self._reaper = self._tasks.spawn(REAPER, self._reap_idle())
        return _Worker(process)

    def _kill(self, worker: _Worker) -> None:
        """SIGKILL *worker* (a job that cannot be interrupted otherwise) and
        collect it in the background."""
        process = worker.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self.killed += 1
        if process.stdin is not None:
            process.stdin.close()
        if not self._tasks.closed:
            self._tasks.spawn(COLLECT, _collect(process), key=str(process.pid))

    async def _reap_idle(self) -> None:
        interval = max(0.5, self.limits.idle_exit / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for worker in list(self._idle):
                if now - worker.idle_since >= self.limits.idle_exit:
                    self._idle.remove(worker)
                    self._kill(worker)

    async def close(self) -> None:
        """Kill every worker, running or idle, at once. Idempotent."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for worker in [*self._idle, *self._busy]:
            self._kill(worker)
        self._idle.clear()
        # Killed processes are collected within milliseconds; a wedged one is left
        # to the kernel after 2 s rather than holding the shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._tasks.join()
        await self._tasks.aclose()
