"""The front's directory of sessions: which worker holds each one, what it costs, and
how it continues elsewhere (pure: no I/O, the front feeds it).

A record lives from the play the front forwarded until the session is stopped or its
worker no longer holds it (reaped idle). Its cost is the projected one until the
worker reports what the session really is (passthrough or transcoding, its filters),
then the reported one; an ended session (still queryable) costs nothing.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Final, Generic, TypeVar

from audio_engine.cluster.cost import Load, play_units
from audio_engine.cluster.reports import SessionSnapshot, WorkerReport
from audio_engine.sessions.session import PlayRequest, Resume, effective_filters
from audio_engine.sources.resolver import MEDIA_EXTENSIONS
from protocol import FRAME_DURATION, SAMPLES_PER_FRAME
from protocol.filters import Filters, Loudness

__all__ = ["SessionDirectory", "SessionRecord"]

#: File extensions whose media is usually 48 kHz Opus: charged as passthrough until
#: the worker says what they are (within half a second). A page URL (no media
#: extension, resolved by yt-dlp) is too: the best audio of the sites people play
#: from is Opus in WebM.
_OPUS_SUFFIXES: Final = frozenset({".opus", ".webm", ".weba", ".ogg", ".oga", ".mka"})

W = TypeVar("W")


@dataclass(slots=True)
class SessionRecord(Generic[W]):
    """The front's knowledge of one session (live or ended, until it is removed)."""

    worker: W
    request: PlayRequest
    play_id: int
    #: Projected units until the worker reports what it is, then the reported ones.
    load: Load
    live: bool = True
    #: From the worker's latest report (None before the first that has it).
    snapshot: SessionSnapshot | None = None
    snapshot_at: float = 0.0
    #: The worker answered the play: its reports from now on know the session (a
    #: report sampled before the play arrives on the channel before the answer).
    confirmed: bool = False
    #: Set while the session is being moved from a dead worker.
    moving: bool = False
    paused: bool = False
    volume: float = 1.0
    filters: Filters = field(default_factory=Filters)
    loudness_default: bool = True
    crossfade: float = 0.0
    #: A position set by a play or a seek, and when (newer than the snapshot until
    #: the next report).
    position_hint: tuple[float, float] | None = None

    @classmethod
    def of(cls, worker: W, request: PlayRequest, play_id: int, load: Load
           ) -> SessionRecord[W]:
        """A new play's record, with the play's sound settings."""
        return cls(worker, request, play_id, load, volume=request.volume,
                   filters=request.filters, loudness_default=request.loudness_default,
                   crossfade=request.crossfade)


class SessionDirectory(Generic[W]):
    """Every session the front knows, by id.

    Args:
        default_loudness: the engine's default loudness (a filter that costs).
    """

    def __init__(self, default_loudness: Loudness | None = None) -> None:
        self._default_loudness = default_loudness
        self._records: dict[str, SessionRecord[W]] = {}

    def get(self, session_id: str) -> SessionRecord[W] | None:
        return self._records.get(session_id)

    def put(self, session_id: str, record: SessionRecord[W]) -> None:
        self._records[session_id] = record

    def pop(self, session_id: str) -> SessionRecord[W] | None:
        return self._records.pop(session_id, None)

    def live_count(self) -> int:
        """Sessions live now (ended ones that are still held do not count)."""
        return sum(1 for r in self._records.values() if r.live)

    def carried(self, worker: W | None = None) -> Load:
        """The units the live sessions (of *worker*, or all) carry."""
        total = Load()
        for record in self._records.values():
            if record.live and (worker is None or record.worker is worker):
                total = total + record.load
        return total

    def projected(self, request: PlayRequest) -> Load:
        """What a new play is charged until its worker reports what it is."""
        filters = effective_filters(request.filters, volume=request.volume,
                                    loudness_default=request.loudness_default,
                                    default_loudness=self._default_loudness).active()
        suffix = PurePosixPath(urllib.parse.urlsplit(request.url).path).suffix.lower()
        page = suffix not in MEDIA_EXTENSIONS and not request.url.startswith("/")
        passthrough = request.output.is_opus and not filters and (
            suffix in _OPUS_SUFFIXES or page)
        return Load(*play_units(transcoding=not passthrough, filters=filters))

    def place(self, workers: Iterable[W], level: int, ticking: Callable[[W], bool],
              index: Callable[[W], int]) -> W:
        """The worker a new session goes to: the least loaded (at complexity *level*)
        of those whose clock ticks, a stalled one only if none does."""
        candidates = list(workers)
        healthy = [w for w in candidates if ticking(w)] or candidates
        return min(healthy, key=lambda w: (self.carried(w).at(level), index(w)))

    def apply(self, worker: W, report: WorkerReport) -> None:
        """What *worker* reported: each session's kind, cost, position and Ogg stream
        (what a move needs), the ones that ended, and the ones it no longer holds."""
        for session_id, record in list(self._records.items()):
            if record.worker is not worker or record.moving or not record.confirmed:
                continue
            snapshot = report.sessions.get(session_id)
            if snapshot is not None:
                record.snapshot = snapshot
                record.snapshot_at = report.at
                record.play_id = snapshot.play_id  # a gapless join moves it on
                record.paused = snapshot.paused
                record.live = True
                record.load = Load(*play_units(transcoding=not snapshot.passthrough,
                                               filters=snapshot.filters))
            elif session_id in report.ended:
                record.live = False
                record.load = Load()
            else:
                del self._records[session_id]  # stopped or reaped

    def orphaned(self, worker: W) -> int:
        """*worker* died: its live sessions are to be moved (marked), its ended ones
        are gone. Returns how many are to be moved."""
        moving = 0
        for session_id, record in list(self._records.items()):
            if record.worker is not worker:
                continue
            if record.live:
                record.moving = True
                moving += 1
            else:
                del self._records[session_id]
        return moving

    def to_move(self, worker: W) -> list[tuple[str, SessionRecord[W]]]:
        """The sessions of dead *worker* still waiting to be moved."""
        return [(sid, r) for sid, r in self._records.items()
                if r.worker is worker and r.moving]

    @staticmethod
    def moved_play(record: SessionRecord[W], died_at: float
                   ) -> tuple[PlayRequest, Resume | None]:
        """The play that continues *record*'s stream on another worker: its sound
        settings as they are now, from the position its listeners reached, in the same
        Ogg stream after every frame that may have gone out (a gap of a few frames,
        never page numbers that go back)."""
        request = replace(record.request, volume=record.volume, filters=record.filters,
                          loudness_default=record.loudness_default,
                          crossfade=record.crossfade)
        snapshot = record.snapshot
        if snapshot is None:
            return request, None  # it had not started: play it as asked
        # At most one frame per tick went out since the report, and a couple more.
        ahead = 0 if snapshot.paused or not snapshot.ready_sent else math.ceil(
            max(0.0, died_at - record.snapshot_at) / FRAME_DURATION) + 2
        position = snapshot.position + ahead * FRAME_DURATION
        resume = Resume(serial=snapshot.serial,
                        granule=snapshot.granule + ahead * SAMPLES_PER_FRAME,
                        sequence=snapshot.sequence + ahead,
                        ready_sent=snapshot.ready_sent, paused=snapshot.paused)
        return replace(request, start_at=position), resume
