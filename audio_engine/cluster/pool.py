"""The front's worker processes: a fixed number of slots, each with its current
process; start, restart after a death (with a growing delay), stop, and the engine's
load summed over them.

A slot keeps what its earlier processes counted (CPU seconds, ticks, empty-ring
ticks), so the engine's counters only go up when a worker is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.reports import CLOCK_STALL_SECONDS
from audio_engine.cluster.workers import FrontSide, WorkerProcess
from audio_engine.sessions.admission import LOAD_INTERVAL, LoadSample
from lifecycle import Backoff

__all__ = ["WorkerPool", "silent_for", "ticking", "usable_cores"]

log = logging.getLogger(__name__)

#: Seconds before a dead worker is started again; doubles per death in a row, up to
#: ``_RESTART_MAX`` (a worker that dies at start-up must not spin).
_RESTART_DELAY: Final = 0.5
_RESTART_MAX: Final = 10.0
#: A worker that ran this long before dying restarts after the first delay again.
_STABLE_AFTER: Final = 60.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def silent_for(worker: WorkerProcess) -> float:
    """Seconds since *worker*'s clock last ticked, as far as the front knows (a
    worker whose loop stalls stops reporting too)."""
    report = worker.report
    if report is None or report.last_tick_at is None:
        return math.inf
    return time.monotonic() - report.last_tick_at


def ticking(worker: WorkerProcess) -> bool:
    """*worker*'s clock ticked recently."""
    return silent_for(worker) <= CLOCK_STALL_SECONDS + LOAD_INTERVAL


@dataclass(slots=True)
class _Slot:
    """One worker number: its current process, and its restart delay."""

    index: int
    worker: WorkerProcess | None = None
    generation: int = 0
    #: The delay before the next restart: 0.5 s doubling to 10 s while the slot keeps
    #: dying (a worker that dies at start-up must not spin); reset by a long life.
    backoff: Backoff = field(
        default_factory=lambda: Backoff(_RESTART_DELAY, cap=_RESTART_MAX, jitter=0.1))
    started_at: float = 0.0
    #: What this slot's earlier processes counted (each new one starts from zero).
    cpu_before: float = 0.0
    nulled_before: int = 0
    slipped_before: int = 0
    ticks_before: int = 0


class WorkerPool:
    """The worker processes of one front.

    Args:
        count: how many workers.
        command: a worker's command line.
        front: where the workers' messages go.
        configure: the ``configure`` arguments of a worker, by slot number and
            generation (the first process of a slot is generation 1).
        env: the workers' environment (default: the front's).
    """

    def __init__(self, count: int, command: Sequence[str], front: FrontSide,
                 configure: Callable[[int, int], tuple[Any, ...]],
                 env: dict[str, str] | None = None) -> None:
        self._slots = [_Slot(i) for i in range(count)]
        self._command = list(command)
        self._front = front
        self._configure = configure
        self._env = env
        #: Set whenever a worker starts ticking (sessions waiting to move wake up).
        self.changed = asyncio.Event()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def workers(self) -> list[WorkerProcess]:
        """The current process of every slot (alive or not)."""
        return [s.worker for s in self._slots if s.worker is not None]

    def live(self, *, started: bool = False) -> list[WorkerProcess]:
        """The workers whose channel is open (and, with *started*, that ticked)."""
        return [w for w in self.workers if w.alive and (not started or w.started.is_set())]

    def cast(self, method: str, *args: Any) -> None:
        """Send every live worker a notice."""
        for worker in self.live():
            worker.cast(method, *args)

    async def spawn(self, index: int) -> WorkerProcess:
        """Start slot *index*'s next process.

        Raises:
            OSError: the process could not be started.
        """
        slot = self._slots[index]
        slot.generation += 1
        worker = WorkerProcess(index, slot.generation, self._front)
        slot.worker = worker
        slot.started_at = time.monotonic()
        await worker.spawn(self._command, self._configure(index, slot.generation), env=self._env)
        log.info("engine worker %d started (pid %s)", index, worker.pid)
        return worker

    async def start(self, within: float) -> None:
        """Start every slot and wait until each worker ticks.

        Raises:
            RuntimeError: a worker exited at start-up or did not tick in time.
        """
        workers = await asyncio.gather(*(self.spawn(s.index) for s in self._slots))
        try:
            async with asyncio.timeout(within):
                for worker in workers:
                    await _started(worker)
        except TimeoutError:
            raise RuntimeError("an engine worker did not start in time") from None

    def noticed(self, worker: WorkerProcess) -> None:
        """*worker* reported (its first ticking report wakes moves waiting for one)."""
        if worker.report is not None and worker.report.last_tick_at is not None:
            self.changed.set()

    def lost(self, worker: WorkerProcess) -> bool:
        """*worker*'s channel closed: keep its counts; True if it died (rather than
        being stopped) and must be replaced."""
        slot = self._slots[worker.index]
        if slot.worker is not worker:
            return False
        if worker.report is not None:
            slot.cpu_before += worker.report.cpu_seconds
            slot.nulled_before += worker.report.nulled
            slot.slipped_before += worker.report.slipped
            slot.ticks_before += worker.report.ticks
        worker.report = None
        if worker.retiring or self.stopping:
            return False
        if time.monotonic() - slot.started_at > _STABLE_AFTER:
            slot.backoff.reset()
        return True

    async def restart(self, dead: WorkerProcess) -> None:
        """Replace *dead* after its slot's delay (growing while it keeps dying)."""
        slot = self._slots[dead.index]
        await dead.wait(within=2.0)
        await asyncio.sleep(slot.backoff.next())
        if not self.stopping:
            await self.spawn(slot.index)

    async def wait_live(self, within: float) -> bool:
        """Wait until some worker ticks (at most *within* seconds); whether one does."""
        try:
            async with asyncio.timeout(within):
                while not self.live(started=True):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True

    def sample(self) -> LoadSample:
        """The engine's load counters now: the front's CPU and every worker's, with
        what replaced workers had counted."""
        cpu = time.process_time()
        ticks = slipped = nulled = playing = 0
        lateness = pool_lag = 0.0
        for slot in self._slots:
            cpu += slot.cpu_before
            ticks += slot.ticks_before
            slipped += slot.slipped_before
            nulled += slot.nulled_before
            report = slot.worker.report if slot.worker is not None else None
            if report is not None:
                cpu += report.cpu_seconds
                ticks += report.ticks
                slipped += report.slipped
                nulled += report.nulled
                playing += report.playing
                lateness = max(lateness, report.lateness)
                pool_lag = max(pool_lag, report.pool_lag)
        return LoadSample(at=time.monotonic(), cpu_seconds=cpu, playing=playing, ticks=ticks,
                          slipped=slipped, nulled=nulled, lateness=lateness,
                          pool_lag=pool_lag)

    async def stop(self, within: float) -> None:
        """Have every worker end its sessions and exit (killed after *within* s)."""
        self.stopping = True
        workers = self.workers
        for worker in workers:
            worker.retiring = True
        await asyncio.gather(*(_stop(w, within) for w in workers))

    async def close(self) -> None:
        """Kill every worker and collect it. Idempotent."""
        self.stopping = True
        for worker in self.workers:
            worker.retiring = True
            worker.kill()
        for worker in self.workers:
            await worker.aclose()
            await worker.wait(within=2.0)


async def _stop(worker: WorkerProcess, within: float) -> None:
    try:
        await worker.call("shutdown", within=within)
    except (PeerGone, CallTimedOut, CallFailed) as exc:
        log.warning("engine worker %d did not stop cleanly: %s", worker.index, exc)
    await worker.aclose()
    await worker.wait(within=2.0)


async def _started(worker: WorkerProcess) -> None:
    """Wait for *worker*'s first report with a ticking clock.

    Raises:
        RuntimeError: the worker died first.
    """
    await worker.settled.wait()
    if not worker.started.is_set():
        raise RuntimeError(f"engine worker {worker.index} exited at start-up")
