"""Output time ↔ track time, when a timescale filter makes them differ.

With ``timescale`` speed 1.25, 16 s of output carry 20 s of the track; positions
reported to users, seeks and the end of the track are all in *track* time. The map is
piecewise linear: from output sample ``index`` on, each output second advances the
track by ``tempo`` seconds, until the next segment (a filter change) starts. Pure
arithmetic, no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

from protocol import SAMPLE_RATE

__all__ = ["PositionMap", "Segment"]

#: Segments kept (older ones are forgotten first); a chain adds one per filter change.
_MAX_SEGMENTS: Final = 64


@dataclass(frozen=True, slots=True)
class Segment:
    """From output sample ``index`` on, track time is ``position + (i - index) · tempo / rate``."""

    index: int
    position: float
    tempo: float


class PositionMap:
    """Maps output sample numbers to track seconds and back.

    Args:
        position: track time of output sample 0.
        tempo: track seconds per output second at the start.
        max_segments: how many segments to keep; queries before the oldest kept segment
            extrapolate it. Bounded because a session can change filters forever.
    """

    def __init__(
        self, position: float = 0.0, tempo: float = 1.0, *, max_segments: int = _MAX_SEGMENTS
    ) -> None:
        self._segments: list[Segment] = [Segment(0, position, tempo)]
        self._starts: list[int] = [0]
        self._max = max_segments

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    def add(self, index: int, position: float, tempo: float) -> None:
        """From output sample ``index`` on, the track is at ``position`` and moves at
        ``tempo``. Replaces any segment starting at or after ``index``."""
        keep = bisect.bisect_left(self._starts, index)
        del self._segments[keep:]
        del self._starts[keep:]
        self._segments.append(Segment(index, position, tempo))
        self._starts.append(index)
        if len(self._segments) > self._max:
            del self._segments[: len(self._segments) - self._max]
            del self._starts[: len(self._starts) - self._max]

    def _segment(self, index: int) -> Segment:
        found = bisect.bisect_right(self._starts, index) - 1
        return self._segments[max(found, 0)]

    def track_time(self, index: int) -> float:
        """Track seconds at output sample ``index``."""
        segment = self._segment(index)
        return segment.position + (index - segment.index) * segment.tempo / SAMPLE_RATE

    def tempo_at(self, index: int) -> float:
        """Track seconds per output second at output sample ``index``."""
        return self._segment(index).tempo

    def output_index(self, position: float) -> int:
        """The first output sample at or after track time ``position`` (positions only
        grow with the index, so this inverts ``track_time``)."""
        chosen = self._segments[0]
        for segment in self._segments:
            if segment.position <= position:
                chosen = segment
            else:
                break
        offset = (position - chosen.position) * SAMPLE_RATE / chosen.tempo
        return chosen.index + max(0, _ceil(offset))


def _ceil(value: float) -> int:
    whole = int(value)
    return whole if whole >= value - 1e-9 else whole + 1
