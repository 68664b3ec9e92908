"""A session's producer: the task that keeps its frame ring a few hundred ms ahead.

Resolve the URL, open the source, then loop: wait until the clock has drained the ring
to its low-water mark, read about that much compressed audio on the I/O pool, turn it
into frames on the codec pool (the session's ``Program``: passthrough, or filters and
encoding), append them. A broken source is reopened at the position reached; the
session's Ogg stream goes on with the same serial and continuous granules. A failure
ends the session with an ``error`` event.

Besides the fill loop it carries out what the API asks of a playing session:

- a **seek** (``seek_target``): the ring was emptied; the source jumps, the program
  goes on from the next frame;
- a **live change** of filters or volume (``redo_from``): the manager dropped the frames
  queued after a point; the program makes them again with the new settings;
- the **next track** (``next``): resolved and opened ahead of time (when the current
  one is within ``NEXT_OPEN_LEAD`` seconds plus the crossfade of its end), handed to the
  program, which joins it to the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from audio_engine.audio.codec import OpusFrameEncoder
from audio_engine.audio.filters import Filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.audio.program import Program
from audio_engine.audio.track import Track
from audio_engine.sessions.admission import Admission, AdmissionRefused, OpenGate
from audio_engine.sessions.pools import ElasticPool
from audio_engine.sessions.session import NextState, NextTrack, Session, effective_filters
from audio_engine.sources.egress import Grant
from audio_engine.sources.media import (
    MediaSource,
    SourceBroken,
    SourceError,
    SourceFailed,
    SourceOptions,
)
from audio_engine.sources.resolver import ResolveError, Resolver
from audio_engine.wire.ring import Frame, RingSize
from lifecycle import Backoff, Process, TaskOwner, declare
from protocol import FRAME_DURATION, SAMPLE_RATE
from protocol.filters import Loudness

__all__ = [
    "EARLY_END_TOLERANCE",
    "FIRST_BATCH",
    "NEXT_OPEN_LEAD",
    "OPEN_SLACK",
    "PASSTHROUGH_RING",
    "RETRY_BACKOFF",
    "RETRY_BUDGET_RESET",
    "TRANSCODE_RING",
    "ProducerContext",
    "SessionEvents",
    "run_producer",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A source that ends more than this many seconds (and 5 %) short of the duration
#: its container declares is treated as cut off, and reopened at its position.
EARLY_END_TOLERANCE = 5.0
#: Seconds before the first reopen attempt; it doubles with each further one.
RETRY_BACKOFF = 0.25
#: Seconds of audio a reopened source must deliver before its reopen budget
#: (``ENGINE_SOURCE_RETRIES``) is whole again: a source that keeps breaking
#: fails after that many reopens, one that breaks once an hour plays on.
RETRY_BUDGET_RESET = 30.0
#: Passthrough costs a few microseconds per frame, so its producer runs further
#: ahead (0.5-1.5 s) in 1 s refills: one trip to a worker per session per second,
#: which is what lets one engine carry a thousand such sessions.
PASSTHROUGH_RING = RingSize(75, 25)
#: Transcoding refills 500 ms at a time (0.3-0.8 s ahead).
TRANSCODE_RING = RingSize(40, 15)
#: Frames produced before ``ready``: 100 ms, a couple of milliseconds of work.
FIRST_BATCH = 5
#: Scheduling slack of opening a source and of a session's first batch: ahead of
#: refills due later than that, behind those due sooner.
OPEN_SLACK = 0.1
#: The next track is resolved and opened when the current one has this many seconds
#: left (plus the crossfade), or at once when its length is unknown: early enough for a
#: slow resolution, late enough not to hold an idle connection for long.
NEXT_OPEN_LEAD = 10.0


class SessionEvents(Protocol):
    """What a producer reports to the session manager."""

    def source_ready(self, session: Session) -> None:
        """The first frames are in the ring; the clock may announce ``ready``."""
        ...

    def source_failed(self, session: Session, message: str, stage: str) -> None:
        """The source cannot go on; end the session with an error."""
        ...

    def source_retried(self, session: Session) -> None:
        """A broken source was reopened."""
        ...

    def next_failed(self, session: Session, nxt: NextTrack) -> None:
        """A "play now" track could not be opened: report it; the current track
        plays on."""
        ...

    def source_opened(self, session: Session, seconds: float) -> None:
        """Resolution and opening took *seconds*."""
        ...

    def retire(self, source: MediaSource) -> None:
        """Close *source* in the background once its running job (if any) ends."""
        ...


@dataclass(frozen=True, slots=True)
class ProducerContext:
    """What every producer shares: pools, resolver, options, limits."""

    resolver: Resolver
    #: Steady reads of playing sources (one thread: see ``pools``).
    read_pool: Executor
    #: Opens, reopens and seeks: rare, blocking, latency-sensitive.
    open_pool: Executor
    codec_pool: Executor
    events: SessionEvents
    options: Callable[[Session], SourceOptions]
    retries: int
    #: Makes a session's Opus encoder (for its output format).
    encoder: Callable[[OutputFormat], Callable[[], OpusFrameEncoder]] | None = None
    #: The engine's default loudness normalization (None: off).
    default_loudness: Loudness | None = None
    #: Admission of new sources (a burst opens a few at a time, while the pools
    #: keep up); by default one watching the read and codec pools.
    gate: OpenGate | None = None

    def __post_init__(self) -> None:
        if self.gate is None:
            object.__setattr__(self, "gate", OpenGate(pool_lag=self._pool_lag))

    def _pool_lag(self) -> float:
        now = time.monotonic()
        return max((pool.overdue(now) for pool in (self.read_pool, self.codec_pool)
                    if isinstance(pool, ElasticPool)), default=0.0)

    def filters(self, filters: Filters, volume: float, loudness_default: bool) -> Filters:
        """What a track plays with (see ``session.effective_filters``)."""
        return effective_filters(filters, volume=volume, loudness_default=loudness_default,
                                 default_loudness=self.default_loudness)


async def _run_in(pool: Executor, function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, function, *args)


async def _run_by(pool: Executor, deadline: float, function: Callable[..., T], *args: Any) -> T:
    """Run on *pool* before jobs due later (when the pool schedules by deadline)."""
    if isinstance(pool, ElasticPool):
        return await asyncio.wrap_future(pool.submit_by(deadline, function, *args))
    return await _run_in(pool, function, *args)


async def run_producer(session: Session, context: ProducerContext) -> None:
    """Produce *session*'s frames until the task is cancelled (the session ended,
    was stopped or replaced) or the source fails. Never raises except
    ``CancelledError``; cancelling is safe at any await."""
    source: MediaSource | None = None
    grant: Grant | None = None
    production: _Production | None = None
    egress = context.resolver.egress
    try:
        started = time.monotonic()
        target = await context.resolver.resolve(session.request.url,
                                                caller=session.request.caller or session.id)
        session.title = target.title
        if not target.is_local:
            # Every connection of this source (redirects, HLS segments,
            # reopens) goes through the egress proxy under its own credential.
            grant = egress.grant(session.id)
        source = MediaSource(
            target,
            context.options(session),
            start_at=session.request.start_at,
            proxy=egress.url(grant) if grant is not None else None,
        )
        # A burst of plays opens a few at a time, while playing sessions keep up.
        assert context.gate is not None
        admission = await context.gate.admit()
        try:
            # Due soon, but after refills of sessions already playing.
            await _run_by(context.open_pool, time.monotonic() + OPEN_SLACK, source.open)
            context.events.source_opened(session, time.monotonic() - started)
            if source.duration:
                session.duration = source.duration
            filters = context.filters(session.filters, session.volume,
                                      session.loudness_default)
            # Encoders and filter graphs are built on the codec pool, not the loop.
            program, track = await _run_by(context.codec_pool, time.monotonic() + OPEN_SLACK,
                                           _start_program, session, context, source, filters)
            session.header_pages = program.stream.header_pages
            production = _Production(session, program, context, admission,
                                     first_play=session.play_id)
            production.grants[track] = grant
            source = grant = None  # the production owns them now
            await production.run()
        finally:
            admission.release()
    except AdmissionRefused as exc:
        context.events.source_failed(session, str(exc), "busy")
    except ResolveError as exc:
        context.events.source_failed(session, str(exc), "resolve")
    except SourceError as exc:
        problem = production.problem(exc) if production is not None else _source_problem(
            exc, grant)
        context.events.source_failed(session, problem, "source")
    except Exception:
        session.log.exception("producer crashed")
        context.events.source_failed(session, "internal error while producing audio", "internal")
    finally:
        if source is not None:
            context.events.retire(source)
        if grant is not None:
            egress.revoke(grant)
        if production is not None:
            await production.close()


def _start_program(session: Session, context: ProducerContext, source: MediaSource,
                   filters: Filters) -> tuple[Program, Track]:
    """The session's program, started with its first track (a worker job)."""
    output = session.request.output
    factory = context.encoder(output) if context.encoder and output.is_opus else None
    program = Program(session.id, output, session.serial, factory)
    track = Track(None, source, filters, lookahead=program.lookahead,
                  passthrough_ok=output.is_opus)
    program.start(track)
    if session.resume is not None:
        # Moved from a dead worker: the listener's Ogg stream goes on.
        program.stream.resume(session.resume.granule, session.resume.sequence)
    return program, track


def _source_problem(exc: SourceError, grant: Grant | None) -> str:
    """The user's error message: the egress proxy's reason when it refused or cut
    a connection (FFmpeg only saw a 403), else the source's own."""
    if grant is not None and grant.problem is not None:
        return grant.problem
    return str(exc)


def _truncation(source: MediaSource) -> str | None:
    """Why a source that just ended looks cut off, or None if it ended where its
    container says it should."""
    duration = source.duration
    position = source.position
    if duration and duration - position > EARLY_END_TOLERANCE and position < 0.95 * duration:
        return f"the source ended early, at {position:.1f} s of {duration:.1f} s"
    return None


#: What one read gives: the track, its packets, whether its source ended (for good),
#: and why it looks cut off (then it is reopened rather than ended).
_Read = tuple[Track, list[Any], bool, str | None]


def _read(track: Track, seconds: float) -> _Read:
    packets, at_end = track.source.read(seconds)
    cut_off = _truncation(track.source) if at_end else None
    return track, packets, at_end and cut_off is None, cut_off


def _read_and_produce(program: Program, track: Track, seconds: float
                      ) -> tuple[list[Frame], _Read]:
    """A passthrough batch in one worker job (its CPU part is tiny)."""
    read = _read(track, seconds)
    return program.produce([read[:3]]), read


@dataclass(slots=True)
class _Retries:
    """A track's reopen budget, and the delay before its next reopen (0.25 s
    doubling)."""

    attempts: int = 0
    #: Media position of the last reopen (the budget resets past it).
    reopened_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(RETRY_BACKOFF))


@dataclass(slots=True)
class _Opened:
    """A next track the opener task made ready."""

    next: NextTrack
    track: Track
    grant: Grant | None


_PRODUCTION = "a session's production (`_Production`)"
NEXT_OPENER = declare(
    "next-opener-{key}", owner=_PRODUCTION, process=Process.WORKER,
    what="resolving and opening the next track of a gapless queue ahead of time",
    ends="opened or failed, or cancelled when the next track changes or the production "
         "closes (awaited)")


@dataclass(eq=False)
class _Production:
    """The fill loop of one session (see the module docstring)."""

    session: Session
    program: Program
    context: ProducerContext
    #: Released once the first frames are in the ring: the next source may open.
    admission: Admission
    grants: dict[Track, Grant | None] = field(default_factory=dict)
    spill: list[Frame] = field(default_factory=list)
    announced: bool = False
    #: A live change or a seek left the ring nearly empty: the next batch is small, so
    #: its first frames reach the ring within the frames still queued (a loaded
    #: machine runs a whole refill too slowly for that); the refill follows.
    hurry: bool = False
    #: The program waits for something that is not input (the next track opening).
    stalled: bool = False
    retries: dict[Track, _Retries] = field(default_factory=dict)
    #: Tracks whose source looked cut off in the last batch: reopen before reading.
    cut_off: dict[Track, SourceBroken] = field(default_factory=dict)
    opener: asyncio.Task[None] | None = None
    opener_for: NextTrack | None = None
    tasks: TaskOwner = field(default_factory=lambda: TaskOwner(_PRODUCTION, logger=log))
    opened: _Opened | None = None
    #: Number of the frame that ended the stream, once produced.
    eos: int | None = None
    #: Play id of the session's first track.
    first_play: int = 0

    async def run(self) -> None:
        session = self.session
        while True:
            self._sync()
            if session.seek_target is not None:
                await self._seek(session.seek_target)
                continue
            if session.redo_from is not None:
                await self._redo(session.redo_from)
                continue
            if self.spill:
                self.spill = session.ring.extend(self.spill)
            program = self.program
            if program.replace_due:
                await self._replace()
                continue
            idle = (self.announced and not session.ring.needs_refill
                    and not program.replacing)
            if program.finished or self.stalled or idle:
                if program.finished and not self.spill:
                    session.source_done = True
                session.between_tracks = self.stalled and program.expect_next
                session.wake.clear()
                await session.wake.wait()
                self.stalled = False
                continue
            session.between_tracks = False
            generation = session.generation
            # The first batch is small, so that ready (and the first page) go
            # out as soon as possible; the next one fills the ring.
            small = self.hurry or not self.announced
            wanted = min(session.ring.space, FIRST_BATCH) if small else session.ring.space
            frames, read_any = await self._batch(max(wanted, 1))
            if generation != session.generation:
                continue  # a seek or a change arrived meanwhile: these frames are stale
            self.hurry = False
            if frames and frames[-1].last:
                self.eos = frames[-1].number
            if not frames and not read_any and not program.finished:
                self.stalled = True
            if frames:
                self.spill = session.ring.extend(frames)
            if not self.announced:
                if program.finished and not self._current_track().source.audio_frames:
                    # Only the stream's end page was made (a text page named .mp3, a
                    # FLAC header with no frames): an error, never ready then finished.
                    raise SourceFailed("no audio could be decoded from the source")
                if not len(session.ring) and not self.spill:
                    if program.finished:
                        raise SourceFailed("no audio could be decoded from the source")
                    continue
                self.announced = True
                self.admission.release()
                self.context.events.source_ready(session)

    # -- the state the API set ----------------------------------------------------------

    def _sync(self) -> None:
        """Bring the program in line with the session (on the loop, between jobs)."""
        session, program = self.session, self.program
        program.emitted = session.emitted
        program.crossfade = round(min(session.crossfade, 12.0) * SAMPLE_RATE)
        for track in program.retired:
            self._retire(track)
        program.retired.clear()
        nxt = session.next
        placed = nxt is not None and any(t.play is nxt for t in program.tracks)
        if program.next_discarded:
            program.next_discarded = False
            if nxt is not None and not placed and nxt.state is NextState.READY:
                nxt.state = NextState.WAITING  # it lost its head: open it again
        pending = program.pending
        if pending is not None and (pending.play is not nxt or program.pending_is_empty):
            program.pending = None
            pending.close()
            self._retire(pending)
            if pending.play is nxt and nxt is not None:
                self._next_failed(nxt, "no audio could be decoded from the source", "source")
        if self.opener is not None and self.opener_for is not nxt:
            self.opener.cancel()
            self.opener = None
        if self.opened is not None:
            opened, self.opened = self.opened, None
            if opened.next is nxt and program.pending is None and not placed:
                opened.track.filters = self._filters_for(opened.next)
                program.pending = opened.track
                self.grants[opened.track] = opened.grant
                opened.next.state = NextState.READY
            else:
                self.context.events.retire(opened.track.source)
                if opened.grant is not None:
                    self.context.resolver.egress.revoke(opened.grant)
        if (nxt is not None and not placed and nxt.state is NextState.WAITING
                and self.opener is None and program.pending is None
                and (nxt.now or self._open_due())):
            self.opener_for = nxt
            self.opener = self.tasks.spawn(NEXT_OPENER, self._open_next(nxt),
                                           key=session.id)
            self.opener.add_done_callback(self._opener_done)
        program.expect_next = nxt is not None and not placed and nxt.state is not NextState.FAILED
        if program.finished and program.expect_next and self.eos is not None \
                and self.eos > session.emitted:
            # The next track came while the end was being made: the end is redone.
            session.ring.truncate(self.eos)
            session.redo_from = self.eos if session.redo_from is None else min(
                session.redo_from, self.eos)
            session.source_done = False
            self.eos = None
        session.passthrough = program.passthrough
        session.ring.resize(PASSTHROUGH_RING if program.passthrough else TRANSCODE_RING)

    def _filters_for(self, nxt: NextTrack | None) -> Filters:
        session = self.session
        if nxt is not None and nxt.filters is not None:
            return self.context.filters(nxt.filters, session.volume, nxt.loudness_default)
        return self.context.filters(session.filters, session.volume, session.loudness_default)

    def _open_due(self) -> bool:
        current = self.program.current
        if current.source_ended:
            return True
        duration = current.source.duration
        if not duration:
            return True
        return duration - current.source.position <= NEXT_OPEN_LEAD + self.session.crossfade

    def _opener_done(self, task: asyncio.Task[None]) -> None:
        if self.opener is task:
            self.opener = None
        self.session.wake.set()

    async def _open_next(self, nxt: NextTrack) -> None:
        """Resolve and open the next track (a task of this production; cancel-safe)."""
        session, context = self.session, self.context
        egress = context.resolver.egress
        nxt.state = NextState.OPENING
        source: MediaSource | None = None
        grant: Grant | None = None
        try:
            target = await context.resolver.resolve(
                nxt.request.url, caller=nxt.request.caller or session.id)
            nxt.title = target.title
            if not target.is_local:
                grant = egress.grant(session.id)
            source = MediaSource(target, context.options(session),
                                 start_at=nxt.request.start_at,
                                 proxy=egress.url(grant) if grant is not None else None)
            assert context.gate is not None
            admission = await context.gate.admit()
            try:
                await _run_by(context.open_pool, time.monotonic() + OPEN_SLACK, source.open)
            finally:
                admission.release()
            nxt.duration = source.duration or nxt.request.duration
            track = Track(nxt, source, self._filters_for(nxt),
                          lookahead=self.program.lookahead,
                          passthrough_ok=session.request.output.is_opus, replaces=nxt.now)
            self.opened = _Opened(nxt, track, grant)
            session.log.info("next track opened: play %d (%s)", nxt.play_id,
                             target.title or "untitled")
            source = grant = None
        except AdmissionRefused as exc:
            self._next_failed(nxt, str(exc), "busy")
        except ResolveError as exc:
            self._next_failed(nxt, str(exc), "resolve")
        except SourceError as exc:
            self._next_failed(nxt, _source_problem(exc, grant), "source")
        except Exception:
            session.log.exception("opening the next track crashed")
            self._next_failed(nxt, "internal error while opening the next track", "internal")
        finally:
            if source is not None:
                context.events.retire(source)
            if grant is not None:
                egress.revoke(grant)

    def _next_failed(self, nxt: NextTrack, message: str, stage: str) -> None:
        nxt.state = NextState.FAILED
        nxt.error = message
        nxt.error_stage = stage
        self.session.log.warning("next track (play %d) failed (%s): %s", nxt.play_id, stage,
                                 message)
        if nxt.now:
            self.context.events.next_failed(self.session, nxt)

    def _retire(self, track: Track) -> None:
        self.context.events.retire(track.source)
        grant = self.grants.pop(track, None)
        if grant is not None:
            self.context.resolver.egress.revoke(grant)
        self.retries.pop(track, None)
        self.cut_off.pop(track, None)

    def problem(self, exc: SourceError) -> str:
        """The user's words for a source failure (the egress proxy's reason first)."""
        for grant in self.grants.values():
            if grant is not None and grant.problem is not None:
                return grant.problem
        return str(exc)

    async def close(self) -> None:
        """Stop the opener, release every track. Idempotent."""
        await self.tasks.aclose()
        self.opener = None
        program = self.program
        tracks = [*program.tracks, *program.retired]
        if program.pending is not None:
            tracks.append(program.pending)
        if self.opened is not None:
            tracks.append(self.opened.track)
            if self.opened.grant is not None:
                self.context.resolver.egress.revoke(self.opened.grant)
            self.opened = None
        for track in tracks:
            track.close()
            self._retire(track)
        program.tracks.clear()
        program.retired.clear()
        program.pending = None

    # -- seeks and live changes ---------------------------------------------------------

    async def _seek(self, target: float) -> None:
        session, program = self.session, self.program
        session.seek_target = None
        session.redo_from = None
        self.spill.clear()
        self.eos = None
        self.hurry = True
        track = self._current_track()
        index = session.emitted + 1
        try:
            await _run_in(self.context.open_pool, track.source.seek, target)
        except SourceBroken as exc:
            # Not every source can seek (a live HTTP stream): keep playing.
            session.log.warning("seek to %.2f s failed: %s", target, exc)
            await _run_in(self.context.codec_pool, program.restart, index)
            session.source_done = False
            return
        self.cut_off.pop(track, None)
        await _run_in(self.context.codec_pool, program.seek, index, track)
        session.source_done = False

    def _current_track(self) -> Track:
        """The track of the play the listener hears now."""
        playing = self.session.play_id
        for track in self.program.tracks:
            if (track.play.play_id if track.play is not None else self.first_play) == playing:
                return track
        return self.program.current

    async def _replace(self) -> None:
        """A "play now" track has audio: the frames queued after ``REDO_LEAD`` are
        dropped and it joins the stream there (``Program.replace_from``)."""
        session, program = self.session, self.program
        cut = session.redo_point()
        session.ring.truncate(cut)
        self.spill = [f for f in self.spill if f.number < cut]
        self.eos = None
        session.source_done = False
        due = time.monotonic() + len(session.ring) * FRAME_DURATION
        await _run_by(self.context.codec_pool, due, program.replace_from, cut)
        self.hurry = True

    async def _redo(self, index: int) -> None:
        session, program = self.session, self.program
        session.redo_from = None
        self.spill = [f for f in self.spill if f.number < index]
        self.eos = None
        filters = self.context.filters(session.filters, session.volume, session.loudness_default)
        program.set_filters(filters)
        due = time.monotonic() + len(session.ring) * FRAME_DURATION
        await _run_by(self.context.codec_pool, due, program.restart, index)
        session.source_done = False
        self.hurry = True

    # -- the fill -----------------------------------------------------------------------

    async def _batch(self, wanted: int) -> tuple[list[Frame], bool]:
        """Read and convert about *wanted* frames, reopening broken sources. Returns the
        frames and whether any source was wanted (none: the program waits for something
        else, the next track)."""
        program, context = self.program, self.context
        tracks = program.wants()
        queued = len(self.session.ring)
        # Due when the ring would run dry (a new session: soon, but after refills of
        # sessions already playing).
        deadline = time.monotonic() + (queued * FRAME_DURATION if queued else OPEN_SLACK)
        if not tracks:
            frames = await _run_by(context.codec_pool, deadline, program.produce, [])
            return frames, False
        for track in tracks:
            if track in self.cut_off:
                await self._reopen(track, self.cut_off.pop(track))
        reads: list[_Read] = []
        if program.passthrough and tracks == [program.tracks[0]]:
            track = tracks[0]
            try:
                frames, read = await _run_by(context.read_pool, deadline, _read_and_produce,
                                             program, track, wanted * FRAME_DURATION)
            except SourceBroken as exc:
                await self._reopen(track, exc)
                return [], True
            self._after_read(read)
            return frames, True
        for track in tracks:
            seconds = max(FRAME_DURATION, wanted * FRAME_DURATION * track.tempo)
            try:
                read = await _run_by(context.read_pool, deadline, _read, track, seconds)
            except SourceBroken as exc:
                await self._reopen(track, exc)
                continue
            reads.append(read)
            self._after_read(read)
        frames = await _run_by(context.codec_pool, deadline, program.produce,
                               [read[:3] for read in reads])
        return frames, True

    def _after_read(self, read: _Read) -> None:
        track, packets, _, cut_off = read
        retries = self.retries.get(track)
        if (retries is not None and packets and retries.reopened_at is not None
                and track.source.position - retries.reopened_at >= RETRY_BUDGET_RESET):
            retries.attempts = 0
            retries.backoff.reset()
            retries.reopened_at = None
        if cut_off is not None:
            self.cut_off[track] = SourceBroken(cut_off)

    async def _reopen(self, track: Track, cause: SourceError) -> None:
        retry = self.retries.setdefault(track, _Retries())
        limit = self.context.retries
        position = track.source.position
        last: SourceError = cause
        while True:
            retry.attempts += 1
            if retry.attempts > limit:
                detail = "" if last is cause else f"; last attempt: {last}"
                raise SourceFailed(
                    f"{cause} (gave up after {limit} reopen attempts{detail})"
                ) from last
            self.session.log.warning(
                "source broke at %.2f s (%s); reopening, attempt %d", position, last,
                retry.attempts)
            await asyncio.sleep(retry.backoff.next())
            self.session.retries += 1
            try:
                await _run_in(self.context.open_pool, track.source.reopen, position)
            except SourceError as failure:
                last = failure
                continue
            retry.reopened_at = position
            self.context.events.source_retried(self.session)
            return
