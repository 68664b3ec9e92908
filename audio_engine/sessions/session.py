"""One session: the state of one guild's or one user's stream inside the engine.

A ``Session`` is plain state owned by the ``SessionManager`` and touched only on
the event loop thread: its producer task fills ``ring``, the clock drains it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from applog import SessionLogger, session_logger
from audio_engine.audio.formats import OutputFormat
from audio_engine.wire.ordering import ReplyGate
from audio_engine.wire.ring import FrameRing
from protocol.filters import Filters, Loudness
from protocol.messages import FinishReason

__all__ = [
    "MAX_CROSSFADE",
    "MAX_POSITION",
    "REDO_LEAD",
    "FinishReason",
    "NextState",
    "NextTrack",
    "PlayRequest",
    "Resume",
    "Session",
    "SessionState",
    "VoiceSink",
    "effective_filters",
]

#: Longest crossfade between two tracks, seconds.
MAX_CROSSFADE = 12.0
#: Furthest media position (seconds) a source is asked to seek to: FFmpeg counts
#: in int64 microseconds, and no track is 100 days long.
MAX_POSITION = 1e7
#: Frames a live change (or a "play now") leaves queued before the frames it redoes
#: (160 ms): time for the codec job that redoes them (a new filter graph, a primed
#: encoder), even on a loaded machine, and the change is still heard within 300 ms.
REDO_LEAD = 8

log = logging.getLogger("audio_engine.sessions.session")


class SessionState(StrEnum):
    """The state strings of ``/status``, the same as the Go engine's."""

    IDLE = "idle"
    EXTRACTING = "extracting"
    STREAMING = "streaming"
    PAUSED = "paused"
    #: Ended: the track finished (stopped or replaced sessions are removed).
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class PlayRequest:
    """A validated play: what to open, how to send it, where to start."""

    url: str
    output: OutputFormat = OutputFormat.PCM
    start_at: float = 0.0
    duration: float | None = None
    volume: float = 1.0
    #: Whom the play is for, for fair resolution slots (the ``X-Caller`` header;
    #: empty: the session id).
    caller: str = ""
    #: Filters to play with (Lavalink's object, our loudness included).
    filters: Filters = field(default_factory=Filters)
    #: The engine's default loudness applies unless the filters say otherwise (a
    #: filters object with ``"loudness": null`` switches it off).
    loudness_default: bool = True
    #: Crossfade into the next track, seconds (0: gapless).
    crossfade: float = 0.0
    #: Track position (seconds) at which the play ends as if the track had ended
    #: there (Lavalink's ``endTime``); None: at the track's end.
    end_at: float | None = None


class VoiceSink(Protocol):
    """Where a ``voice`` session's frames go instead of the socket consumers: its
    guild's Discord voice connection, owned by the worker (``cluster.voice``)."""

    @property
    def ready(self) -> bool:
        """Frames can go out now. While not (connecting, reconnecting), the clock
        takes none of the session's frames: its track waits, as when paused."""
        ...

    def send_opus(self, frame: bytes) -> bool:
        """Send one 20 ms Opus packet now, never waiting; False if it was dropped."""
        ...


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a session moved from a dead worker picks up its stream: the same Ogg
    logical stream continues (serial, next granule and page sequence), and a stream
    that had sent ``ready`` sends neither ``ready`` nor header pages again."""

    serial: int
    granule: int
    sequence: int
    ready_sent: bool
    paused: bool = False


class NextState(StrEnum):
    """Where a next track (``POST /session/{id}/next``) stands."""

    #: Waiting until the current track is close enough to its end.
    WAITING = "waiting"
    #: Being resolved and opened.
    OPENING = "opening"
    #: Opened: it joins the stream when the current track ends (or fades out).
    READY = "ready"
    #: It could not be opened: when the current track ends, the session ends with an
    #: ``error`` for this play (a "play now" track reports its error at once instead,
    #: and the current track plays on).
    FAILED = "failed"


@dataclass(slots=True)
class NextTrack:
    """The track that follows the current one in the same stream (gapless or
    crossfaded), with its own play id."""

    request: PlayRequest
    play_id: int
    #: Its own filters; None keeps the session's.
    filters: Filters | None = None
    loudness_default: bool = True
    state: NextState = NextState.WAITING
    error: str = ""
    error_stage: str = ""
    title: str = ""
    duration: float | None = None
    #: Replace the current track as soon as this one has audio ("play now"), rather
    #: than after it; if it cannot be opened, the current track plays on.
    now: bool = False
    #: A "play now" track: the next track it displaced, set again if it fails.
    displaced: NextTrack | None = None
    #: A "play now" track: holds its ``error`` line until the request's reply is out.
    gate: ReplyGate | None = None


def effective_filters(filters: Filters, *, volume: float, loudness_default: bool,
                      default_loudness: Loudness | None) -> Filters:
    """What a track plays with: *filters*, the session *volume* folded into Lavalink's
    ``volume``, and the engine's default loudness where the filters leave it open."""
    update: dict[str, object] = {}
    if filters.loudness is None and loudness_default and default_loudness is not None:
        update["loudness"] = default_loudness
    if volume != 1.0:
        update["volume"] = (filters.volume if filters.volume is not None else 1.0) * volume
    return filters.model_copy(update=update) if update else filters


class Session:
    """Everything the engine knows about one session id.

    The lifecycle is ``extracting -> streaming <-> paused -> stopped | error``.
    ``ready`` is written by the clock once the first frames exist and the play's
    reply has gone out (``gate``); audio starts at ``audio_at`` (see
    ``audio_engine.wire.ordering``).
    """

    def __init__(
        self, session_id: str, request: PlayRequest, *, serial: int, now: float,
        play_id: int = 0, ring: FrameRing | None = None, gate: ReplyGate | None = None,
    ) -> None:
        self.id = session_id
        self.request = request
        #: Engine-wide number of this play, carried by its events as ``"play"`` so a
        #: consumer can tell a replaced stream's late events from the new one's.
        self.play_id = play_id
        #: Random serial of this play's Ogg logical stream.
        self.serial = serial
        self.state = SessionState.EXTRACTING
        self.paused = False
        self.volume = request.volume
        #: The filters set (Lavalink's object), and whether the default loudness applies.
        self.filters = request.filters
        self.loudness_default = request.loudness_default
        #: Crossfade into the next track, seconds.
        self.crossfade = request.crossfade
        #: The track that follows in the same stream, if one was set.
        self.next: NextTrack | None = None
        #: Track position (seconds) at which the play ends (``PlayRequest.end_at``).
        self.end_at = request.end_at
        #: The voice connection a ``voice`` session's frames go to (None: the socket).
        self.voice: VoiceSink | None = None
        self.ring = ring if ring is not None else FrameRing()
        #: The Ogg stream's two header pages (Ogg formats), once the source opened.
        self.header_pages = b""
        #: Set by the tick when the ring reaches its low-water mark.
        self.wake = asyncio.Event()
        self.wake.set()
        self.producer: asyncio.Task[None] | None = None
        #: Holds this play's events until its HTTP reply has been written.
        self.gate = gate if gate is not None else ReplyGate(now)

        # Emission state (the clock's side).
        self.ready_pending = False
        self.ready_sent = False
        self.headers_sent = False
        #: Number of the last frame sent (-1: none yet), and its Ogg page's granule and
        #: sequence numbers (where a moved session's stream goes on).
        self.emitted = -1
        self.granule = 0
        self.sequence = 1
        #: Earliest time (the manager's clock) of the first audio packet; set
        #: when ``ready`` is written.
        self.audio_at = math.inf
        #: The producer reached the end of the source.
        self.source_done = False
        #: The current track has ended and the next one is still opening: an empty
        #: ring is a wait, not an underrun.
        self.between_tracks = False
        #: Why the producer failed, once it has; the clock ends the session after
        #: sending what is already in the ring.
        self.failure: str | None = None
        #: Which stage failed ("resolve", "source", "stuck", ...), for the error event.
        self.error_stage = ""
        #: The session ended (finished or failed); no more output.
        self.ended = False

        # Seeking and live changes: the API sets a target (a position, or the first
        # frame to redo), the producer carries it out; frames produced for an older
        # generation are stale.
        self.seek_target: float | None = None
        self.redo_from: int | None = None
        self.generation = 0

        # What operators see.
        self.title = ""
        self.duration: float | None = request.duration
        self.position = request.start_at
        self.passthrough = False
        self.error_message = ""
        self.bytes_sent = 0
        self.frames_sent = 0
        self.underruns = 0
        #: Ticks on which this session was due a frame (playing, not paused).
        self.playing_ticks = 0
        self.underrun_since: float | None = None
        self.retries = 0
        self.requested_at = now
        self.first_audio_at: float | None = None
        self.last_touched = now
        #: Set when the session continues a stream moved from a dead worker.
        self.resume: Resume | None = None
        self.log: SessionLogger = session_logger(log, session_id)

    @property
    def status(self) -> SessionState:
        """The state as ``/status`` reports it (pause shows while live)."""
        if self.paused and self.state in (SessionState.EXTRACTING, SessionState.STREAMING):
            return SessionState.PAUSED
        return self.state

    @property
    def live(self) -> bool:
        """Still producing or playing (not finished, not failed)."""
        return not self.ended

    def redo_point(self) -> int:
        """The first queued frame a live change may drop and make again: ``REDO_LEAD``
        frames after the oldest one queued (the next to send if none is)."""
        ring = self.ring
        first = ring.first_index
        if first is None:
            return self.emitted + 1
        return min(first + REDO_LEAD, ring.end_index or first)

    def touch(self, now: float) -> None:
        """Record API activity (for the idle timeout)."""
        self.last_touched = now
