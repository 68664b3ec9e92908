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

from audio_engine.resolver import ResolveError, Resolver
from audio_engine.ring import Frame
from audio_engine.session import Session
from audio_engine.source import (
    MediaSource,
    SourceBroken,
    SourceError,
    SourceFailed,
    SourceOptions,
)
from protocol import FRAME_DURATION, OggOpusWriter

__all__ = [
    "EARLY_END_TOLERANCE",
    "RETRY_BACKOFF",
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
    io_pool: Executor
    codec_pool: Executor
    events: SessionEvents
    options: Callable[[Session], SourceOptions]
    retries: int


async def _run_in(pool: Executor, function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, function, *args)


async def run_producer(session: Session, context: ProducerContext) -> None:
    """Produce *session*'s frames until the task is cancelled (the session ended,
    was stopped or replaced) or the source fails. Never raises except
    ``CancelledError``; cancelling is safe at any await."""
    source: MediaSource | None = None
    try:
        started = time.monotonic()
        async with context.resolver.slots:
            target = await context.resolver.resolve(session.request.url)
            session.title = target.title
            source = MediaSource(
                target,
                context.options(session),
                start_at=session.request.start_at,
                volume=session.volume,
            )
            await _run_in(context.io_pool, source.open)
        context.events.source_opened(session, time.monotonic() - started)
        if source.duration:
            session.duration = source.duration
        session.passthrough = source.passthrough
        if session.request.output.is_ogg:
            session.writer = OggOpusWriter(session.serial, head=source.opus_head)
        await _Production(session, source, context).run()
    except ResolveError as exc:
        context.events.source_failed(session, str(exc), "resolve")
    except SourceError as exc:
        context.events.source_failed(session, str(exc), "source")
    except Exception:
        session.log.exception("producer crashed")
        context.events.source_failed(session, "internal error while producing audio", "internal")
    finally:
        if source is not None:
            context.events.retire(source)


class _Production:
    """The fill loop of one opened source (see the module docstring)."""

    def __init__(self, session: Session, source: MediaSource, context: ProducerContext) -> None:
        self.session = session
        self.source = source
        self.context = context
        self.spill: list[Frame] = []
        self.attempts = 0
        self.announced = False
        self.exhausted = False

    async def run(self) -> None:
        session = self.session
        while True:
            if session.seek_target is not None:
                await self._seek(session.seek_target)
                continue
            if self.spill:
                self.spill = session.ring.extend(self.spill)
            if self.exhausted or session.ring.space <= 0:
                if self.exhausted and not self.spill:
                    session.source_done = True
                session.wake.clear()
                await session.wake.wait()
                continue
            generation = session.seek_generation
            frames = await self._batch(session.ring.space)
            if generation != session.seek_generation:
                continue  # a seek arrived meanwhile: these frames are stale
            if frames:
                self.spill = session.ring.extend(frames)
            if not self.announced:
                if not len(session.ring) and not self.spill:
                    if self.exhausted:
                        raise SourceFailed("no audio could be decoded from the source")
                    continue
                self.announced = True
                self.context.events.source_ready(session)

    async def _seek(self, target: float) -> None:
        session = self.session
        session.seek_target = None
        self.spill.clear()
        try:
            await _run_in(self.context.io_pool, self.source.seek, target)
        except SourceBroken as exc:
            # Not every source can seek (a live HTTP stream): keep playing.
            session.log.warning("seek to %.2f s failed: %s", target, exc)
            return
        self.exhausted = False
        session.source_done = False
        session.position = target

    async def _batch(self, wanted: int) -> list[Frame]:
        """Read and convert about *wanted* frames, reopening a broken source."""
        source = self.source
        while True:
            try:
                packets, at_end = await _run_in(
                    self.context.io_pool, source.read, wanted * FRAME_DURATION
                )
                source.volume = self.session.volume
                frames = await _run_in(self.context.codec_pool, source.convert, packets, at_end)
                self.session.passthrough = source.passthrough
                if frames:
                    self.attempts = 0
                if at_end:
                    self._check_complete()
                    self.exhausted = True
                return frames
            except SourceBroken as exc:
                await self._reopen(exc)

    def _check_complete(self) -> None:
        duration = self.source.duration
        position = self.source.position
        if duration and duration - position > EARLY_END_TOLERANCE and position < 0.95 * duration:
            raise SourceBroken(f"the source ended early, at {position:.1f} s of {duration:.1f} s")

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
            try:
                await _run_in(self.context.io_pool, self.source.reopen, position)
            except SourceError as failure:
                last = failure
                continue
            self.session.retries += 1
            self.context.events.source_retried(self.session)
            return
