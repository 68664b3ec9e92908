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
  for every frame. ``PacedOpusSink`` releases them no faster than real time:
  our engine paces its frames, but a Go engine sends everything that piled up
  during a pause at once when resumed (a catch-up burst of the whole pause), and
  a push consumer would pass that on as seconds of audio in a moment. A pull
  consumer needs no pacer: it takes one frame per 20 ms, and the bounded buffer
  drops what a burst adds beyond it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from protocol import FRAME_DURATION, Event, OggOpusReader, OpusStreamStart

__all__ = ["FramePacer", "OpusSink", "PacedOpusSink", "Sink"]


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
                self.accept(item)
            else:
                self.streams += 1
                self.stream_started(item)

    def accept(self, frame: bytes) -> None:
        """One frame out of the Ogg stream: straight to ``push`` (a pacing sink
        delays it)."""
        self.push(frame)

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



#: A token counts as whole from here (float sums of elapsed time fall short by ulps,
#: which would re-arm a timer for a nanosecond).
_ONE = 1.0 - 1e-9


class FramePacer:
    """Releases frames no faster than real time; pure (the caller passes ``now``).

    A token bucket: one frame per ``interval / speed`` seconds, up to ``credit``
    frames at once. Frames that must wait queue up to ``capacity``; beyond that
    the oldest waiting frame is dropped (counted), so a long burst costs at most
    ``capacity`` frames of delay and skips ahead rather than falling behind.

    Args:
        interval: seconds of audio per frame (20 ms).
        speed: release rate relative to real time. Slightly above 1, so a
            sender whose clock runs a little fast never builds a queue, and the
            queue left by a burst drains (2 % faster: 0.5 s in 25 s).
        credit: frames released at once without waiting. 10 frames = 200 ms:
            what a healthy engine sends late and then at once (our engine's
            clock catches up to 5 late ticks back to back; a loaded reader
            takes several frames in one read) passes unchanged, so pacing never
            makes late audio later.
        capacity: frames waiting at most. 25 frames = 0.5 s of extra delay at
            worst after a burst.
    """

    def __init__(self, *, interval: float = FRAME_DURATION, speed: float = 1.02,
                 credit: int = 10, capacity: int = 25) -> None:
        if interval <= 0 or speed <= 0 or credit < 1 or capacity < 1:
            raise ValueError("interval, speed, credit and capacity must be positive")
        self.rate = speed / interval
        self.credit = float(credit)
        self.capacity = capacity
        self._tokens = float(credit)
        self._updated: float | None = None
        self._waiting: deque[bytes] = deque()
        #: Frames dropped because too many were waiting; frames that had to wait.
        self.dropped = 0
        self.delayed = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, frame: bytes, now: float) -> list[bytes]:
        """Add *frame*; returns the frames to deliver now, in order."""
        self._refill(now)
        if not self._waiting and self._tokens >= _ONE:
            self._tokens -= 1.0
            return [frame]
        if len(self._waiting) >= self.capacity:
            self._waiting.popleft()
            self.dropped += 1
        self._waiting.append(frame)
        self.delayed += 1
        return self.release(now)

    def release(self, now: float) -> list[bytes]:
        """The waiting frames whose time has come, in order."""
        self._refill(now)
        out: list[bytes] = []
        waiting = self._waiting
        while waiting and self._tokens >= _ONE:
            self._tokens -= 1.0
            out.append(waiting.popleft())
        return out

    def next_release(self) -> float | None:
        """When the next waiting frame may go (None when nothing waits)."""
        if not self._waiting or self._updated is None:
            return None
        return self._updated + max(0.0, 1.0 - self._tokens) / self.rate

    def clear(self) -> None:
        """Drop every waiting frame (not counted as dropped)."""
        self._waiting.clear()

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self._tokens = min(self.credit,
                               self._tokens + max(0.0, now - self._updated) * self.rate)
        self._updated = now


class PacedOpusSink(OpusSink):
    """An ``OpusSink`` whose frames reach ``push`` no faster than real time (see
    ``FramePacer``); for push consumers. Runs on the event loop; the one timer it
    arms is cancelled by ``close``.

    Args:
        capacity: the frame buffer's bound (see ``OpusSink``).
        pacer: the release policy (a default ``FramePacer`` when None).
    """

    def __init__(self, capacity: int = 50, pacer: FramePacer | None = None) -> None:
        super().__init__(capacity=capacity)
        self.pacer = pacer or FramePacer()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def accept(self, frame: bytes) -> None:
        """See ``OpusSink.accept``: paced."""
        if self.closed:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        dropped = self.pacer.dropped
        for ready in self.pacer.offer(frame, loop.time()):
            self.push(ready)
        self.dropped += self.pacer.dropped - dropped
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None or self._loop is None:
            return
        when = self.pacer.next_release()
        if when is not None:
            self._timer = self._loop.call_at(when, self._drain)

    def _drain(self) -> None:
        self._timer = None
        if self.closed or self._loop is None:
            return
        for ready in self.pacer.release(self._loop.time()):
            self.push(ready)
        self._arm()

    def close(self) -> None:
        """See ``Sink.close``; also cancels the release timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pacer.clear()
        super().close()
