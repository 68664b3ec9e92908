"""Admission: whether a new play is taken at all (by load), and when a taken
one may open its source (a burst opens a few at a time).

**By load** (``LoadModel``, consulted by the API before a play starts): the
engine samples its own CPU time, its clock (tick lateness, skipped ticks), its
sessions' empty-ring ticks (Lavalink's "nulled" frames) and its pools' queue
delays every half second. A play is refused (503 with ``Retry-After``) when

* the CPU rule: the share of the engine's CPU budget used over the last few
  seconds, plus what one more session is expected to cost (the measured CPU per
  playing session), would pass ``max_load``: refused *before* the others
  degrade, by a prediction; or
* the degradation rule: the engine is already degrading its sessions (frames
  nulled or ticks skipped or a tick more than 40 ms late in the window, or a
  pool 100 ms behind) while it uses at least half its budget. Below that share
  the cause is another process on the host, and refusing plays here would not
  help (a node pool sees the degradation in ``/stats`` and places elsewhere).

The count limit (``ENGINE_MAX_SESSIONS``) stays as a ceiling beside it.

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

Waiters are served in arrival order. A source that waits longer than
``max_wait`` is refused (the engine is overloaded: its playing sessions come
first). Cancelling a waiter is safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AdmissionRefused",
    "Headroom",
    "LoadModel",
    "LoadSample",
    "OpenGate",
    "PlayRefusal",
    "admissible",
]

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


# -- admission by load -------------------------------------------------------------

#: Seconds between two samples of the engine's load.
LOAD_INTERVAL: Final = 0.5
#: Seconds of samples the load is averaged over: long enough that one source
#: opening (a burst of CPU) is not mistaken for steady load, short enough that a
#: freed engine takes plays again within a few seconds.
LOAD_WINDOW: Final = 3.0
#: Degradation signals (the degradation rule) and the share of the budget below
#: which they are blamed on someone else.
MAX_TICK_LATENESS: Final = 0.040
MAX_POOL_LAG: Final = 0.100
MAX_NULLED_SHARE: Final = 0.005
DEGRADED_MIN_LOAD: Final = 0.5
#: Cores one session may be charged at most when the measured load is shared out
#: among the sessions playing. A transcoding session costs 0.016 - 0.024 of a core
#: (docs/performance.md, with a filter preset at the top); with few sessions the
#: measured load is mostly the engine's own (HTTP, opening and closing sources,
#: resolution), and dividing it by one or two sessions would refuse the next play of
#: an engine that is nearly idle.
SESSION_COST_CEILING: Final = 0.05
#: ``Retry-After`` seconds: a CPU-bound engine frees capacity as tracks end
#: (minutes), but a pool retries elsewhere at once and a user may try again soon;
#: a degraded one may recover within seconds.
RETRY_AFTER_CPU: Final = 10
RETRY_AFTER_DEGRADED: Final = 5


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One look at the engine (cumulative counters, as read at *at*)."""

    at: float
    #: Process CPU seconds (all threads), cumulative.
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
class PlayRefusal:
    """Why a play is refused, in words, and when to try again."""

    message: str
    retry_after: int


@dataclass(frozen=True, slots=True)
class Headroom:
    """The engine's load over the last window (``/stats`` shows it)."""

    #: Share of the CPU budget used (0 = idle, 1 = the whole budget).
    load: float
    #: Share of the budget one more session is expected to add.
    session_cost: float
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
    def projected(self) -> float:
        """``load`` with one more session."""
        return self.load + self.session_cost

    @property
    def degraded(self) -> bool:
        """The engine is failing its sessions now (see the module docstring)."""
        nulled_share = self.nulled / self.expected_frames if self.expected_frames else 0.0
        return (self.deficit > 0 or nulled_share > MAX_NULLED_SHARE
                or self.tick_lateness > MAX_TICK_LATENESS or self.pool_lag > MAX_POOL_LAG)


class LoadModel:
    """The engine's headroom from periodic samples (pure: the caller samples).

    Args:
        budget: cores the engine may use.
        max_load: share of *budget* a new play may bring the engine to; 1 turns
            admission by load off (the count limit alone).
        session_cpu: when > 0, a test aid: each active session costs this many
            cores and the CPU is not measured (deterministic admission); the
            degradation rule is then off, since the host's real state would make
            the outcome depend on the machine.
        window: seconds of samples averaged.
    """

    def __init__(self, *, budget: float, max_load: float, session_cpu: float = 0.0,
                 window: float = LOAD_WINDOW) -> None:
        if budget <= 0:
            raise ValueError("the CPU budget must be positive")
        self.budget = budget
        self.max_load = max_load
        self.session_cpu = session_cpu
        self.window = window
        #: Enough samples to span the window, one spare.
        self._samples: deque[LoadSample] = deque(
            maxlen=int(window / LOAD_INTERVAL) + 2)

    def add(self, sample: LoadSample) -> None:
        """Record a sample (older than the window ones fall off)."""
        self._samples.append(sample)

    def headroom(self, active: int = 0) -> Headroom:
        """The load over the last window; *active* (sessions playing or about to)
        is what a faked per-session cost is counted on."""
        samples = list(self._samples)
        last = samples[-1] if samples else None
        first = next((s for s in samples if last is not None
                      and last.at - s.at <= self.window + LOAD_INTERVAL / 2), last)
        if last is None or first is None or last.at <= first.at:
            load = 0.0
            seconds = 0.0
            nulled = deficit = expected = 0
            lateness = last.lateness if last else 0.0
            pool_lag = last.pool_lag if last else 0.0
            playing = last.playing if last else 0
        else:
            seconds = last.at - first.at
            load = (last.cpu_seconds - first.cpu_seconds) / seconds / self.budget
            nulled = last.nulled - first.nulled
            deficit = last.slipped - first.slipped
            window = [s for s in samples if s.at > first.at]
            lateness = max(s.lateness for s in window)
            pool_lag = max(s.pool_lag for s in window)
            playing = round(sum(s.playing for s in window) / len(window))
            expected = sum(s.playing for s in window) * round(LOAD_INTERVAL / 0.02)
        if self.session_cpu > 0:
            cost = self.session_cpu / self.budget
            load = active * cost
        else:
            cost = min(load / playing, SESSION_COST_CEILING / self.budget) if playing else 0.0
        return Headroom(load=max(0.0, load), session_cost=cost, tick_lateness=lateness,
                        pool_lag=pool_lag, nulled=max(0, nulled), deficit=max(0, deficit),
                        expected_frames=expected, seconds=seconds)

    def refusal(self, active: int = 0) -> PlayRefusal | None:
        """Why one more session must be refused now, or None to take it."""
        if self.max_load >= 1.0:
            return None
        room = self.headroom(active)
        if room.projected > self.max_load:
            return PlayRefusal(
                f"the engine is at capacity ({room.load:.0%} of its CPU budget in use, "
                f"another stream would take it past {self.max_load:.0%}); "
                f"try again in {RETRY_AFTER_CPU} s", RETRY_AFTER_CPU)
        if self.session_cpu == 0 and room.degraded and room.load >= DEGRADED_MIN_LOAD:
            return PlayRefusal(
                "the engine is overloaded (its streams are falling behind); "
                f"try again in {RETRY_AFTER_DEGRADED} s", RETRY_AFTER_DEGRADED)
        return None
