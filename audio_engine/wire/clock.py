"""The engine's single 20 ms clock.

``TickSchedule`` is the pure arithmetic: tick *n* is due at ``start + n * period``,
on absolute deadlines, so lateness never accumulates into drift. ``run_clock`` is
the thin asyncio loop around it that calls the tick callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from protocol import FRAME_DURATION

__all__ = ["TickSchedule", "run_clock"]


class TickSchedule:
    """Deadlines of a periodic tick and what to do when the loop falls behind.

    Args:
        start: time of tick 0 (any monotonic clock, in seconds).
        period: seconds between ticks.
        max_catch_up: ticks that may run back to back after a stall before the
            schedule gives up on them and re-anchors at "now". 5 ticks = 100 ms:
            a short stall is absorbed by the consumers' jitter buffers when its
            frames follow at once; a long one would only turn into a burst that
            overflows them, so those ticks are skipped (counted as slips).
    """

    def __init__(self, start: float, period: float = FRAME_DURATION, max_catch_up: int = 5) -> None:
        self.period = period
        self.max_catch_up = max_catch_up
        self._start = start
        #: Index of the next tick to run.
        self.next_tick = 1
        #: Ticks skipped because the loop was too late to run them.
        self.slipped = 0

    @property
    def next_deadline(self) -> float:
        """When the next tick is due."""
        return self._start + self.next_tick * self.period

    def due(self, now: float) -> tuple[int, float] | None:
        """If the next tick is due at *now*, consume it and return (index, lateness).

        Returns None when it is not due yet. When *now* is more than
        ``max_catch_up`` periods past the deadline, the missed ticks are skipped
        and the schedule re-anchors so that the returned tick is due now.
        """
        lateness = now - self.next_deadline
        if lateness < 0:
            return None
        behind = int(lateness / self.period)
        if behind > self.max_catch_up:
            self.slipped += behind
            self._start += behind * self.period
            lateness -= behind * self.period
        tick = self.next_tick
        self.next_tick += 1
        return tick, lateness


async def run_clock(
    on_tick: Callable[[int, float], None],
    *,
    period: float = FRAME_DURATION,
    schedule: TickSchedule | None = None,
) -> None:
    """Call ``on_tick(index, lateness)`` every *period* seconds until cancelled.

    The callback runs on the event loop and must not block; exceptions it
    raises propagate and end the clock (the engine treats that as fatal).
    Cancelling is safe at any time.
    """
    loop = asyncio.get_running_loop()
    schedule = schedule or TickSchedule(loop.time(), period)
    while True:
        delay = schedule.next_deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while (due := schedule.due(loop.time())) is not None:
            on_tick(*due)
