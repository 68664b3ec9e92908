"""Admission of new sources in a worker (``OpenGate``: a burst opens a few at a time),
and the measured load of the engine (``LoadModel``: ``/stats`` and the degradation
rule of ``audio_engine.cluster.cost``).

**Measured load** (``LoadModel``): the front samples the engine's CPU time (front and
workers), its clocks (tick lateness, skipped ticks), its sessions' empty-ring ticks
(Lavalink's "nulled" frames) and its pools' queue delays every half second. The
engine is *degraded* when frames are nulled or ticks skipped or a tick is more than
40 ms late in the window, or a pool is 100 ms behind; it refuses plays for that only
while it uses at least half its budget (below, the cause is another process on the
host, and refusing would not help: a node pool sees it in ``/stats`` and places
elsewhere). Whether one more play fits is the cost model's question
(``audio_engine.cluster.cost``), asked before anything starts.

**Opening** (``OpenGate``): a taken play's source waits at the gate before
it opens, so that a burst cannot flood the pools that playing sessions need.

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

Waiters are served in arrival order. A source that has waited ``PATIENCE`` (or half
of ``max_wait`` if that is less) goes in as soon as fewer than ``concurrency`` open,
whatever the lag (an accepted play is promised its first audio within ``max_wait``,
and a loop late for reasons of its own, a stall or a busy host, must not use up
that promise: a hundred plays at once need most of the second to open);
one that waits longer than ``max_wait`` is refused (the engine is overloaded: its
playing sessions come first). Cancelling a waiter is safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEGRADED_MIN_LOAD",
    "LOAD_INTERVAL",
    "LOAD_WINDOW",
    "AdmissionRefused",
    "Headroom",
    "LoadModel",
    "LoadSample",
    "OpenGate",
    "admissible",
]

#: Seconds a source waits for the loop and the pools to catch up before it goes in
#: on the concurrency limit alone.
PATIENCE: Final = 0.25
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
            and the read or codec pool, and mostly wait on the network through the
            egress proxy: 8 opened a burst of 70 plays over HTTP within 2 s where 4
            did not; each engine worker has its own gate).
        pool_lag: seconds the engine's pools are behind now (``ElasticPool.overdue``).
        max_pool_lag: pool lag beyond which nothing new opens: 5 ms, a pool that
            keeps up runs every job before its deadline.
        max_loop_lag: loop lag beyond which nothing new opens: 30 ms, 1.5 ticks
            (the clock catches up on late ticks; past 100 ms it skips them).
        max_wait: seconds a source may wait before it is refused.
    """

    def __init__(self, *, concurrency: int = 8, pool_lag: Callable[[], float] = lambda: 0.0,
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
        loop = asyncio.get_running_loop()
        # Past its patience, a source goes in as soon as one of the concurrent places
        # is free, lag or not: a burst slows the sessions already playing a little,
        # but an accepted play is not refused for the engine's own caution.
        patient_until = loop.time() + min(self.max_wait / 2, PATIENCE)
        try:
            async with asyncio.timeout(self.max_wait):
                async with self._turn:  # first come, first served
                    while not admissible(self.opening, self.concurrency, self._pool_lag(),
                                         max(self._lags, default=0.0),
                                         max_pool_lag=self.max_pool_lag,
                                         max_loop_lag=self.max_loop_lag) and (
                            self.opening >= self.concurrency or loop.time() < patient_until):
                        await self._pause()
                    self.opening += 1
                    return Admission(self)
        except TimeoutError as exc:
            raise AdmissionRefused(
                "the engine is too busy to start another stream; try again shortly"
            ) from exc
        finally:
            self.waiting -= 1

    async def _pause(self) -> None:
        """Wait a little, measuring how late the event loop wakes us."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(_POLL)
        self._lags.append(max(0.0, loop.time() - started - _POLL))


# -- measured load ------------------------------------------------------------------

#: Seconds between two samples of the engine's load.
LOAD_INTERVAL: Final = 0.5
#: Seconds of samples the load is averaged over: long enough that one source
#: opening (a burst of CPU) is not mistaken for steady load, short enough that a
#: freed engine takes plays again within a few seconds.
LOAD_WINDOW: Final = 3.0
#: Degradation signals, and the share of the budget below which they are blamed on
#: someone else.
MAX_TICK_LATENESS: Final = 0.040
MAX_POOL_LAG: Final = 0.100
MAX_NULLED_SHARE: Final = 0.005
DEGRADED_MIN_LOAD: Final = 0.5


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One look at the engine (cumulative counters, as read at *at*)."""

    at: float
    #: CPU seconds (all processes and threads of the engine), cumulative.
    cpu_seconds: float
    #: Sessions streaming and not paused now.
    playing: int
    #: Clock ticks run, ticks skipped, empty-ring ticks of playing sessions.
    ticks: int
    slipped: int
    nulled: int
    #: Worst tick lateness since the previous sample, seconds.
    lateness: float
    #: How far the worker pools are behind now, seconds.
    pool_lag: float


@dataclass(frozen=True, slots=True)
class Headroom:
    """The engine's load over the last window (``/stats`` shows it)."""

    #: Share of the CPU budget used (0 = idle, 1 = the whole budget).
    load: float
    #: Worst tick lateness and pool lag in the window, seconds.
    tick_lateness: float
    pool_lag: float
    #: Empty-ring ticks of playing sessions and skipped clock ticks in the window.
    nulled: int
    deficit: int
    #: Ticks the playing sessions should have been given in the window.
    expected_frames: int
    #: Seconds the window covers (0 before two samples exist).
    seconds: float

    @property
    def degraded(self) -> bool:
        """The engine is failing its sessions now (see the module docstring)."""
        nulled_share = self.nulled / self.expected_frames if self.expected_frames else 0.0
        return (self.deficit > 0 or nulled_share > MAX_NULLED_SHARE
                or self.tick_lateness > MAX_TICK_LATENESS or self.pool_lag > MAX_POOL_LAG)


class LoadModel:
    """The engine's measured load from periodic samples (pure: the caller samples).

    Args:
        budget: cores the engine may use.
        window: seconds of samples averaged.
    """

    def __init__(self, *, budget: float, window: float = LOAD_WINDOW) -> None:
        if budget <= 0:
            raise ValueError("the CPU budget must be positive")
        self.budget = budget
        self.window = window
        #: Enough samples to span the window, one spare.
        self._samples: deque[LoadSample] = deque(
            maxlen=int(window / LOAD_INTERVAL) + 2)

    def add(self, sample: LoadSample) -> None:
        """Record a sample (older than the window ones fall off)."""
        self._samples.append(sample)

    def headroom(self) -> Headroom:
        """The load over the last window."""
        samples = list(self._samples)
        last = samples[-1] if samples else None
        first = next((s for s in samples if last is not None
                      and last.at - s.at <= self.window + LOAD_INTERVAL / 2), last)
        if last is None or first is None or last.at <= first.at:
            return Headroom(load=0.0, tick_lateness=last.lateness if last else 0.0,
                            pool_lag=last.pool_lag if last else 0.0, nulled=0, deficit=0,
                            expected_frames=0, seconds=0.0)
        seconds = last.at - first.at
        window = [s for s in samples if s.at > first.at]
        return Headroom(
            load=max(0.0, (last.cpu_seconds - first.cpu_seconds) / seconds / self.budget),
            tick_lateness=max(s.lateness for s in window),
            pool_lag=max(s.pool_lag for s in window),
            nulled=max(0, last.nulled - first.nulled),
            deficit=max(0, last.slipped - first.slipped),
            expected_frames=sum(s.playing for s in window) * round(LOAD_INTERVAL / 0.02),
            seconds=seconds)
