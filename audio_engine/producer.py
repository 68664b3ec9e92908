"""A session's producer: the task that keeps its frame ring a few hundred ms ahead.

Resolve the URL, open the source, then loop: wait until the clock has drained
the ring to its low-water mark, read about that much compressed audio on the I/O
pool, convert it on the codec pool, append the frames. A broken source is
reopened at the position reached, keeping the encoder, so the session's Ogg
stream goes on with the same serial and continuous granules. A failure ends the
session with an ``error`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from audio_engine.admission import Admission, AdmissionRefused, OpenGate
from audio_engine.egress import Grant
from audio_engine.packager import Packager
from audio_engine.pools import ElasticPool
from audio_engine.resolver import ResolveError, Resolver
from audio_engine.ring import Frame, RingSize
from audio_engine.session import Session
from audio_engine.source import (
    MediaSource,
    SourceBroken,
    SourceError,
    SourceFailed,
    SourceOptions,
)
from protocol import FRAME_DURATION, OggOpusWriter, encode_packet

__all__ = [
    "EARLY_END_TOLERANCE",
    "FIRST_BATCH",
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
            volume=session.volume,
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
            session.passthrough = source.passthrough
            session.ring.resize(PASSTHROUGH_RING if source.passthrough else TRANSCODE_RING)
            writer = None
            if session.request.output.is_ogg:
                writer = OggOpusWriter(session.serial, head=source.opus_head)
                session.header_pages = writer.header_pages
            production = _Production(session, source, Packager(session.id, writer), context,
                                     admission)
            await production.run()
        finally:
            admission.release()
    except AdmissionRefused as exc:
        context.events.source_failed(session, str(exc), "busy")
    except ResolveError as exc:
        context.events.source_failed(session, str(exc), "resolve")
    except SourceError as exc:
        context.events.source_failed(session, _source_problem(exc, grant), "source")
    except Exception:
        session.log.exception("producer crashed")
        context.events.source_failed(session, "internal error while producing audio", "internal")
    finally:
        if source is not None:
            context.events.retire(source)
        if grant is not None:
            egress.revoke(grant)


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


_Batch = tuple[list[Frame], bool, str | None]


def _finish(source: MediaSource, packager: Packager, packets: list[Any], at_end: bool) -> _Batch:
    encoded = source.convert(packets, at_end)
    cut_off = _truncation(source) if at_end else None
    # A cut-off source is reopened, so its last frame must not end the stream.
    return packager.package(encoded, at_end and cut_off is None), at_end, cut_off


def _read_and_finish(source: MediaSource, packager: Packager, seconds: float) -> _Batch:
    """A whole batch in one worker job (passthrough: the CPU part is tiny)."""
    packets, at_end = source.read(seconds)
    return _finish(source, packager, packets, at_end)


class _Production:
    """The fill loop of one opened source (see the module docstring)."""

    def __init__(self, session: Session, source: MediaSource, packager: Packager,
                 context: ProducerContext, admission: Admission) -> None:
        self.session = session
        #: Released once the first frames are in the ring: the next source may open.
        self.admission = admission
        self.source = source
        self.packager = packager
        self.context = context
        self.spill: list[Frame] = []
        self.attempts = 0
        #: Media position of the last reopen (the budget resets past it).
        self.reopened_at: float | None = None
        self.announced = False
        self.exhausted = False
        #: A cut-off end seen in the last batch: reopen before the next one.
        self.cut_off: SourceBroken | None = None

    async def run(self) -> None:
        session = self.session
        while True:
            if session.seek_target is not None:
                await self._seek(session.seek_target)
                continue
            if self.spill:
                self.spill = session.ring.extend(self.spill)
            # Refill only at the low-water mark: whole refills, one job each.
            if self.exhausted or (self.announced and not session.ring.needs_refill):
                if self.exhausted and not self.spill:
                    session.source_done = True
                session.wake.clear()
                await session.wake.wait()
                continue
            generation = session.seek_generation
            # The first batch is small, so that ready (and the first page) go
            # out as soon as possible; the next one fills the ring.
            wanted = session.ring.space if self.announced else FIRST_BATCH
            frames = await self._batch(wanted)
            if generation != session.seek_generation:
                continue  # a seek arrived meanwhile: these frames are stale
            if self.exhausted and (self.announced or frames):
                frames += self._end_of_stream(frames)
            if frames:
                self.spill = session.ring.extend(frames)
            if not self.announced:
                if not len(session.ring) and not self.spill:
                    if self.exhausted:
                        raise SourceFailed("no audio could be decoded from the source")
                    continue
                self.announced = True
                self.admission.release()
                self.context.events.source_ready(session)

    def _end_of_stream(self, frames: list[Frame]) -> list[Frame]:
        """An EOS page when the last batch had no frame to carry the flag."""
        writer = self.packager.writer
        if writer is None or writer.ended or (frames and frames[-1].last):
            return []
        page = writer.end_page()
        return [Frame(encode_packet(self.session.id, page), len(page), self.source.position,
                      writer.granule_position, writer.next_sequence - 1, True)]

    async def _seek(self, target: float) -> None:
        session = self.session
        session.seek_target = None
        self.spill.clear()
        writer = self.packager.writer
        if writer is not None:
            # Frames built after the last page sent were discarded with the ring.
            writer.rewind(session.emitted_granule, session.emitted_sequence + 1)
        try:
            await _run_in(self.context.open_pool, self.source.seek, target)
        except SourceBroken as exc:
            # Not every source can seek (a live HTTP stream): keep playing.
            session.log.warning("seek to %.2f s failed: %s", target, exc)
            return
        self.exhausted = False
        session.source_done = False

    async def _batch(self, wanted: int) -> list[Frame]:
        """Read and convert about *wanted* frames, reopening a broken source."""
        source = self.source
        context = self.context
        seconds = wanted * FRAME_DURATION
        while True:
            if self.cut_off is not None:
                cause, self.cut_off = self.cut_off, None
                await self._reopen(cause)
            # Due when the ring would run dry (a new session: soon, but after
            # refills of sessions already playing).
            queued = len(self.session.ring)
            deadline = time.monotonic() + (queued * FRAME_DURATION if queued else OPEN_SLACK)
            try:
                source.volume = self.session.volume
                if source.passthrough:
                    frames, at_end, cut_off = await _run_by(
                        context.read_pool, deadline, _read_and_finish, source, self.packager,
                        seconds,
                    )
                else:
                    packets, at_end = await _run_by(context.read_pool, deadline, source.read,
                                                    seconds)
                    frames, at_end, cut_off = await _run_by(
                        context.codec_pool, deadline, _finish, source, self.packager, packets,
                        at_end,
                    )
            except SourceBroken as exc:
                await self._reopen(exc)
                continue
            self.session.passthrough = source.passthrough
            if (frames and self.reopened_at is not None
                    and source.position - self.reopened_at >= RETRY_BUDGET_RESET):
                self.attempts = 0
                self.reopened_at = None
            if cut_off is not None:
                self.cut_off = SourceBroken(cut_off)
            elif at_end:
                self.exhausted = True
            return frames

    async def _reopen(self, cause: SourceError) -> None:
        retries = self.context.retries
        position = self.source.position
        last: SourceError = cause
        while True:
            self.attempts += 1
            if self.attempts > retries:
                detail = "" if last is cause else f"; last attempt: {last}"
                raise SourceFailed(
                    f"{cause} (gave up after {retries} reopen attempts{detail})"
                ) from None
            self.session.log.warning(
                "source broke at %.2f s (%s); reopening, attempt %d", position, last, self.attempts
            )
            await asyncio.sleep(RETRY_BACKOFF * 2 ** (self.attempts - 1))
            self.session.retries += 1
            try:
                await _run_in(self.context.open_pool, self.source.reopen, position)
            except SourceError as failure:
                last = failure
                continue
            self.reopened_at = position
            self.context.events.source_retried(self.session)
            return
