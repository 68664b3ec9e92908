"""A session's bounded queue of ready-to-send 20 ms frames (pure, no I/O).

The producer fills it a few hundred milliseconds ahead of the clock; the clock
takes one frame per tick. Both run on the event loop thread, so no locking.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

__all__ = ["Frame", "FrameRing"]


class Frame(NamedTuple):
    """One 20 ms frame: an Opus packet or 3840 bytes of PCM.

    *position* is the media time (seconds) at which the frame starts.
    """

    data: bytes
    samples: int
    position: float


class FrameRing:
    """Bounded FIFO of frames with a low-water mark for refills.

    Args:
        capacity: most frames held. 20 frames = 400 ms of audio: enough to ride
            out a slow batch on a loaded machine, small enough that pause, seek and
            volume changes are heard quickly.
        low_water: the producer is woken to refill when the ring holds this many
            frames or fewer (10 = 200 ms left).
    """

    def __init__(self, capacity: int = 20, low_water: int = 10) -> None:
        if not 0 <= low_water < capacity:
            raise ValueError("need 0 <= low_water < capacity")
        self.capacity = capacity
        self.low_water = low_water
        self._frames: deque[Frame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def space(self) -> int:
        """How many frames fit before the ring is full."""
        return self.capacity - len(self._frames)

    @property
    def needs_refill(self) -> bool:
        """True when the ring is at or below its low-water mark."""
        return len(self._frames) <= self.low_water

    def extend(self, frames: list[Frame]) -> list[Frame]:
        """Append as many of *frames* as fit; return the ones that did not.

        A converted batch can come out a frame or two longer than asked (codec
        frame sizes do not divide 20 ms); the producer keeps the rest for later.
        """
        room = self.space
        self._frames.extend(frames[:room])
        return frames[room:]

    def pop(self) -> Frame | None:
        """Take the oldest frame, or None when empty (an underrun)."""
        return self._frames.popleft() if self._frames else None

    def clear(self) -> None:
        """Drop every frame (seek, stop)."""
        self._frames.clear()
