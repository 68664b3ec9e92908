"""The session manager: a worker's registry of sessions and what the API does to them.

Every API operation and every tick runs on the event loop thread, so sessions
need no locks. Each session has its own producer task (``producer``) that fills its
ring; the 20 ms emission and the event lines that end sessions are ``emission``'s.
A play on an existing id replaces that session only (its ``finished`` goes before
the new ``ready``); a live change of volume or filters has the producer redo the
frames queued after the next ``REDO_LEAD``; a seek drops them all.
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

from audio_engine.audio.codec import (
    ComplexityDial,
    EncoderFactory,
    EncoderName,
    OpusFrameEncoder,
)
from audio_engine.audio.filters import Filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import OpenGate
from audio_engine.sessions.emission import Emission, Hub
from audio_engine.sessions.framestats import FrameStats
from audio_engine.sessions.pools import ElasticPool
from audio_engine.sessions.producer import ProducerContext, run_producer
from audio_engine.sessions.session import (
    REDO_LEAD,
    FinishReason,
    NextState,
    NextTrack,
    PlayRequest,
    Resume,
    Session,
    VoiceSink,
)
from audio_engine.settings import EngineSettings
from audio_engine.sources.media import MediaSource, SourceOptions
from audio_engine.sources.resolver import Resolver
from audio_engine.wire.ordering import ReplyGate, TimingPolicy
from lifecycle import Process, TaskOwner, declare
from protocol.filters import Loudness

__all__ = [
    "REDO_LEAD",
    "Hub",
    "NotPlayable",
    "Resume",
    "SessionManager",
    "TooManySessions",
]

log = logging.getLogger(__name__)


def _pool_lag(*pools: Executor) -> float:
    """How far the busiest of *pools* is behind its deadlines now, seconds."""
    now = time.monotonic()
    return max((pool.overdue(now) for pool in pools if isinstance(pool, ElasticPool)),
               default=0.0)


class TooManySessions(Exception):
    """A play would exceed the session limit."""


class NotPlayable(Exception):
    """The operation needs a live session (seek on an ended one, ...)."""


_OWNER = "SessionManager"
PRODUCER = declare(
    "producer-{key}", owner=_OWNER, process=Process.WORKER,
    what="one session's producer: resolve, open, keep its ring a few hundred ms ahead",
    ends="stop, replace, idle reap, a failure, or `manager.close()` (cancelled, awaited)")


class SessionManager:
    """Owns every session and its producer task; the emission is its ``emission``."""

    def __init__(
        self,
        *,
        hub: Hub,
        resolver: Resolver,
        read_pool: Executor,
        open_pool: Executor,
        codec_pool: Executor,
        metrics: EngineMetrics,
        settings: EngineSettings,
        timing: TimingPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        complexity: ComplexityDial | None = None,
        default_loudness: Loudness | None = None,
        on_session_end: Callable[[], None] = lambda: None,
    ) -> None:
        self._hub = hub
        self._on_session_end = on_session_end  # after its producer (and its memory) is gone
        self.timing = timing or TimingPolicy()
        self._open_pool = open_pool
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._complexity = complexity or ComplexityDial(settings.opus_complexity)
        self._sessions: dict[str, Session] = {}
        #: The 20 ms emission and the ending of sessions (their event lines).
        self.emission = Emission(hub, metrics, timing=self.timing, clock=clock,
                                 stuck_threshold=settings.stuck_threshold)
        self._tasks = TaskOwner(_OWNER, logger=log)
        self._closing: set[Future[None]] = set()
        self._context = ProducerContext(
            resolver=resolver,
            read_pool=read_pool,
            open_pool=open_pool,
            codec_pool=codec_pool,
            events=self,
            options=self._source_options,
            retries=settings.source_retries,
            encoder=self._encoder_factory,
            default_loudness=default_loudness,
            gate=OpenGate(max_wait=settings.first_audio_wait,
                          pool_lag=lambda: _pool_lag(read_pool, codec_pool)),
        )
        self._plays = itertools.count(1)

    # -- queries -----------------------------------------------------------------

    @property
    def ticks(self) -> int:
        """Clock ticks run."""
        return self.emission.ticks

    @property
    def total_underruns(self) -> int:
        """Ticks on which a playing session had no frame, over the engine's life."""
        return self.emission.total_underruns

    @property
    def total_frames_sent(self) -> int:
        """Audio frames sent, over the engine's life."""
        return self.emission.total_frames_sent

    @property
    def frame_stats(self) -> FrameStats:
        """Lavalink-style per-minute frame health."""
        return self.emission.frame_stats

    def tick(self, index: int, lateness: float) -> None:
        """Emit one frame for every playing session and hand the batch to the hub."""
        self.emission.tick(lateness)

    def ready_written(self, session_ids: Sequence[str], at: float) -> None:
        """The hub wrote the ``ready`` of *session_ids* at *at* (this process's
        monotonic clock): their first audio may follow after the margin."""
        self.emission.ready_written(session_ids, at)

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
        if live >= self._settings.max_sessions:
            raise TooManySessions(
                f"too many sessions: the limit of {self._settings.max_sessions} is reached"
            )
        gate = ReplyGate(now)
        if old is not None:
            # The old stream's finished belongs to this request: after its reply,
            # before the new ready.
            self.emission.post(session_id, self.emission.finish(old, FinishReason.REPLACED), gate)
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
        session.producer = self._tasks.spawn(PRODUCER, run_producer(session, self._context),
                                             key=session_id)
        session.producer.add_done_callback(lambda _: self._on_session_end())
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
            self.emission.post(session_id, self.emission.finish(session, reason), gate)

    def reply_gate(self) -> ReplyGate:
        """A gate for the events of one request (release it with ``replied``)."""
        return ReplyGate(self._clock())

    def replied(self, gate: ReplyGate) -> None:
        """The reply of *gate*'s request has been written: its events may follow,
        after the event margin while a Go-style consumer is connected."""
        self.emission.replied(gate)

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
                 loudness_default: bool, play_id: int | None = None,
                 now: bool = False) -> NextTrack | None:
        """The track to play after the current one, in the same stream. Replaces a
        next track set before (unless that one already joined the stream). Returns None
        for unknown ids.

        *now* ("play now"): it replaces the current track as soon as it has audio;
        until then the current track plays on, and if it cannot be opened its
        ``error`` goes out at once (held behind the track's ``gate`` until the reply),
        the current track keeps playing and the next track it displaced is set again.

        Raises:
            NotPlayable: the session has ended (or, for *now*, has not started
                playing yet: a plain play replaces it).
        """
        session = self._sessions.get(session_id)
        if session is None:
            return None
        session.touch(self._clock())
        if not session.live:
            raise NotPlayable(f"session has ended ({session.state.value}); start a new play")
        if now and not session.ready_sent:
            raise NotPlayable("session has not started playing yet; start a new play")
        nxt = NextTrack(request, play_id if play_id is not None else next(self._plays),
                        filters, loudness_default)
        if now:
            nxt.now = True
            nxt.gate = self.reply_gate()
            displaced = session.next
            nxt.displaced = displaced.displaced if displaced is not None and displaced.now \
                else displaced
        session.next = nxt
        session.wake.set()
        session.log.info("%s: play %d %s", "play now" if now else "next", nxt.play_id,
                         request.url)
        return nxt

    def next_failed(self, session: Session, nxt: NextTrack) -> None:
        """A "play now" track could not be opened: its ``error`` goes out, the
        current track plays on with the next track it displaced."""
        if session.next is nxt:
            displaced = nxt.displaced
            if displaced is not None and (displaced.state is NextState.FAILED
                                          or displaced.play_id == session.play_id):
                displaced = None
            if displaced is not None:
                displaced.state = NextState.WAITING
            session.next = displaced
            session.wake.set()
        self.emission.play_failed(session, nxt)

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
        cut = session.redo_point()
        session.ring.truncate(cut)
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
        self.emission.announce(session)

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
        self.emission.post(session.id, self.emission.fail(session, message, stage), session.gate)

    def retire(self, source: MediaSource) -> None:
        future = self._open_pool.submit(source.close)
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    # -- housekeeping --------------------------------------------------------------

    def reap_idle(self) -> int:
        """Remove sessions that are not playing and that nobody touched for the idle
        timeout (a paused voice session stays: a Lavalink player keeps its paused
        track as long as its client wants). Returns how many were removed."""
        now = self._clock()
        idle = [
            s for s in self._sessions.values()
            if (s.ended or (s.paused and s.voice is None))
            and now - s.last_touched > self._settings.idle_timeout
        ]
        for session in idle:
            session.log.info("idle for %.0f s; removing", now - session.last_touched)
            self.stop(session.id, reason=FinishReason.IDLE)
        return len(idle)

    async def close(self) -> None:
        """Write every held line, end every session (``finished`` with reason
        ``shutdown``), cancel producers and wait for them, then for sources still
        closing. Idempotent."""
        self.emission.drain()
        for session_id in list(self._sessions):
            self.stop(session_id, reason=FinishReason.SHUTDOWN)
        await self._tasks.aclose()
        closing = [asyncio.wrap_future(f) for f in list(self._closing)]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)


    def _encoder_factory(self, output: OutputFormat) -> Callable[[], OpusFrameEncoder]:
        name: EncoderName = "pyav" if self._settings.opus_encoder == "pyav" else "opuslib"
        return EncoderFactory(name, output.bitrate, self._complexity)

    def _source_options(self, session: Session) -> SourceOptions:
        return SourceOptions(
            output=session.request.output,
            open_timeout=self._settings.open_timeout,
            read_timeout=self._settings.read_timeout,
            index_bytes=self._settings.index_memory,
        )
