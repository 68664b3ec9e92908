"""The session manager: the engine's registry of sessions and its 20 ms tick.

Every API operation and every tick runs on the event loop thread, so sessions
need no locks. Each session has its own producer task; the tick takes one frame
from every playing session and hands the whole batch to the consumer hub in one
write per consumer. Nothing here waits on a session: an empty ring is an
underrun of that session only.

Event lines follow the timing contract of ``audio_engine.wire.ordering``: events an
HTTP request caused wait behind that request's ``ReplyGate`` (the API releases
it once the reply is written, ``replied``), each session id's lines keep their
order, and a play's first audio waits a wall-clock margin after its ``ready``
while a Go-style consumer is connected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Protocol

from audio_engine.audio.filters import Filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.opus_encoder import (
    ComplexityDial,
    EncoderFactory,
    EncoderName,
    OpusFrameEncoder,
)
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import OpenGate
from audio_engine.sessions.framestats import FrameStats
from audio_engine.sessions.pools import ElasticPool
from audio_engine.sessions.producer import ProducerContext, run_producer
from audio_engine.sessions.session import (
    FinishReason,
    NextState,
    NextTrack,
    PlayRequest,
    Resume,
    Session,
    SessionState,
    VoiceSink,
)
from audio_engine.sources.media import DEFAULT_INDEX_BYTES, MediaSource, SourceOptions
from audio_engine.sources.resolver import Resolver
from audio_engine.wire.ordering import HeldLines, ReplyGate, TimingPolicy
from audio_engine.wire.ring import Frame
from protocol import FRAME_DURATION, Event, EventType, encode_event_line, encode_packet
from protocol.filters import Loudness

__all__ = [
    "REDO_LEAD",
    "Hub",
    "ManagerLimits",
    "NotPlayable",
    "Resume",
    "SessionManager",
    "TooManySessions",
]

#: Frames a live change leaves queued before the frames it redoes (160 ms): time for
#: the codec job that redoes them (a new filter graph, a primed encoder), even on a
#: loaded machine, and the change is still heard within 300 ms.
REDO_LEAD = 8

log = logging.getLogger(__name__)


def _pool_lag(*pools: Executor) -> float:
    """How far the busiest of *pools* is behind its deadlines now, seconds."""
    now = time.monotonic()
    return max((pool.overdue(now) for pool in pools if isinstance(pool, ElasticPool)),
               default=0.0)


class Hub(Protocol):
    """Where the manager's bytes go: the engine's front, which writes them to every
    socket consumer (``audio_engine.cluster``)."""

    @property
    def go_style_connected(self) -> bool:
        """A consumer that needs the Node-safe margins is connected."""
        ...

    def broadcast(self, parts: list[bytes], events: list[bytes], audio_packets: int, *,
                  announced: Sequence[str] = (),
                  headers: Sequence[tuple[str, bytes]] = ()) -> float | None:
        """Send one tick's messages (in order). *announced*: sessions whose ``ready``
        is among them; *headers*: header packets sent for the first time. Returns
        when they were written, or None when the hub says so later
        (``SessionManager.ready_written``)."""
        ...

    def send_event(self, line: bytes) -> None:
        """Send an event line outside a tick."""
        ...

    def forget(self, session_id: str) -> None:
        """The session sends no more audio (its header pages are not needed by
        consumers that connect later)."""
        ...


class TooManySessions(Exception):
    """A play would exceed the session limit."""


class NotPlayable(Exception):
    """The operation needs a live session (seek on an ended one, ...)."""


@dataclass(frozen=True, slots=True)
class ManagerLimits:
    """The manager's knobs, from the engine settings."""

    max_sessions: int = 1000
    idle_timeout: float = 1800.0
    stuck_threshold: float = 10.0
    source_retries: int = 3
    opus_complexity: int = 10
    opus_encoder: str = "opuslib"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    index_bytes: int = DEFAULT_INDEX_BYTES
    #: The engine's default loudness normalization (None: off).
    default_loudness: Loudness | None = None
    #: Seconds an accepted play's source may wait to be opened before the play fails
    #: with "the engine is too busy" (an accepted play is never silent for long).
    first_audio_wait: float = 1.0


class SessionManager:
    """Owns every session, its producer task, and the per-tick emission."""

    def __init__(
        self,
        *,
        hub: Hub,
        resolver: Resolver,
        read_pool: Executor,
        open_pool: Executor,
        codec_pool: Executor,
        metrics: EngineMetrics,
        limits: ManagerLimits,
        timing: TimingPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        complexity: ComplexityDial | None = None,
    ) -> None:
        self._hub = hub
        self.timing = timing or TimingPolicy()
        self._open_pool = open_pool
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        self._complexity = complexity or ComplexityDial(limits.opus_complexity)
        self._sessions: dict[str, Session] = {}
        #: Sessions the tick visits: live ones whose ``ready`` is due or sent.
        self._playing: dict[str, Session] = {}
        #: Event lines waiting for a reply gate or behind earlier lines of their id.
        self._held = HeldLines()
        #: Sessions whose ``ready`` went to the hub, waiting for the time it was written
        #: (their first audio is timed from it).
        self._unconfirmed: dict[str, Session] = {}
        #: Sessions with first frames whose ``ready`` has not been written yet.
        self._announcing: dict[str, Session] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: set[Future[None]] = set()
        self._context = ProducerContext(
            resolver=resolver,
            read_pool=read_pool,
            open_pool=open_pool,
            codec_pool=codec_pool,
            events=self,
            options=self._source_options,
            retries=limits.source_retries,
            encoder=self._encoder_factory,
            default_loudness=limits.default_loudness,
            gate=OpenGate(max_wait=limits.first_audio_wait,
                          pool_lag=lambda: _pool_lag(read_pool, codec_pool)),
        )
        self._plays = itertools.count(1)
        #: Lavalink-style per-minute frame health.
        self.frame_stats = FrameStats(clock())
        self.ticks = 0
        self.total_underruns = 0
        self.total_frames_sent = 0

    # -- queries -----------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """The session with this id, if any (live or ended)."""
        return self._sessions.get(session_id)

    @property
    def sessions(self) -> list[Session]:
        """Every session held, in creation order."""
        return list(self._sessions.values())

    def counts(self) -> Counter[str]:
        """Sessions by reported state."""
        return Counter(s.status.value for s in self._sessions.values())

    # -- API operations ------------------------------------------------------------

    def play(self, session_id: str, request: PlayRequest, *, play_id: int | None = None,
             resume: Resume | None = None, voice: VoiceSink | None = None) -> Session:
        """Start (or replace) *session_id*'s stream. Returns at once; resolution
        runs in the session's producer. *play_id* is given by the front (play ids
        are engine-wide); *resume* continues the stream of a session that was moved
        from a dead worker; *voice* is where a ``voice`` session's frames go.

        Raises:
            TooManySessions: when the live session limit is reached.
            ValueError: a ``voice`` play without *voice*.
        """
        if request.output is OutputFormat.VOICE and voice is None:
            raise ValueError("a voice session needs its voice connection")
        now = self._clock()
        old = self._sessions.get(session_id)
        live = sum(1 for s in self._sessions.values() if s.live and s is not old)
        if live >= self._limits.max_sessions:
            raise TooManySessions(
                f"too many sessions: the limit of {self._limits.max_sessions} is reached"
            )
        gate = ReplyGate(now)
        if old is not None:
            # The old stream's finished belongs to this request: after its reply,
            # before the new ready.
            self._post(session_id, self._finish(old, FinishReason.REPLACED), gate)
            del self._sessions[session_id]
        session = Session(session_id, request,
                          serial=resume.serial if resume else secrets.randbits(32), now=now,
                          play_id=play_id if play_id is not None else next(self._plays),
                          gate=gate)
        if resume is not None:
            session.resume = resume
            session.paused = resume.paused
            session.headers_sent = resume.ready_sent
        session.voice = voice
        self._sessions[session_id] = session
        session.producer = self._spawn(run_producer(session, self._context))
        session.log.info(
            "play %s (%s%s)", request.url, request.output.value,
            f", from {request.start_at:g} s" if request.start_at else "",
        )
        return session

    def stop(self, session_id: str, *, reason: FinishReason = FinishReason.STOPPED,
             gate: ReplyGate | None = None) -> None:
        """Stop and forget *session_id* (``finished`` with *reason* if it had sent
        ``ready``, held behind *gate* when a request caused it). Unknown ids are
        fine."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._post(session_id, self._finish(session, reason), gate)

    def reply_gate(self) -> ReplyGate:
        """A gate for the events of one request (release it with ``replied``)."""
        return ReplyGate(self._clock())

    def replied(self, gate: ReplyGate) -> None:
        """The reply of *gate*'s request has been written: its events may follow,
        after the event margin while a Go-style consumer is connected."""
        now = self._clock()
        gate.release(now + self.timing.event_delay(self._hub.go_style_connected))
        if gate.is_open(now):
            self._send_due(now)
        if self._announcing:
            self._schedule_flush()

    def pause(self, session_id: str) -> Session | None:
        """Pause output at once (idempotent). Returns None for unknown ids."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            if session.live and not session.paused:
                session.paused = True
                session.underrun_since = None
                session.log.info("paused at %.2f s", session.position)
        return session

    def resume(self, session_id: str) -> Session | None:
        """Resume output on the next tick, with no catch-up (no-op unless paused).
        Returns None for unknown ids."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            if session.paused:
                session.paused = False
                session.log.info("resumed at %.2f s", session.position)
        return session

    def set_volume(self, session_id: str, volume: float) -> Session | None:
        """Change the gain, heard within ``REDO_LEAD`` frames (see ``_redo``)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            if volume != session.volume:
                session.volume = volume
                self._redo(session)
                self._metrics.live_changes.labels("volume").inc()
                session.log.info("volume %.2f", volume)
        return session

    def set_filters(self, session_id: str, filters: Filters, *,
                    loudness_default: bool) -> Session | None:
        """Replace the session's filters (Lavalink's semantics: the object as a whole),
        heard within ``REDO_LEAD`` frames; they stay for the tracks that follow."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            changed = (filters, loudness_default) != (session.filters,
                                                      session.loudness_default)
            session.filters = filters
            session.loudness_default = loudness_default
            if session.next is not None:
                session.next.filters = None  # the change carries on to the next track
            if changed:
                self._redo(session)
                self._metrics.live_changes.labels("filters").inc()
                session.log.info("filters: %s", ", ".join(filters.active()) or "none")
        return session

    def set_end(self, session_id: str, end_at: float | None) -> Session | None:
        """The track position (seconds) at which the current play ends (None: at its
        end), checked on every frame sent. Returns None for unknown ids."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            session.end_at = end_at
        return session

    def set_crossfade(self, session_id: str, seconds: float) -> Session | None:
        """Crossfade length into the next track (0: gapless)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            session.crossfade = seconds
            session.wake.set()
        return session

    def set_next(self, session_id: str, request: PlayRequest, *, filters: Filters | None,
                 loudness_default: bool, play_id: int | None = None) -> NextTrack | None:
        """The track to play after the current one, in the same stream. Replaces a
        next track set before (unless that one already joined the stream). Returns None
        for unknown ids.

        Raises:
            NotPlayable: the session has ended.
        """
        session = self._sessions.get(session_id)
        if session is None:
            return None
        session.touch(self._clock())
        if not session.live:
            raise NotPlayable(f"session has ended ({session.state.value}); start a new play")
        nxt = NextTrack(request, play_id if play_id is not None else next(self._plays),
                        filters, loudness_default)
        session.next = nxt
        session.wake.set()
        session.log.info("next: play %d %s", nxt.play_id, request.url)
        return nxt

    def cancel_next(self, session_id: str) -> Session | None:
        """Forget the next track (one that already joined the stream plays on)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())
            if session.next is not None:
                session.log.info("next track (play %d) cancelled", session.next.play_id)
                session.next = None
                session.wake.set()
        return session

    def seek(self, session_id: str, position: float) -> Session | None:
        """Jump a live session to *position* seconds; the same Ogg stream goes on.

        Raises:
            NotPlayable: if the session has ended.
        """
        session = self._sessions.get(session_id)
        if session is None:
            return None
        session.touch(self._clock())
        if not session.live:
            raise NotPlayable(f"session has ended ({session.state.value})")
        self._restart_at(session, position)
        session.log.info("seek to %.2f s", position)
        return session

    def _restart_at(self, session: Session, position: float) -> None:
        """Drop the queued frames and have the producer continue from *position*."""
        session.seek_target = position
        session.redo_from = None
        session.generation += 1
        session.ring.clear()
        session.position = position
        session.underrun_since = None
        session.source_done = False
        session.wake.set()

    def _redo(self, session: Session) -> None:
        """Have the frames queued after the next ``REDO_LEAD`` made again (a live change):
        they are dropped now, the producer redoes them with the session's settings, and
        the same Ogg stream goes on."""
        if not session.live:
            return
        ring = session.ring
        first = ring.first_index
        cut = session.emitted + 1 if first is None else min(first + REDO_LEAD, ring.end_index
                                                            or first)
        ring.truncate(cut)
        session.redo_from = cut if session.redo_from is None else min(session.redo_from, cut)
        session.generation += 1
        session.source_done = False
        session.underrun_since = None
        session.wake.set()

    def touch(self, session_id: str) -> None:
        """Record API activity on *session_id* (for the idle timeout)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.touch(self._clock())

    # -- producer callbacks (SessionEvents) ----------------------------------------

    def source_opened(self, session: Session, seconds: float) -> None:
        self._metrics.resolution.observe(seconds)
        session.log.debug("source opened in %.1f ms", seconds * 1000)

    def source_ready(self, session: Session) -> None:
        if session.ended:
            return
        session.ready_pending = True
        self._playing[session.id] = session
        self._announcing[session.id] = session
        self._schedule_flush()

    def source_retried(self, session: Session) -> None:
        self._metrics.source_retries.inc()

    def source_failed(self, session: Session, message: str, stage: str) -> None:
        if session.ended:
            return
        self._metrics.session_errors.labels(stage).inc()
        session.log.warning("failed (%s): %s", stage, message)
        if session.ready_sent and len(session.ring) and not session.paused:
            # Let the clock send what is already queued, then the error.
            session.failure = message
            session.error_stage = stage
            return
        self._post(session.id, self._fail(session, message, stage), session.gate)

    def retire(self, source: MediaSource) -> None:
        future = self._open_pool.submit(source.close)
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    # -- the tick ------------------------------------------------------------------

    def tick(self, index: int, lateness: float) -> None:
        """Emit one frame for every playing session and hand the batch to the hub."""
        started = time.perf_counter()
        self.ticks += 1
        self._emit(tuple(self._playing.values()))
        self._metrics.tick_lateness.observe(lateness)
        self._metrics.tick_duration.observe(time.perf_counter() - started)
        now = self._clock()
        if self.frame_stats.due(now):
            self.frame_stats.roll(now, self.ticks, {
                s.id: (s.playing_ticks, s.frames_sent, s.underruns)
                for s in self._playing.values()
            })

    def _flush_ready(self) -> None:
        """Announce sessions whose first frames just arrived without waiting for the
        next tick (their first frame goes with ``ready``, the rest on the ticks)."""
        self._flush_scheduled = False
        if self._announcing:
            self._emit(tuple(self._announcing.values()))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_ready)

    def _emit(self, sessions: tuple[Session, ...]) -> None:
        """One frame of each of *sessions* (and the lines due), in one hub write."""
        now = self._clock()
        held = self._held
        lines, expired = held.due(now)
        parts: list[bytes] = list(lines)
        events: list[bytes] = list(lines)
        headers: list[tuple[str, bytes]] = []
        sent: Counter[OutputFormat] = Counter()
        underruns: Counter[OutputFormat] = Counter()
        audio_delay = self.timing.audio_delay(self._hub.go_style_connected)
        announced: list[Session] = []
        for session in sessions:
            if session.ready_pending:
                if not session.gate.allows_ready(now) or held.holds(session.id):
                    continue  # the play's reply (or an earlier line) comes first
                expired += session.gate.expired(now)
                del self._announcing[session.id]
                session.ready_pending = False
                session.ready_sent = True
                session.state = SessionState.STREAMING
                if session.resume is None or not session.resume.ready_sent:
                    line = encode_event_line(self._ready_event(session))
                    parts.append(line)
                    events.append(line)
                    if audio_delay is not None:
                        # Timed from the write: a wall-clock margin holds however
                        # late this write runs and however soon the next.
                        announced.append(session)
                        continue
                session.audio_at = now  # every consumer takes audio in ready's write
            if session.paused or now < session.audio_at:
                continue
            voice = session.voice
            if voice is not None and not voice.ready and session.failure is None:
                continue  # its voice connection is not up: the track waits, as paused
            session.playing_ticks += 1
            frame = session.ring.pop()
            if frame is None:
                ending = self._empty_ring(session, now)
                if ending is not None:
                    self._tick_line(session.id, ending, parts, events)
                elif not session.ended and not session.between_tracks:
                    underruns[session.request.output] += 1
                    session.underruns += 1
                continue
            if session.end_at is not None and frame.position >= session.end_at:
                # The play's end time (Lavalink's endTime): it ends here, as at its end.
                ending = self._finish(session, FinishReason.END)
                if ending is not None:
                    self._tick_line(session.id, ending, parts, events)
                continue
            if session.ring.needs_refill:
                session.wake.set()
            session.underrun_since = None
            if not session.headers_sent:
                session.headers_sent = True
                if session.header_pages:
                    packet = encode_packet(session.id, session.header_pages)
                    parts.append(packet)
                    headers.append((session.id, packet))
                    session.bytes_sent += len(session.header_pages)
            if frame.start is not None:
                for line in self._next_begins(session, frame):
                    self._tick_line(session.id, line, parts, events)
            if voice is not None:
                voice.send_opus(frame.packet)  # its own connection, on this tick
            else:
                parts.append(frame.packet)
            session.bytes_sent += frame.payload_size
            session.frames_sent += 1
            session.position = frame.position + FRAME_DURATION
            session.emitted = frame.number
            session.granule = frame.granule
            session.sequence = frame.sequence
            sent[session.request.output] += 1
            if session.first_audio_at is None:
                session.first_audio_at = now
                self._metrics.time_to_first_audio.labels(session.request.output.value).observe(
                    now - session.requested_at
                )
            if frame.last:
                for line in self._track_ends(session):
                    self._tick_line(session.id, line, parts, events)
        audio_packets = sum(sent.values()) - sent[OutputFormat.VOICE]
        if parts:
            written = self._hub.broadcast(parts, events, audio_packets,
                                          announced=[s.id for s in announced],
                                          headers=headers)
            if announced:
                assert audio_delay is not None
                if written is not None:
                    for session in announced:
                        session.audio_at = written + audio_delay
                else:
                    for session in announced:
                        self._unconfirmed[session.id] = session
        if expired:
            self._metrics.reply_gate_timeouts.inc(expired)
        for output, count in sent.items():
            self._metrics.frames_sent.labels(output.value).inc(count)
        for output, count in underruns.items():
            self._metrics.underruns.labels(output.value).inc(count)
        self.total_frames_sent += sum(sent.values())
        self.total_underruns += sum(underruns.values())

    def ready_written(self, session_ids: Sequence[str], at: float) -> None:
        """The hub wrote the ``ready`` of *session_ids* at *at* (this process's
        monotonic clock): their first audio may follow after the margin."""
        delay = self.timing.audio_delay(True) or 0.0
        for session_id in session_ids:
            session = self._unconfirmed.pop(session_id, None)
            if session is not None and not session.ended:
                session.audio_at = at + delay

    def _empty_ring(self, session: Session, now: float) -> bytes | None:
        """An empty ring: the end of the track, a failure to report, a stall, or
        a plain underrun (None)."""
        if session.failure is not None:
            return self._fail(session, session.failure, session.error_stage)
        if session.source_done:
            return b"".join(self._track_ends(session)) or None
        if session.between_tracks:
            return None
        if session.underrun_since is None:
            session.underrun_since = now
        elif now - session.underrun_since > self._limits.stuck_threshold:
            message = f"source stalled: no audio for {self._limits.stuck_threshold:g} s"
            self._metrics.session_errors.labels("stuck").inc()
            session.log.warning("%s; ending the session", message)
            return self._fail(session, message, "stuck")
        return None

    # -- ending and event lines ---------------------------------------------------

    def _next_begins(self, session: Session, frame: Frame) -> list[bytes]:
        """The next track's first frame goes out: ``finished`` for the play that ends,
        then ``ready`` for the next one (its play id, title, duration)."""
        nxt = frame.start
        assert isinstance(nxt, NextTrack)
        lines = [encode_event_line(Event(
            EventType.FINISHED, session.id,
            extra={"play": session.play_id, "reason": FinishReason.END.value}))]
        session.log.info("finished at %.2f s; next track: play %d", session.position,
                         nxt.play_id)
        session.play_id = nxt.play_id
        session.request = nxt.request
        session.title = nxt.title
        session.duration = nxt.duration
        if nxt.filters is not None:
            session.filters = nxt.filters
            session.loudness_default = nxt.loudness_default
        if session.next is nxt:
            session.next = None
        self._metrics.track_joins.labels(
            "crossfade" if session.crossfade > 0 else "gapless").inc()
        lines.append(encode_event_line(self._ready_event(session)))
        return lines

    def _track_ends(self, session: Session) -> list[bytes]:
        """The last frame went out: ``finished``; and when a next track was set but
        could not be opened, ``error`` for its play (the session ends with it)."""
        nxt = session.next
        ending = self._finish(session, FinishReason.END)
        lines = [ending] if ending is not None else []
        if nxt is not None and nxt.state is NextState.FAILED and ending is not None:
            session.play_id = nxt.play_id
            session.request = nxt.request
            session.state = SessionState.ERROR
            session.error_message = nxt.error
            self._metrics.session_errors.labels(nxt.error_stage or "source").inc()
            lines.append(encode_event_line(Event(
                EventType.ERROR, session.id, nxt.error,
                {"play": nxt.play_id, "reason": nxt.error_stage or "source"})))
        return lines

    def _close(self, session: Session) -> bool:
        """Mark *session* ended and cancel its producer; False if it already was."""
        if session.ended:
            return False
        session.ended = True
        session.paused = False
        self._playing.pop(session.id, None)
        self._unconfirmed.pop(session.id, None)
        self._announcing.pop(session.id, None)
        if session.headers_sent:
            self._hub.forget(session.id)
        if session.producer is not None and session.producer is not asyncio.current_task():
            session.producer.cancel()
        session.ring.clear()
        return True

    def _finish(self, session: Session, reason: FinishReason) -> bytes | None:
        """End *session* without an error; return its ``finished`` line, or None
        when it never sent ``ready`` (there is nothing to finish) or had ended."""
        if not self._close(session):
            return None
        session.state = SessionState.STOPPED
        if reason is FinishReason.END:
            session.log.info("finished at %.2f s", session.position)
        else:
            session.log.info("%s at %.2f s", reason.value, session.position)
        if not session.ready_sent:
            return None
        return encode_event_line(Event(EventType.FINISHED, session.id,
                                       extra={"play": session.play_id, "reason": reason.value}))

    def _fail(self, session: Session, message: str, stage: str) -> bytes | None:
        """End *session* with an error; return its ``error`` line (None if it had
        already ended)."""
        if not self._close(session):
            return None
        session.state = SessionState.ERROR
        session.error_message = message
        event = Event(EventType.ERROR, session.id, message,
                      {"play": session.play_id, "reason": stage or "source"})
        return encode_event_line(event)

    def _post(self, session_id: str, line: bytes | None, gate: ReplyGate | None) -> None:
        """Write *line* now if its gate is open and nothing of its id waits, else
        hold it."""
        if line is None:
            return
        if not self._held.holds(session_id) and (gate is None or gate.is_open(self._clock())):
            self._hub.send_event(line)
        else:
            self._held.add(session_id, line, gate)

    def _tick_line(self, session_id: str, line: bytes, parts: list[bytes],
                   events: list[bytes]) -> None:
        """Add a line to this tick's write, unless earlier lines of its id wait."""
        if self._held.holds(session_id):
            self._held.add(session_id, line, None)
        else:
            parts.append(line)
            events.append(line)

    def _send_due(self, now: float) -> None:
        lines, expired = self._held.due(now)
        for line in lines:
            self._hub.send_event(line)
        if expired:
            self._metrics.reply_gate_timeouts.inc(expired)

    def _ready_event(self, session: Session) -> Event:
        extra: dict[str, str | int | float | bool | None] = {"play": session.play_id}
        if session.duration:
            extra["duration"] = round(session.duration, 3)
        if session.title:
            extra["title"] = session.title
        return Event(EventType.READY, session.id, extra=extra)

    # -- housekeeping --------------------------------------------------------------

    def reap_idle(self) -> int:
        """Remove sessions that are not playing and that nobody touched for the idle
        timeout (a paused voice session stays: a Lavalink player keeps its paused
        track as long as its client wants). Returns how many were removed."""
        now = self._clock()
        idle = [
            s for s in self._sessions.values()
            if (s.ended or (s.paused and s.voice is None))
            and now - s.last_touched > self._limits.idle_timeout
        ]
        for session in idle:
            session.log.info("idle for %.0f s; removing", now - session.last_touched)
            self.stop(session.id, reason=FinishReason.IDLE)
        return len(idle)

    async def close(self) -> None:
        """Write every held line, end every session (``finished`` with reason
        ``shutdown``), cancel producers and wait for them, then for sources still
        closing. Idempotent."""
        for line in self._held.drain():
            self._hub.send_event(line)
        for session_id in list(self._sessions):
            self.stop(session_id, reason=FinishReason.SHUTDOWN)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        closing = [asyncio.wrap_future(f) for f in list(self._closing)]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    def _spawn(self, coroutine: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _encoder_factory(self, output: OutputFormat) -> Callable[[], OpusFrameEncoder]:
        name: EncoderName = "pyav" if self._limits.opus_encoder == "pyav" else "opuslib"
        return EncoderFactory(name, output.bitrate, self._complexity)

    def _source_options(self, session: Session) -> SourceOptions:
        return SourceOptions(
            output=session.request.output,
            open_timeout=self._limits.open_timeout,
            read_timeout=self._limits.read_timeout,
            index_bytes=self._limits.index_bytes,
        )
