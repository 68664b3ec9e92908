"""Tells a gap our code made from a gap the host made, measured outside the engine.

The isolation tests assert that no inter-page gap of a healthy session exceeds 60 ms
while another session fails, stops or is replaced. On a shared 2-core machine the
kernel sometimes keeps every process off the CPU for longer than that, whatever it
does; a gap made that way says nothing about isolation. But a gap made by the engine's
own work (its codec threads, its reads, its resolvers starving its clock) is exactly
what these tests must catch, so nothing measured *inside* the engine may excuse a gap.

:class:`HostCanary` is a tiny process of its own at ordinary priority that sleeps 2 ms
at a time and records how late each wake-up came: the host's starvation of a process
that asks for almost nothing. A gap is judged net of the canary's lateness inside it;
the engine, whose clock threads run real time (``audiogate.scheduling``) above its own
codec, read and open threads, must keep its clock on time against its own work.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import TracebackType

__all__ = ["HostCanary", "assert_no_gap_of_its_own"]

#: The canary's sleep: short enough to see a 20 ms stall, long enough to cost little
#: (500 wake-ups a second, a few per cent of a core).
_PERIOD = 0.002
#: A wake-up this late is reported (below it, the host served the canary in time).
_REPORTED = 0.003
_RECORD = struct.Struct("<dd")

#: The canary's program: report (when it went to sleep, how late it woke) as binary
#: records on stdout, for wake-ups later than _REPORTED.
_CANARY = f"""
import struct, sys, time
out = sys.stdout.buffer
record = struct.Struct("<dd")
while True:
    went = time.monotonic()
    time.sleep({_PERIOD})
    late = time.monotonic() - went - {_PERIOD}
    if late > {_REPORTED}:
        out.write(record.pack(went, late))
        out.flush()
"""


class HostCanary:
    """Measures the host's starvation of an ordinary process (module docstring).

    Use it as a context manager around the window a test judges; it stops with it.
    Times are ``time.monotonic()`` (the clock of ``SocketConsumer`` arrival times:
    ``CLOCK_MONOTONIC`` is the same in every process).
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._late: list[tuple[float, float]] = []
        self._reader: threading.Thread | None = None

    def __enter__(self) -> HostCanary:
        self._process = subprocess.Popen([sys.executable, "-c", _CANARY],
                                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, name="host-canary", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        while record := stream.read(_RECORD.size):
            if len(record) == _RECORD.size:
                self._late.append(_RECORD.unpack(record))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def starved(self, start: float, end: float) -> float:
        """Seconds the host kept the canary from running between *start* and *end*
        (its late wake-ups that overlap the window, each counted for the overlap)."""
        total = 0.0
        for went, late in list(self._late):
            woke_due = went + _PERIOD
            lost_from, lost_to = woke_due, woke_due + late
            overlap = min(end, lost_to) - max(start, lost_from)
            if overlap > 0:
                total += overlap
        return min(total, end - start)


def assert_no_gap_of_its_own(times: Sequence[float], canary: HostCanary,
                             bound: float = 0.060) -> None:
    """No gap between consecutive arrival *times* exceeds *bound*, once the time the
    host kept an ordinary process from running inside that very gap is taken out."""
    for start, end in itertools.pairwise(times):
        gap = end - start
        if gap < bound:
            continue
        starved = canary.starved(start, end)
        assert gap - starved < bound, (
            f"a {gap * 1000:.0f} ms gap between pages, of which the host kept an ordinary "
            f"process from running only {starved * 1000:.0f} ms")
