"""Real-time scheduling for the thread that runs a process's 20 ms clock.

An audio engine's clock must run when its tick is due, whatever else the machine
does. Under the normal scheduler it gets a fair share: with a CPU hog on each core
(or a neighbour's build) a tick waits behind the hog's time slice, every session's
pages arrive 100-400 ms late together, and the Discord and browser listeners hear
the gap. Measured on the 2-core development machine with two busy loops beside an
engine of four sessions: 27 gaps over 60 ms in 21 s (up to 410 ms) under normal
scheduling, 1 (67 ms) with the engine's clock threads at round-robin priority 10.
A bench, not a test: docs/performance.md, "The clock under a CPU hog".

``RealtimeClock`` gives the calling thread (the event loop's, which runs the clock)
round-robin real-time scheduling, the way audio servers give their data threads:

- with ``SCHED_RESET_ON_FORK``: threads and processes it starts afterwards (codec and
  read pools, resolution workers) get the normal policy, never real time;
- bounded by ``RLIMIT_RTTIME``: a loop thread that runs 0.5 s without blocking (a
  process overloaded past its clock, or a bug spinning) gets ``SIGXCPU``, whose
  handler here puts it back under the normal scheduler for 30 s and says so; one that
  goes on to 2 s without returning to Python is stuck and is killed by the kernel
  (the front restarts a worker, the supervisor an engine);
- only where the process may (``CAP_SYS_NICE``: root, ``--cap-add SYS_NICE``, or an
  ``RLIMIT_RTPRIO`` such as systemd's ``LimitRTPRIO=``); otherwise the process runs
  normally and the returned words say why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
from types import FrameType
from typing import Final

__all__ = ["RT_HARD_LIMIT_US", "RT_RETRY_AFTER", "RT_SOFT_LIMIT_US", "RealtimeClock"]

log = logging.getLogger(__name__)

#: CPU time (µs) the real-time thread may use without blocking before ``SIGXCPU``.
RT_SOFT_LIMIT_US: Final = 500_000
#: ... and before the kernel kills the process (the thread is stuck, not busy).
RT_HARD_LIMIT_US: Final = 2_000_000
#: Seconds under the normal scheduler after a ``SIGXCPU`` before real time again.
RT_RETRY_AFTER: Final = 30.0


class RealtimeClock:
    """Real-time scheduling of the event loop's thread (see the module docstring).

    Args:
        priority: round-robin priority, 1-99; 0 leaves the thread under the normal
            scheduler.
    """

    def __init__(self, priority: int) -> None:
        self.priority = priority
        #: The thread's scheduling, in words (``/health`` shows it).
        self.description = "normal (real-time clock priority off)"
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> str:
        """Apply it to the calling thread, which runs the event loop; returns
        ``description``."""
        self._loop = asyncio.get_running_loop()
        if self.priority > 0 and self._promote():
            signal.signal(signal.SIGXCPU, self._spinning)
        return self.description

    def _promote(self) -> bool:
        try:
            resource.setrlimit(resource.RLIMIT_RTTIME, (RT_SOFT_LIMIT_US, RT_HARD_LIMIT_US))
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(self.priority))
        except PermissionError:
            self.description = (
                "normal (real-time scheduling not permitted: give the process "
                "CAP_SYS_NICE or an RLIMIT_RTPRIO of at least the priority)")
            return False
        except (AttributeError, OSError, ValueError) as exc:
            self.description = f"normal (real-time scheduling unavailable: {exc})"
            return False
        self.description = f"real-time round-robin, priority {self.priority}"
        return True

    def _spinning(self, signum: int, frame: FrameType | None) -> None:
        """``SIGXCPU`` (in the loop's thread, between two bytecodes): the thread ran
        ``RT_SOFT_LIMIT_US`` without blocking. Back to the normal scheduler at once,
        so that an overloaded or looping process cannot take a core from the machine."""
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            return
        self.description = "normal for now (the clock thread ran without a pause)"
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._demoted)

    def _demoted(self) -> None:
        log.warning("the clock thread ran %.1f s without a pause (overloaded, or stuck in "
                    "a long job): it is under the normal scheduler for %.0f s",
                    RT_SOFT_LIMIT_US / 1e6, RT_RETRY_AFTER)
        assert self._loop is not None
        self._loop.call_later(RT_RETRY_AFTER, self._promote)
