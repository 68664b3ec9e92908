"""Admission of new sources: a burst of plays opens a few at a time, and only
while the sessions already playing are kept fed.

Opening a source (probing the container, building decoders) and producing its
first frames is CPU and GIL work on the engine's pools, the same pools that
refill the rings of playing sessions. A thousand plays at once used to flood
them: the event loop waited for the GIL behind the open threads, ticks slipped,
refills queued behind first batches, and every playing session underran. So
each new source waits at the gate before it opens, and the gate lets one in
only when

* fewer than ``concurrency`` sources are between opening and their first frames,
* the worker pools are not behind (no queued job is past its deadline by more
  than ``max_pool_lag``: a refill past its deadline is a ring about to run dry), and
* the event loop is not behind (none of the gate's last few 20 ms waits came
  back more than ``max_loop_lag`` late).

Waiters are served in arrival order. A source that waits longer than
``max_wait`` is refused (the engine is overloaded: its playing sessions come
first). Cancelling a waiter is safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdmissionRefused", "OpenGate", "admissible"]

#: Seconds between two looks at the engine's health while the gate is shut.
_POLL = 0.02
#: The loop counts as behind if any of this many recent waits came back late
#: (100 ms of history: one lucky wake-up does not open the gate).
_LAG_SAMPLES = 5


class AdmissionRefused(Exception):
    """The engine stayed too busy to start another source in time."""


def admissible(opening: int, concurrency: int, pool_lag: float, loop_lag: float, *,
               max_pool_lag: float, max_loop_lag: float) -> bool:
    """The gate's rule (pure): may one more source start opening now?"""
    return opening < concurrency and pool_lag <= max_pool_lag and loop_lag <= max_loop_lag


@dataclass(eq=False)
class Admission:
    """One source's place in the opening phase; ``release`` it once the source
    has its first frames (or failed). Idempotent."""

    gate: OpenGate
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate.opening -= 1


class OpenGate:
    """See the module docstring.

    Args:
        concurrency: sources opening at once (their jobs run on the open pool
            and the read or codec pool: a handful keeps both busy).
        pool_lag: seconds the engine's pools are behind now (``ElasticPool.overdue``).
        max_pool_lag: pool lag beyond which nothing new opens: 5 ms, a pool that
            keeps up runs every job before its deadline.
        max_loop_lag: loop lag beyond which nothing new opens: 30 ms, 1.5 ticks
            (the clock catches up on late ticks; past 100 ms it skips them).
        max_wait: seconds a source may wait before it is refused.
    """

    def __init__(self, *, concurrency: int = 2, pool_lag: Callable[[], float] = lambda: 0.0,
                 max_pool_lag: float = 0.005, max_loop_lag: float = 0.03,
                 max_wait: float = 60.0) -> None:
        self.concurrency = concurrency
        self.max_pool_lag = max_pool_lag
        self.max_loop_lag = max_loop_lag
        self.max_wait = max_wait
        self._pool_lag = pool_lag
        self._turn = asyncio.Lock()
        #: How late the gate's recent waits woke up (seconds).
        self._lags: deque[float] = deque(maxlen=_LAG_SAMPLES)
        #: Sources between admission and their first frames.
        self.opening = 0
        #: Sources waiting to be admitted.
        self.waiting = 0

    async def admit(self) -> Admission:
        """Wait for this source's turn.

        Raises:
            AdmissionRefused: not admitted within ``max_wait`` seconds.
        """
        self.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait):
                async with self._turn:  # first come, first served
                    while not admissible(self.opening, self.concurrency, self._pool_lag(),
                                         max(self._lags, default=0.0),
                                         max_pool_lag=self.max_pool_lag,
                                         max_loop_lag=self.max_loop_lag):
                        await self._pause()
                    self.opening += 1
                    return Admission(self)
        except TimeoutError:
            raise AdmissionRefused(
                "the engine is too busy to start another stream; try again shortly"
            ) from None
        finally:
            self.waiting -= 1

    async def _pause(self) -> None:
        """Wait a little, measuring how late the event loop wakes us."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(_POLL)
        self._lags.append(max(0.0, loop.time() - started - _POLL))
