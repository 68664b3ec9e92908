"""Tells a gap our code made from a gap the kernel made.

The isolation tests assert that no inter-page gap of a healthy session exceeds 60 ms
while another session fails, stops or is replaced. On a shared 2-core machine the
kernel sometimes keeps a process off the CPU for longer than that, whatever it does; a
gap made that way says nothing about isolation. Linux counts, per thread, the time it
spent runnable but waiting for a CPU (``/proc/<pid>/task/<tid>/schedstat``, second
field, nanoseconds). :class:`RunQueueWatch` samples that counter for the threads that
write the audio (the engine's event loop, and the test's own loop where the gateway runs
in-process) every few milliseconds, so a test can ask how long they were kept waiting
*during one particular gap* and judge only the rest of it.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["RunQueueWatch", "assert_no_gap_of_its_own", "watch_writers"]

_PERIOD = 0.002


def _run_delay(path: Path) -> float:
    try:
        return int(path.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class RunQueueWatch:
    """Samples how long each watched thread has waited for a CPU, on
    ``time.monotonic()``'s clock (the clock of ``SocketConsumer`` arrival times).

    Args:
        threads: ``(pid, tid)`` pairs; a process's main thread has ``tid == pid``.
    """

    def __init__(self, threads: Sequence[tuple[int, int]]) -> None:
        self._paths = [Path(f"/proc/{pid}/task/{tid}/schedstat") for pid, tid in threads]
        self._times: list[float] = []
        self._delays: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-queue-watch", daemon=True)

    def __enter__(self) -> RunQueueWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # Bounded: a test's window is seconds; this stops with the context.
        while not self._stop.wait(_PERIOD):
            self._times.append(time.monotonic())
            self._delays.append([_run_delay(path) for path in self._paths])

    def waited(self, start: float, end: float) -> float:
        """The longest time any watched thread waited for a CPU between the last
        sample at or before *start* and the first at or after *end*."""
        times = list(self._times)
        if len(times) < 2:
            return 0.0
        first = max(0, bisect.bisect_right(times, start) - 1)
        last = min(len(times) - 1, bisect.bisect_left(times, end))
        before, after = self._delays[first], self._delays[last]
        return max((b - a for a, b in zip(before, after, strict=True)), default=0.0)


def assert_no_gap_of_its_own(times: Sequence[float], watch: RunQueueWatch,
                             bound: float = 0.060) -> None:
    """No gap between consecutive arrival *times* exceeds *bound*, once the time the
    kernel kept the audio's writers waiting for a CPU inside that very gap is taken
    out of it."""
    for start, end in itertools.pairwise(times):
        gap = end - start
        if gap < bound:
            continue
        waited = watch.waited(start, end)
        assert gap - waited < bound, (
            f"a {gap * 1000:.0f} ms gap between pages, of which the kernel kept the "
            f"writers waiting for a CPU only {waited * 1000:.0f} ms")


def watch_writers(engine_pid: int) -> RunQueueWatch:
    """A watch on the engine's event loop and on the calling thread (the test's event
    loop: the socket consumer, and the gateway when it runs in the test's process).
    Call it from that loop's thread."""
    return RunQueueWatch([(engine_pid, engine_pid), (os.getpid(), threading.get_native_id())])
