"""What a worker tells its front about itself, and the engine's identity: plain values
that both sides import without the codec stack (the front never loads PyAV)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

__all__ = [
    "CLOCK_STALL_SECONDS",
    "FEATURES",
    "VERSION",
    "SessionSnapshot",
    "VoiceServer",
    "VoiceSnapshot",
    "WorkerReport",
    "open_fds",
    "rss_megabytes",
]

#: A clock whose last tick is older than this is stalled: the engine is not ready.
#: 50 ticks; a loop that cannot tick for a second is sending nobody audio.
CLOCK_STALL_SECONDS = 1.0

try:
    VERSION: str = version("audiogate")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"

#: What this engine does beyond the Go engine's API, listed in ``/health`` as
#: ``features`` (an engine whose ``/health`` has none is a Go engine): play ids on
#: events and ``X-Play-Id``, live volume and seek, the consumer hello, ``finished``
#: events with a ``reason``, Lavalink's filters (``/session/{id}/filters``), the next
#: track of a gapless queue (``/session/{id}/next``) and crossfades between tracks.
FEATURES = ("play_id", "volume", "seek", "hello", "finish_reason", "filters", "next_track",
            "crossfade", "play_now")


def rss_megabytes() -> float:
    """This process's resident memory, MB."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        import resource  # a fallback off Linux only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    """Descriptors this process has open (-1 when it cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """What the front keeps of a live session, to move it if its worker dies and to
    charge its cost (``WorkerReport``)."""

    play_id: int
    position: float
    paused: bool
    ready_sent: bool
    serial: int
    granule: int
    sequence: int
    passthrough: bool
    #: Filters it plays with now (Lavalink's names, volume and loudness included).
    filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VoiceServer:
    """Where a Lavalink player's voice connection goes: its guild and bot user, and
    the ``voice`` object the client sent (Discord's voice session, token, endpoint
    and, for DAVE, channel)."""

    guild_id: int
    user_id: int
    session_id: str
    token: str
    endpoint: str
    channel_id: int | None = None


@dataclass(frozen=True, slots=True)
class VoiceSnapshot:
    """A voice connection's state for Lavalink's ``playerUpdate``: connected, and the
    last heartbeat round trip (-1 while not connected)."""

    connected: bool
    ping_ms: int


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """A worker's state, sent to the front every ``LOAD_INTERVAL``."""

    at: float
    #: This process's CPU seconds (all threads), cumulative.
    cpu_seconds: float
    ticks: int
    slipped: int
    #: Empty-ring ticks of playing sessions, cumulative.
    nulled: int
    frames_sent: int
    #: Worst tick lateness since the last report, seconds.
    lateness: float
    pool_lag: float
    #: Monotonic time of the last tick (None: the clock has not started).
    last_tick_at: float | None
    rss_mb: float
    #: The bare codec pipeline timed in this worker at start-up, µs per frame (only
    #: the worker asked to calibrate; None otherwise).
    bare_micros: float | None = None
    #: Live sessions by id.
    sessions: dict[str, SessionSnapshot] = field(default_factory=dict)
    #: Sessions that ended but are still held (queryable until stopped or reaped).
    ended: frozenset[str] = frozenset()
    #: Voice connections (Lavalink players) by session id.
    voices: dict[str, VoiceSnapshot] = field(default_factory=dict)

    @property
    def playing(self) -> int:
        return sum(1 for s in self.sessions.values() if s.ready_sent and not s.paused)


