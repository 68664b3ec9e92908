"""Where the current track is: the position clock of one player. Pure: the time is
always passed in (``now``, from the shell's monotonic clock)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClockState", "PositionClock"]


@dataclass(frozen=True, slots=True)
class ClockState:
    """A copy of a clock (to put it back after a failed "play now")."""

    base: float
    running_since: float | None
    paused_at: float | None


class PositionClock:
    """Seconds into the current track.

    The position is ``base`` until the play's ``ready`` starts the clock
    (``run``); from then on it grows with time, except while paused.
    """

    __slots__ = ("_base", "_paused_at", "_running_since")

    def __init__(self, base: float = 0.0) -> None:
        self._base = base
        #: When the clock started (moved forward by the time spent paused).
        self._running_since: float | None = None
        self._paused_at: float | None = None

    @property
    def base(self) -> float:
        """The position the clock started from."""
        return self._base

    @property
    def running(self) -> bool:
        """The play's ``ready`` came: the clock counts."""
        return self._running_since is not None

    def position(self, now: float) -> float:
        """Seconds into the track at *now*."""
        return self.position_at(now)

    def position_at(self, at: float) -> float:
        """Seconds into the track at *at* (a paused clock stopped at its pause)."""
        if self._running_since is None:
            return self._base
        end = at if self._paused_at is None else min(self._paused_at, at)
        return self._base + max(0.0, end - self._running_since)

    def reset(self, base: float) -> None:
        """A new play from *base* seconds: stopped until it runs."""
        self._base = base
        self._running_since = None
        self._paused_at = None

    def set_base(self, base: float) -> None:
        """The engine says the play starts (started) at *base* seconds."""
        self._base = base

    def run(self, now: float, *, paused: bool) -> None:
        """The play's ``ready`` came at *now* (the clock counts unless *paused*)."""
        self._running_since = now
        self._paused_at = now if paused else None

    def stop_running(self) -> None:
        """The ``ready`` taken was not this play's after all: back to ``base``."""
        self._running_since = None

    def pause(self, now: float) -> None:
        """Stop counting at *now* (a clock that does not run yet is unchanged)."""
        if self._running_since is not None and self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        """Count again from *now* (the time paused does not count)."""
        if self._paused_at is not None and self._running_since is not None:
            self._running_since += now - self._paused_at
        self._paused_at = None

    def state(self) -> ClockState:
        """A copy, for ``restore``."""
        return ClockState(self._base, self._running_since, self._paused_at)

    def restore(self, state: ClockState) -> None:
        """Take back a copy made by ``state``."""
        self._base, self._running_since, self._paused_at = (
            state.base, state.running_since, state.paused_at)
