"""Sinks: where one session's audio goes after the router.

A sink is fed payload bytes by the socket reader and must never make it wait.
``OpusSink`` reassembles the session's Ogg stream itself (the Go engine's chunks
are not always page-aligned, and a new logical stream may start mid-session: it
is followed, not dropped) and keeps raw 20 ms Opus frames in a bounded jitter
buffer; when full, the oldest frames go (counted).

Two ways out:

* pull (Discord): ``pop()`` from discord.py's player thread; the buffer is a
  ``deque``, whose appends and pops are atomic, so no lock is needed;
* push (browser): subclasses override ``frame_ready``, called on the event loop
  for every frame as it arrives (the engine already paces frames in real time).
"""

from __future__ import annotations

from collections import deque

from protocol import Event, OggOpusReader, OpusStreamStart

__all__ = ["OpusSink", "Sink"]


class Sink:
    """What the router talks to. Every method runs on the event loop and must
    return quickly (no I/O waits)."""

    #: Name for logs and metrics.
    kind = "sink"

    def feed(self, payload: bytes) -> None:
        """Audio payload bytes of this sink's session, as they arrived."""

    def event(self, event: Event) -> None:
        """An event line of this sink's session."""

    def reset(self) -> None:
        """The socket reconnected: forget partial data."""

    def close(self) -> None:
        """The sink was replaced or removed; release what it holds. Idempotent."""


class OpusSink(Sink):
    """Ogg reassembly plus a bounded jitter buffer of raw Opus frames.

    Args:
        capacity: frames held at most. 50 frames = 1 s: far above a healthy
            jitter target (the engine sends in real time), and a bound on how far
            behind a stalled consumer can fall before old audio is dropped.
    """

    kind = "opus"

    def __init__(self, capacity: int = 50) -> None:
        self.capacity = capacity
        self._reader = OggOpusReader()
        self._frames: deque[bytes] = deque()
        #: Frames received, dropped because the buffer was full, and streams seen.
        self.received = 0
        self.dropped = 0
        self.streams = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._frames)

    def feed(self, payload: bytes) -> None:
        """See ``Sink.feed``."""
        for item in self._reader.receive_packets(payload):
            if isinstance(item, bytes):
                self.received += 1
                self.push(item)
            else:
                self.streams += 1
                self.stream_started(item)

    def push(self, frame: bytes) -> None:
        """Queue one frame, dropping the oldest when full."""
        frames = self._frames
        if len(frames) >= self.capacity:
            frames.popleft()
            self.dropped += 1
        frames.append(frame)
        self.frame_ready(frame)

    def pop(self) -> bytes | None:
        """Take the oldest frame, or None when empty (thread-safe)."""
        try:
            return self._frames.popleft()
        except IndexError:
            return None

    def clear(self) -> None:
        """Drop every queued frame."""
        self._frames.clear()

    def frame_ready(self, frame: bytes) -> None:
        """Hook for push-style sinks; called after each frame is queued."""

    def stream_started(self, start: OpusStreamStart) -> None:
        """Hook: a new Ogg logical stream began (a new play, or a Go retry)."""

    def reset(self) -> None:
        """See ``Sink.reset``."""
        self._reader.reset()

    def close(self) -> None:
        """See ``Sink.close``."""
        self.closed = True
        self._frames.clear()

