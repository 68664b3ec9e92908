"""When a session's event lines and first audio may be written (pure, no I/O).

The engine's timing contract (docs/protocol.md, "Timing") in three rules:

1. An event caused by an HTTP request (a play's ``ready`` or ``error``, the
   ``finished`` of a stop, the ``finished`` of the stream a play replaces) is
   written only after that request's reply has been written. The request holds a
   ``ReplyGate``; the API releases it once the reply went out, and for Go-style
   consumers the gate opens ``event_margin`` later still, so a consumer has
   handled the reply before the event arrives.
2. A session id's lines go out in the order they were made (``HeldLines`` keeps one
   FIFO per id), so a replaced stream's ``finished`` precedes the new ``ready``.
3. A play's first audio reaches a Go-style consumer no sooner than
   ``first_audio_margin`` of wall-clock time after its ``ready`` was written.

Both margins stretch with the host's CPU pressure (``pressure``: 0 to 1, the share
of recent time in which some task waited for a CPU; ``audio_engine.wire.pressure``
reads it): by ``1 + stretch * pressure``, up to five times at the default, since the
consumer is what waits for a CPU on a busy host while the engine's clock does not.

A consumer is Go-style unless it said ``"order":"any"`` in its hello; one Go-style
consumer connected makes the Go-style timing apply to every write, since every
write goes to every consumer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["REPLY_GATE_TIMEOUT", "HeldLines", "ReplyGate", "TimingPolicy"]

#: Seconds after which a gate opens although its reply was never confirmed (the
#: handler failed after starting the play, or the server dropped the response).
#: Replies take about a millisecond; 2 s only bounds how long lines can be held.
REPLY_GATE_TIMEOUT = 2.0


class ReplyGate:
    """Holds the events one HTTP request caused until its reply has been written.

    Args:
        now: creation time (the manager's monotonic clock).
        timeout: seconds after which the gate opens anyway.
    """

    __slots__ = ("deadline", "open_at")

    def __init__(self, now: float, timeout: float = REPLY_GATE_TIMEOUT) -> None:
        #: When the gate opens; infinite until the reply is confirmed.
        self.open_at = math.inf
        self.deadline = now + timeout

    def release(self, at: float) -> None:
        """The reply has been written; open at *at* (now plus any margin).
        Releasing twice keeps the earlier time."""
        self.open_at = min(self.open_at, at)

    @property
    def released(self) -> bool:
        """The reply was confirmed."""
        return self.open_at != math.inf

    def allows_ready(self, now: float) -> bool:
        """A play's ``ready`` may go out: its reply was written (no margin: the
        Node front subscribes to a session's events before it sends the play, so
        an early ``ready`` is kept; only its audio must wait for its stream), or
        nobody confirmed the reply in time."""
        return self.released or now >= self.deadline

    def is_open(self, now: float) -> bool:
        """Lines behind this gate may be written at *now*."""
        return now >= self.open_at or now >= self.deadline

    def expired(self, now: float) -> bool:
        """Open only because nobody confirmed the reply in time."""
        return not self.released and now >= self.deadline


class HeldLines:
    """Event lines waiting for their gates, one FIFO per session id.

    A line without a gate (the end of a track, a stall) waits only behind earlier
    lines of the same id. Size: a few lines per session at most, since every gate
    opens within ``REPLY_GATE_TIMEOUT``.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[bytes, ReplyGate | None]]] = {}

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def holds(self, session_id: str) -> bool:
        """True when lines of *session_id* are waiting."""
        return session_id in self._queues

    def add(self, session_id: str, line: bytes, gate: ReplyGate | None) -> None:
        """Queue *line* behind *gate* and behind the id's earlier lines."""
        self._queues.setdefault(session_id, deque()).append((line, gate))

    def due(self, now: float) -> tuple[list[bytes], int]:
        """Remove and return the lines that may go out at *now*, in order, and how
        many of them went out through an expired gate."""
        out: list[bytes] = []
        expired = 0
        for session_id in tuple(self._queues):
            queue = self._queues[session_id]
            while queue:
                line, gate = queue[0]
                if gate is not None and not gate.is_open(now):
                    break
                if gate is not None and gate.expired(now):
                    expired += 1
                out.append(line)
                queue.popleft()
            if not queue:
                del self._queues[session_id]
        return out, expired

    def drain(self) -> list[bytes]:
        """Remove and return every line, gates ignored (shutdown)."""
        out = [line for queue in self._queues.values() for line, _ in queue]
        self._queues.clear()
        return out


@dataclass(frozen=True, slots=True)
class TimingPolicy:
    """The two wall-clock margins of the contract, in seconds.

    Args:
        event_margin: from a request's reply being written to the first event it
            caused, for Go-style consumers.
        first_audio_margin: from a play's ``ready`` being written to its first
            audio packet, for Go-style consumers.
        pressure: the host's CPU pressure now, 0 to 1 (module docstring).
        stretch: how much full pressure lengthens the margins (4: to five times).
    """

    event_margin: float = 0.0
    first_audio_margin: float = 0.0
    pressure: Callable[[], float] = field(default=lambda: 0.0, compare=False)
    stretch: float = 4.0

    @property
    def factor(self) -> float:
        """What the margins are multiplied by now."""
        return 1.0 + self.stretch * self.pressure()

    def event_delay(self, go_style: bool) -> float:
        """Seconds between a reply and its events."""
        return self.event_margin * self.factor if go_style else 0.0

    def audio_delay(self, go_style: bool) -> float | None:
        """Seconds between ``ready`` and first audio; ``None`` means the first audio
        may share ``ready``'s write (every consumer takes any order)."""
        return self.first_audio_margin * self.factor if go_style else None
