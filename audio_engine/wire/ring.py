"""A session's bounded queue of ready-to-send 20 ms frames (pure, no I/O).

The producer fills it ahead of the clock with frames that are already complete
socket packets (Ogg page built, length and id prefixed), so the clock's per-frame
work is a pop and an append. Producer and clock both touch it on the event loop
thread, so it needs no lock.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

__all__ = ["DEFAULT_RING_SIZE", "Frame", "FrameRing", "RingSize"]


class Frame(NamedTuple):
    """One 20 ms frame, ready for the socket.

    *packet* is the complete audio packet (length prefix, id field, payload);
    *payload_size* is its payload length (what ``bytes_sent`` counts). *position*
    is the track time (seconds) at which the frame starts. For Ogg sessions
    *granule* and *sequence* are the page's numbers (else 0); *last* marks the EOS
    page. *number* counts the session's frames from 0 (a live change redoes the
    frames from one number on); *start*, when set, is the play that begins with this
    frame (the next track of a gapless queue).
    """

    packet: bytes
    payload_size: int
    position: float
    granule: int = 0
    sequence: int = 0
    last: bool = False
    number: int = 0
    start: object = None


class RingSize(NamedTuple):
    """How far ahead a producer runs: *capacity* frames at most, refilled when
    *low_water* or fewer remain (a refill is ``capacity - low_water`` frames)."""

    capacity: int
    low_water: int


#: The default ring: 40 frames refilled at 15 (see ``FrameRing``).
DEFAULT_RING_SIZE = RingSize(40, 15)


class FrameRing:
    """Bounded FIFO of frames with a low-water mark for refills.

    Args:
        size: capacity and low-water mark. The default, 40 frames refilled at 15,
            keeps 300-800 ms ready: enough to ride out a slow batch on a loaded
            machine, in refills of 500 ms so that each costs one trip to the
            worker pools per half second.
    """

    def __init__(self, size: RingSize = DEFAULT_RING_SIZE) -> None:
        self._frames: deque[Frame] = deque()
        self.resize(size)

    def resize(self, size: RingSize) -> None:
        """Change capacity and low-water mark (frames already held are kept)."""
        if not 0 <= size.low_water < size.capacity:
            raise ValueError("need 0 <= low_water < capacity")
        self.capacity = size.capacity
        self.low_water = size.low_water

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def space(self) -> int:
        """How many frames fit before the ring is full."""
        return max(0, self.capacity - len(self._frames))

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

    @property
    def first_index(self) -> int | None:
        """Index of the oldest frame held, if any."""
        return self._frames[0].number if self._frames else None

    @property
    def end_index(self) -> int | None:
        """Index after the newest frame held, if any."""
        return self._frames[-1].number + 1 if self._frames else None

    def truncate(self, index: int) -> int:
        """Drop the frames numbered *index* and later; returns how many were dropped."""
        dropped = 0
        while self._frames and self._frames[-1].number >= index:
            self._frames.pop()
            dropped += 1
        return dropped
