"""The 20 ms emission of one engine's sessions, and the event lines that end them.

On each tick (``tick``) every playing session gives one frame from its ring; the
frames and the event lines due go to the hub in one write. A session whose first
frames just arrived is announced at once (``announce``: its ``ready`` and first frame
go out without waiting for the next tick). Event lines follow the timing contract of
``audio_engine.wire.ordering``: lines a request caused wait behind its ``ReplyGate``,
a session id's lines keep their order, and a play's first audio waits a wall-clock
margin after its ``ready`` while a Go-style consumer is connected.

Ending a session (``finish``, ``fail``) closes it here (no more frames) and returns its
line; ``post`` writes a line now or holds it behind its gate.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from audio_engine.audio.formats import OutputFormat
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.framestats import FrameStats
from audio_engine.sessions.session import (
    FinishReason,
    NextState,
    NextTrack,
    Session,
    SessionState,
)
from audio_engine.wire.ordering import HeldLines, ReplyGate, TimingPolicy
from audio_engine.wire.ring import Frame
from protocol import FRAME_DURATION, Event, EventType, encode_event_line, encode_packet

__all__ = ["Emission", "Hub"]


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


class Emission:
    """See the module docstring.

    Args:
        hub: where the bytes go.
        metrics: frames sent, underruns, errors, time to first audio.
        timing: the contract's margins.
        clock: monotonic time.
        stuck_threshold: seconds a playing session's ring may stay empty before the
            session ends with ``error`` (reason ``stuck``).
    """

    def __init__(self, hub: Hub, metrics: EngineMetrics, *, timing: TimingPolicy,
                 clock: Callable[[], float] = time.monotonic,
                 stuck_threshold: float = 10.0) -> None:
        self._hub = hub
        self._metrics = metrics
        self.timing = timing
        self._clock = clock
        self._stuck_threshold = stuck_threshold
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
        #: Lavalink-style per-minute frame health.
        self.frame_stats = FrameStats(clock())
        self.ticks = 0
        self.total_underruns = 0
        self.total_frames_sent = 0

    def announce(self, session: Session) -> None:
        """*session*'s first frames are in its ring: write its ``ready`` (and first
        frame) as soon as its gate allows, then play it on the ticks."""
        session.ready_pending = True
        self._playing[session.id] = session
        self._announcing[session.id] = session
        self._schedule_flush()

    def drain(self) -> None:
        """Write every held line now, gates ignored (shutdown)."""
        for line in self._held.drain():
            self._hub.send_event(line)

    def replied(self, gate: ReplyGate) -> None:
        """The reply of *gate*'s request has been written: its events may follow,
        after the event margin while a Go-style consumer is connected."""
        now = self._clock()
        gate.release(now + self.timing.event_delay(self._hub.go_style_connected))
        if gate.is_open(now):
            self._send_due(now)
        if self._announcing:
            self._schedule_flush()

    # -- the tick ------------------------------------------------------------------

    def tick(self, lateness: float) -> None:
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
                ending = self.finish(session, FinishReason.END)
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
                        self._schedule_first_audio(session)
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
                self._schedule_first_audio(session)

    def _schedule_first_audio(self, session: Session) -> None:
        """Send *session*'s first audio when its margin ends, not on the next tick
        after it (up to a frame later)."""
        # A millisecond later: the loop may run a timer up to its clock's resolution early.
        delay = max(0.0, session.audio_at - self._clock()) + 0.001
        asyncio.get_running_loop().call_later(delay, self._first_audio, session)

    def _first_audio(self, session: Session) -> None:
        if (session.first_audio_at is None and not session.ended and not session.ready_pending
                and self._playing.get(session.id) is session):
            self._emit((session,))

    def _empty_ring(self, session: Session, now: float) -> bytes | None:
        """An empty ring: the end of the track, a failure to report, a stall, or
        a plain underrun (None)."""
        if session.failure is not None:
            return self.fail(session, session.failure, session.error_stage)
        if session.source_done:
            return b"".join(self._track_ends(session)) or None
        if session.between_tracks:
            return None
        if session.underrun_since is None:
            session.underrun_since = now
        elif now - session.underrun_since > self._stuck_threshold:
            message = f"source stalled: no audio for {self._stuck_threshold:g} s"
            self._metrics.session_errors.labels("stuck").inc()
            session.log.warning("%s; ending the session", message)
            return self.fail(session, message, "stuck")
        return None

    # -- ending and event lines ---------------------------------------------------

    def _next_begins(self, session: Session, frame: Frame) -> list[bytes]:
        """The next track's first frame goes out: ``finished`` for the play that ends
        (reason ``end``, or ``replaced`` by a "play now"), then ``ready`` for the next
        one (its play id, title, duration)."""
        nxt = frame.start
        assert isinstance(nxt, NextTrack)
        reason = FinishReason.REPLACED if nxt.now else FinishReason.END
        lines = [encode_event_line(Event(
            EventType.FINISHED, session.id,
            extra={"play": session.play_id, "reason": reason.value}))]
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
            "now" if nxt.now else "crossfade" if session.crossfade > 0 else "gapless").inc()
        lines.append(encode_event_line(self._ready_event(session)))
        return lines

    def _track_ends(self, session: Session) -> list[bytes]:
        """The last frame went out: ``finished``; and when a next track was set but
        could not be opened, ``error`` for its play (the session ends with it)."""
        nxt = session.next
        ending = self.finish(session, FinishReason.END)
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

    def play_failed(self, session: Session, nxt: NextTrack) -> None:
        """A "play now" track could not be opened: its ``error`` (with its play id)
        goes out after its request's reply; the session plays on."""
        self._metrics.session_errors.labels(nxt.error_stage or "source").inc()
        line = encode_event_line(Event(
            EventType.ERROR, session.id, nxt.error,
            {"play": nxt.play_id, "reason": nxt.error_stage or "source"}))
        self.post(session.id, line, nxt.gate)

    def close_session(self, session: Session) -> bool:
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

    def finish(self, session: Session, reason: FinishReason) -> bytes | None:
        """End *session* without an error; return its ``finished`` line, or None
        when it never sent ``ready`` (there is nothing to finish) or had ended."""
        if not self.close_session(session):
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

    def fail(self, session: Session, message: str, stage: str) -> bytes | None:
        """End *session* with an error; return its ``error`` line (None if it had
        already ended)."""
        if not self.close_session(session):
            return None
        session.state = SessionState.ERROR
        session.error_message = message
        event = Event(EventType.ERROR, session.id, message,
                      {"play": session.play_id, "reason": stage or "source"})
        return encode_event_line(event)

    def post(self, session_id: str, line: bytes | None, gate: ReplyGate | None) -> None:
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

