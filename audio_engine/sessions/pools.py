"""Worker pools for blocking work, shaped by the GIL.

PyAV gives up and retakes the GIL several times per demuxed packet. With many
threads running such jobs at once, each retake waits for another thread's switch
interval: 64 busy demux threads spend their time queueing for the GIL (400
passthrough sessions cost 140 % CPU with underruns, against 57 % and none with
two threads; ``bench/engine_capacity.py``). So the I/O pool runs few threads.

But a source read can block on the network for seconds (up to the read
timeout), and a few stalled sources must not starve all the others. Hence
``ElasticPool``: *core* threads do the work; when every thread is stuck while
jobs wait, one more thread is started (up to *max_workers*). A thread is stuck
when its job has run longer than *stuck_after* while the thread used almost no
CPU (its own CPU clock): it is blocked in the kernel on the network, not busy
and not queueing for the GIL. Such a thread holds no GIL, so the extra thread
adds no contention; extra threads exit once idle.

Jobs run earliest deadline first (``submit_by``): a refill is due when its
session's ring would run dry, so a burst of new plays queues behind the refills
of sessions already playing instead of starving them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DEFAULT_SLACK", "ElasticPool"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple[float, int, Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]

#: Deadline given to plain ``submit`` calls: after any refill due within a second.
DEFAULT_SLACK = 1.0
#: A job that kept its thread on the CPU less than this share of its run time is
#: waiting in the kernel (network), not working or queueing for the GIL.
_BLOCKED_CPU_SHARE = 0.02


class ElasticPool(Executor):
    """A thread pool that grows only past threads stuck in long jobs.

    Args:
        core_workers: threads kept for the normal load.
        max_workers: hard limit, reached only when that many jobs block at once.
        stuck_after: seconds inside one job after which a thread counts as stuck.
            Healthy demux jobs take milliseconds; 0.1 s is far outside that.
        idle_exit: seconds an extra (non-core) thread waits for work before exiting.
        name: thread name prefix.
    """

    def __init__(
        self,
        core_workers: int,
        max_workers: int,
        *,
        stuck_after: float = 0.1,
        idle_exit: float = 5.0,
        name: str = "pool",
    ) -> None:
        if not 1 <= core_workers <= max_workers:
            raise ValueError("need 1 <= core_workers <= max_workers")
        self.core_workers = core_workers
        self.max_workers = max_workers
        self.stuck_after = stuck_after
        self.idle_exit = idle_exit
        self.name = name
        self._jobs: list[_Job] = []
        self._order = itertools.count()
        self._queued_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        #: Start time of the job each thread is running (None when idle).
        self._busy_since: dict[int, float | None] = {}
        #: Each thread's CPU clock, and its reading when the current job started.
        self._cpu_clock: dict[int, int] = {}
        self._cpu_at_start: dict[int, float] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._ids = itertools.count()
        self._shutdown = False
        self._monitor: threading.Thread | None = None
        #: Threads started because all others were stuck (for metrics).
        self.grown = 0
        #: Jobs run, and seconds they spent queued and running (for metrics).
        self.jobs_done = 0
        self.wait_seconds = 0.0
        self.run_seconds = 0.0
        #: Jobs that started after their deadline.
        self.late_jobs = 0

    @property
    def size(self) -> int:
        """Threads alive now."""
        with self._lock:
            return len(self._threads)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` due in ``DEFAULT_SLACK`` seconds.

        Raises:
            RuntimeError: after ``shutdown``.
        """
        return self.submit_by(time.monotonic() + DEFAULT_SLACK, fn, *args, **kwargs)

    def submit_by(self, deadline: float, fn: Callable[P, T], /, *args: P.args,
                  **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` to run before jobs with later *deadline*s
        (``time.monotonic`` seconds); returns its future.

        Raises:
            RuntimeError: after ``shutdown``.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            order = next(self._order)
            self._queued_at[order] = time.monotonic()
            job: _Job = (deadline, order, future, fn, args, kwargs)
            heapq.heappush(self._jobs, job)
            idle = sum(1 for since in self._busy_since.values() if since is None)
            if idle == 0 and len(self._threads) < self.core_workers:
                self._start_thread()
            elif idle == 0:
                self._grow_if_stuck(time.monotonic())
            self._work.notify()
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._watch, name=f"{self.name}-monitor", daemon=True
                )
                self._monitor.start()
        return future

    @property
    def queued(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def overdue(self, now: float | None = None) -> float:
        """Seconds the most urgent waiting job is past its deadline (0 if none):
        how far behind the pool is (the admission of new sources watches it)."""
        with self._lock:
            if not self._jobs:
                return 0.0
            deadline = self._jobs[0][0]
        return max(0.0, (time.monotonic() if now is None else now) - deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; optionally cancel queued ones and wait for threads."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for job in self._jobs:
                    job[2].cancel()
                self._jobs.clear()
            self._work.notify_all()
            threads = list(self._threads.values())
        if wait:
            for thread in threads:
                thread.join()

    # -- internals (called with the lock held unless noted) -------------------------

    def _start_thread(self) -> None:
        ident = next(self._ids)
        thread = threading.Thread(
            target=self._run, args=(ident,), name=f"{self.name}_{ident}", daemon=True
        )
        self._threads[ident] = thread
        self._busy_since[ident] = None
        thread.start()

    def _stuck(self, ident: int, now: float) -> bool:
        since = self._busy_since.get(ident)
        if since is None or now - since <= self.stuck_after:
            return False
        clock = self._cpu_clock.get(ident)
        if clock is None:
            return True
        try:
            used = time.clock_gettime(clock) - self._cpu_at_start.get(ident, 0.0)
        except OSError:  # the thread just ended
            return False
        return used < _BLOCKED_CPU_SHARE * (now - since)

    def _enough_without(self, ident: int, now: float) -> bool:
        """Whether *core_workers* threads other than *ident* are not stuck."""
        free = sum(1 for other in self._busy_since
                   if other != ident and not self._stuck(other, now))
        return free >= self.core_workers

    def _grow_if_stuck(self, now: float) -> None:
        if not self._jobs or len(self._threads) >= self.max_workers:
            return
        if all(self._stuck(ident, now) for ident in self._busy_since):
            self.grown += 1
            log.debug("%s: every thread stuck; starting thread %d", self.name,
                      len(self._threads) + 1)
            self._start_thread()

    def _watch(self) -> None:
        """Monitor thread: grows the pool while queued jobs wait on stuck threads."""
        while True:
            time.sleep(self.stuck_after / 2)
            with self._lock:
                if self._shutdown:
                    return
                self._grow_if_stuck(time.monotonic())

    def _run(self, ident: int) -> None:
        """Worker thread body (takes the lock itself)."""
        core = ident < self.core_workers
        try:
            clock = time.pthread_getcpuclockid(threading.get_ident())
        except (AttributeError, OSError):  # not on this platform
            clock = None
        with self._lock:
            if clock is not None:
                self._cpu_clock[ident] = clock
        while True:
            with self._lock:
                waited_since = time.monotonic()
                while not self._jobs and not self._shutdown:
                    timeout = None if core else self.idle_exit
                    self._work.wait(timeout)
                    if (not self._jobs and not core
                            and time.monotonic() - waited_since >= self.idle_exit):
                        self._retire(ident)
                        return
                if not self._jobs:  # shut down
                    self._retire(ident)
                    return
                deadline, queued_at, future, fn, args, kwargs = heapq.heappop(self._jobs)
                started = self._busy_since[ident] = time.monotonic()
                if clock is not None:
                    self._cpu_at_start[ident] = time.clock_gettime(clock)
                self.wait_seconds += started - self._queued_at.pop(queued_at, started)
                self.late_jobs += started > deadline
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the future's owner
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            with self._lock:
                now = time.monotonic()
                self.jobs_done += 1
                self.run_seconds += now - started
                self._busy_since[ident] = None
                if not core and self._enough_without(ident, now):
                    # Started to cover for stuck threads; they are back (or
                    # enough others are free): leave, to keep contention low.
                    self._retire(ident)
                    return

    def _retire(self, ident: int) -> None:
        self._threads.pop(ident, None)
        self._busy_since.pop(ident, None)
        self._cpu_clock.pop(ident, None)
        self._cpu_at_start.pop(ident, None)
