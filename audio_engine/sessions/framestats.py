"""Per-minute frame health, as Lavalink reports it (``frameStats``).

Node balancers written for Lavalink read ``sent``, ``nulled`` and ``deficit``:
the average, over the sessions that played for the whole last minute, of frames
sent, of ticks with no frame ready (an underrun: Lavalink's "nulled"), and of
frames missing from the 3000 a minute should carry (ticks the clock skipped).

Pure arithmetic over cumulative counters; the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol import FRAMES_PER_SECOND

__all__ = ["FrameStats", "FrameStatsWindow", "SessionCounters"]

#: (ticks the session was playing, frames sent, ticks with no frame), cumulative.
SessionCounters = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class FrameStatsWindow:
    """One finished window."""

    sent: int
    nulled: int
    deficit: int
    #: Sessions that played for the whole window (the averages are over them).
    players: int
    #: Clock ticks that ran during the window.
    ticks: int


class FrameStats:
    """Rolls per-session counters into per-window averages.

    Args:
        start: time (seconds, any monotonic clock) the first window opens.
        window: window length; Lavalink's is a minute.
    """

    def __init__(self, start: float, window: float = 60.0) -> None:
        self.window = window
        self.expected = round(window * FRAMES_PER_SECOND)
        self._start = start
        self._start_ticks = 0
        self._baseline: dict[str, SessionCounters] = {}
        #: The last finished window, if any.
        self.last: FrameStatsWindow | None = None

    def due(self, now: float) -> bool:
        """Whether the current window has ended (cheap: call on every tick)."""
        return now - self._start >= self.window

    def roll(self, now: float, ticks: int, counters: Mapping[str, SessionCounters]
             ) -> FrameStatsWindow:
        """Close the window at *now* (*ticks*: the clock's cumulative tick count)
        and open the next; *counters* are every live session's cumulative ones."""
        window_ticks = ticks - self._start_ticks
        sent = nulled = players = 0
        for session_id, (playing, frames, misses) in counters.items():
            before = self._baseline.get(session_id)
            if before is None:
                continue
            if playing - before[0] < window_ticks or window_ticks <= 0:
                continue  # paused, started or ended within the window
            players += 1
            sent += frames - before[1]
            nulled += misses - before[2]
        if players:
            average_sent = round(sent / players)
            average_nulled = round(nulled / players)
            result = FrameStatsWindow(
                average_sent, average_nulled,
                max(0, self.expected - average_sent - average_nulled), players, window_ticks,
            )
        else:
            result = FrameStatsWindow(0, 0, 0, 0, window_ticks)
        self.last = result
        self._start = now
        self._start_ticks = ticks
        self._baseline = dict(counters)
        return result
