"""How busy the host's CPUs are, as a consumer process on it feels it.

The Node-safe margins (``audio_engine.wire.ordering``) give a Go-style consumer time
to handle a play's HTTP reply and its ``ready`` before the first audio arrives. That
time is the consumer's, not the engine's: on a host where more threads want a CPU
than there are CPUs, the consumer waits for one, while the engine's clock (real-time
scheduled, ``audiogate.scheduling``) does not. A fixed margin that is ample on a quiet
host is too short there, and a consumer that handles ``ready`` after the first pages
arrived loses the track's header pages: the whole track is silent.

``CpuPressure`` measures that wait with Linux's pressure stall information
(``/proc/pressure/cpu``, the "some" line): the share of wall time in which at least
one runnable task waited for a CPU. It reads the counter at most every
``interval`` seconds, when asked (no thread, no task), and answers the largest share of
its last ``window`` seconds: a consumer late in a burst of load is late now. Where the
file does not exist (a kernel without PSI, some containers), the share is 0 and the
margins stay as configured.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

__all__ = ["PSI_CPU", "CpuPressure"]

PSI_CPU = Path("/proc/pressure/cpu")


def _read_some_total(path: Path) -> float | None:
    """Cumulative seconds in which some task waited for a CPU; None if unknown."""
    try:
        with path.open("rb") as file:
            first = file.readline()
    except OSError:
        return None
    for field in first.split():
        if field.startswith(b"total="):
            try:
                return int(field[6:]) / 1_000_000
            except ValueError:
                return None
    return None


class CpuPressure:
    """The host's recent CPU pressure, 0 (no task waits for a CPU) to 1 (always some).

    Args:
        path: the PSI file.
        interval: seconds between two readings at most.
        window: seconds of readings the answer is the maximum of.
        clock: monotonic seconds.
    """

    def __init__(self, path: Path = PSI_CPU, *, interval: float = 0.05, window: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._interval = interval
        self._clock = clock
        self._shares: deque[float] = deque(maxlen=max(1, round(window / interval)))
        self._last: tuple[float, float] | None = None
        self._available = True

    def share(self) -> float:
        """The largest pressure share of the last window (reads the file if due)."""
        if not self._available:
            return 0.0
        now = self._clock()
        if self._last is None or now - self._last[0] >= self._interval:
            total = _read_some_total(self._path)
            if total is None:
                self._available = False
                self._shares.clear()
                return 0.0
            if self._last is not None:
                elapsed = now - self._last[0]
                self._shares.append(min(1.0, max(0.0, (total - self._last[1]) / elapsed)))
            self._last = (now, total)
        return max(self._shares, default=0.0)
