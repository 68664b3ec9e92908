"""Running one process: signals, exit codes, and the end of its threads.

``run_process`` runs a process's main coroutine on a fresh event loop with
SIGTERM and SIGINT turned into a stop request (the coroutine decides the order
in which its parts stop), maps how it ended to an exit code
(``audiogate.errors``), and makes sure the interpreter actually exits: a worker
thread that is still busy after the shutdown deadline (a blocked network read)
would otherwise keep the process alive forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from audiogate.errors import EXIT_CRASHED, EXIT_OK, ProcessExit
from lifecycle import Process, TaskOwner, declare

__all__ = [
    "SUPERVISOR_PID_ENV",
    "ProcessMain", "add_runtime_metrics", "first_process_exit", "raise_open_file_limit",
    "run_process",
]

log = logging.getLogger(__name__)

#: A process's main coroutine, given the event set when a stop is requested.
ProcessMain = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Set in a supervised child's environment to its supervisor's pid; the child
#: stops by itself if that process disappears (``audiogate.supervisor``).
SUPERVISOR_PID_ENV = "AUDIOGATE_SUPERVISOR_PID"


def first_process_exit(error: BaseException) -> ProcessExit | None:
    """The ``ProcessExit`` in *error* or, for a task group's error, in any of
    its members (None when there is none)."""
    if isinstance(error, ProcessExit):
        return error
    if isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            if (found := first_process_exit(member)) is not None:
                return found
    return None


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one, as Go's runtime does for
    the engine we replace: every connection and consumer is a descriptor, and the
    usual soft limit of 1024 is reached by a modest crowd."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("open-file limit unchanged: %s", exc)


def add_runtime_metrics(registry: CollectorRegistry) -> None:
    """Add the process's own figures to *registry*, as prometheus_client's
    default registry has them: ``process_*`` (CPU seconds, resident and virtual
    memory, open descriptors, start time; read from ``/proc`` at scrape time),
    ``python_info`` and ``python_gc_*``. Our processes serve their own registry,
    not the default one, so without this they would have none of them.

    Call it once per registry (a second call raises ``ValueError``: duplicate
    names).
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


async def _watch_supervisor(pid: int, stop: asyncio.Event) -> None:
    """Stop when the supervising process (``audiogate run``) is gone: the engine
    is then an orphan that nobody would stop or restart. A pidfd becomes
    readable when its process exits, so this costs nothing while waiting."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError) as exc:  # not Linux >= 5.3, or already gone
        log.warning("cannot watch the supervising process %d (%s)", pid, exc)
        if isinstance(exc, ProcessLookupError):
            stop.set()
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    log.warning("the supervising process %d is gone; stopping", pid)
    stop.set()


_WATCHER = "`watching_supervisor` (the engine's and the gateway's)"
SUPERVISOR_WATCH = declare(
    "supervisor-watch", owner=_WATCHER, process=Process.ENGINE,
    what="stopping the process when its supervisor (the `audiogate run` stack, or the "
         "test run or benchmark that started it) disappears without stopping it",
    ends="the process stops")


@contextlib.asynccontextmanager
async def watching_supervisor(stop: asyncio.Event) -> AsyncIterator[None]:
    """While the body runs, set *stop* if the process named by ``SUPERVISOR_PID_ENV``
    (an ``audiogate run`` stack, or a test run) disappears without stopping us first:
    nobody would stop or restart an orphan."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not supervisor.isdigit():
        yield
        return
    tasks = TaskOwner(_WATCHER, logger=log)
    tasks.spawn(SUPERVISOR_WATCH, _watch_supervisor(int(supervisor), stop))
    try:
        yield
    finally:
        await tasks.aclose()


async def _main_with_signals(main: ProcessMain, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def requested(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: %s received; stopping", name, signum.name)
        stop.set()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, requested, signum)
    try:
        await main(stop)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def run_process(main: ProcessMain, *, name: str, exit_deadline: float) -> int:
    """Run ``main(stop)`` until it returns; return the process's exit code.

    A ``ProcessExit`` such as ``StartupError`` (alone or inside a task group's
    error) is printed as one line, ``error: ...``, and gives its exit code; any
    other exception is logged with its traceback and gives ``EXIT_CRASHED``. Afterwards, worker
    threads get until *exit_deadline* seconds from the end of ``main`` to
    finish; past it the process exits anyway (logged).
    """
    code = EXIT_OK
    try:
        asyncio.run(_main_with_signals(main, name))
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed
        code = EXIT_OK
    except BaseException as exc:  # every way out is mapped to an exit code
        ending = first_process_exit(exc)
        if ending is not None:
            print(f"error: {ending}", file=sys.stderr, flush=True)
            code = ending.exit_code
        elif isinstance(exc, SystemExit):
            raise
        else:
            log.critical("%s stopped: a task failed", name, exc_info=exc)
            code = EXIT_CRASHED
    _end_threads(name, exit_deadline, code)
    return code


def _end_threads(name: str, deadline: float, code: int) -> None:
    """Wait up to *deadline* for non-daemon threads, then exit without them."""
    until = time.monotonic() + deadline
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, until - time.monotonic()))
    busy = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if busy:
        log.error("%s: threads still busy %.1f s after stopping (%s); exiting without them",
                  name, deadline, ", ".join(busy))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
