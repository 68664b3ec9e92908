"""The queue and transport rules of one player, as a pure state machine.

A player belongs to one key (a Discord guild id or a playground user id, which is
also the engine session id). Commands change the *desired* state: which track,
from which position, paused or not, at which volume. Engine events tell the core
what actually happens. The async shell (``controller``) makes the engine match the
desired state and feeds events back; nothing here does I/O or reads a clock
(``now`` is always passed in).

Race-freedom rests on two things:

* every change of track bumps ``nonce``; the shell sends only the latest desired
  state, so rapid commands resolve to the last one;
* events are matched to plays. Our engine tags each play's events with a play id
  (``bind_play``), so a late ``finished`` of a replaced stream is recognised and
  ignored. With an engine that does not (the Go engine), the core counts the
  terminal events it caused itself (``sending``) and ignores that many.

Queue rules beyond a plain list: a loop mode (``LoopMode``: the current track
again, or every track that ends goes back to the end of the queue), a one-off
shuffle and moves of upcoming tracks, and a "play now" that fails gives the
interrupted track back instead of cutting it off (``play_now``).

Gapless queues: with an engine that takes a next track ahead of time, the shell
tells it what a natural end leads to (``next_plan``) and names the engine's play
(``bind_next``). At the join the engine sends ``finished`` (reason ``end``) of the
current play and then ``ready`` of the next one: the core moves its queue on and binds
the new track to that play at once (``joined_nonce``), so no play is sent. A join
that never shows its ``ready`` is played plainly (``join_missed``).

Sound settings: a Lavalink ``filters`` object (a preset's, or the user's own) and a
crossfade length, kept across tracks and plays; the shell applies them live.

A stream can also be lost without being over: the engine restarted, shut down
(``finished`` with reason ``shutdown``) or dropped an idle session (``idle``).
``stream_lost`` keeps the track and the position reached; a playing player plays
it again from there, a paused one stays paused and plays from there on resume.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "LOST_STREAM_REASONS",
    "MAX_CROSSFADE",
    "CommandError",
    "Desired",
    "Failure",
    "LoopMode",
    "NextPlan",
    "PlayerCore",
    "PlayerStatus",
    "PlayerView",
    "Track",
]

#: A ``finished`` arriving with fewer audio packets than this since its ``ready``
#: is taken, on an engine without play ids, as the end of a stream we replaced
#: before it had started, not as the new track ending. 25 packets = 0.5 s.
STALE_STREAM_PACKETS = 25

#: ``finished`` reasons (our engine's extra key) that end the stream but not the
#: track: the engine shut down, or dropped a session nobody touched.
LOST_STREAM_REASONS = frozenset({"shutdown", "idle"})

#: Longest crossfade between two tracks (seconds).
MAX_CROSSFADE = 12.0
#: Largest filters object kept (bytes of its JSON).
MAX_FILTERS_SIZE = 8192


class CommandError(Exception):
    """A command that cannot apply now; ``str()`` says why, for the user. The state
    is unchanged."""


class PlayerStatus(StrEnum):
    """What the player is doing, as fronts show it."""

    IDLE = "idle"
    LOADING = "loading"
    PLAYING = "playing"
    PAUSED = "paused"


class LoopMode(StrEnum):
    """What happens when a track ends by itself."""

    #: Go on to the next track; the queue ends after the last one.
    OFF = "off"
    #: Play the same track again (a skip still moves on).
    TRACK = "track"
    #: Every track that ends (or is skipped) goes back to the end of the queue.
    QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class Track:
    """One queue entry."""

    url: str
    title: str = ""
    duration: float | None = None
    requested_by: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: A picture of the track (an http(s) URL from the catalogue), or "".
    thumbnail: str = ""

    @property
    def label(self) -> str:
        """Title, or the URL when the title is unknown."""
        return self.title or self.url

    def as_dict(self) -> dict[str, Any]:
        """Plain values (persistence, WebSocket messages)."""
        return {"id": self.id, "url": self.url, "title": self.title,
                "duration": self.duration, "requested_by": self.requested_by,
                "thumbnail": self.thumbnail}

    def again(self) -> Track:
        """The same track as a new queue entry (its own id)."""
        return dataclasses.replace(self, id=uuid.uuid4().hex[:12])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Track:
        """Inverse of ``as_dict``."""
        duration = data.get("duration")
        return cls(
            url=str(data["url"]),
            title=str(data.get("title") or ""),
            duration=float(duration) if isinstance(duration, int | float) else None,
            requested_by=str(data.get("requested_by") or ""),
            id=str(data.get("id") or uuid.uuid4().hex[:12]),
            thumbnail=str(data.get("thumbnail") or ""),
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A track that could not be played.

    *message* is the engine's own text (fronts translate it for people);
    *serial* counts failures of this player, so two identical failures in a row
    are still told apart; *kept* is the track that went on playing instead (a
    failed "play now"), or None when the queue moved on.
    """

    track: Track
    message: str
    serial: int
    kept: Track | None = None


@dataclass(frozen=True, slots=True)
class _Interrupted:
    """What a "play now" interrupted, to give it back if the new track fails.

    Valid while the core's nonce is still *nonce* (any other change of track
    bumps it) and the new track has not sent ``ready``.
    """

    nonce: int
    track: Track
    position: float
    paused: bool
    status: PlayerStatus
    restored: bool
    # How events were being matched to the interrupted stream.
    play_id: int | None
    #: The interrupted track's play had been answered by the engine.
    bound: bool
    stream_live: bool
    expected_terminals: int
    unconfirmed_replaced: int
    awaiting_ready: bool
    ready_at: float | None
    paused_at: float | None
    position_base: float
    start_at: float


@dataclass(frozen=True, slots=True)
class Desired:
    """What the engine should be doing for this key.

    This is also all that is replayed when the stream is played again on a new
    engine process (an engine restart, a node failover, a drained node's move):
    the player plays ``track`` from the position reached with the volume, the
    filters and the crossfade, and pauses after it. A further per-session setting
    that must survive those belongs here too, sent with the play, and then carries
    over with no change to the pool.
    """

    nonce: int
    track: Track | None
    start_at: float
    paused: bool
    volume: float
    #: Lavalink's filters object (empty: no filter).
    filters: Mapping[str, Any] = field(default_factory=dict)
    #: Seconds the next track fades in over the end of the current one.
    crossfade: float = 0.0


@dataclass(frozen=True, slots=True)
class NextPlan:
    """The track a natural end of the current play (*nonce*) leads to, for an
    engine that joins it to the same stream ahead of time."""

    nonce: int
    track: Track


@dataclass(frozen=True, slots=True)
class _NextBound:
    """The next track the engine holds: its URL and the play id its events carry."""

    nonce: int
    url: str
    play_id: int


@dataclass(frozen=True, slots=True)
class PlayerView:
    """A snapshot for fronts: now playing, position, queue."""

    key: str
    status: PlayerStatus
    current: Track | None
    position: float
    duration: float | None
    paused: bool
    volume: float
    upcoming: tuple[Track, ...]
    history: tuple[Track, ...]
    error: str
    loop: LoopMode = LoopMode.OFF
    #: The latest track that could not be played (kept until the next one fails).
    failure: Failure | None = None
    #: True while the engine does not yet do what this view shows (a command on
    #: its way, or waiting for the engine to come back).
    pending: bool = False
    #: Why, in words, when the engine is behind (e.g. "the audio engine is unavailable").
    notice: str = ""
    #: The filters' name: a preset's, "custom", or "" for none.
    filter_name: str = ""
    #: Lavalink's filters object in effect (empty: none).
    filters: Mapping[str, Any] = field(default_factory=dict)
    #: Crossfade into the next track (seconds; 0 = gapless).
    crossfade: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (WebSocket state messages)."""
        return {
            "status": self.status.value,
            "current": self.current.as_dict() if self.current else None,
            "position": round(self.position, 2),
            "duration": self.duration,
            "paused": self.paused,
            "volume": self.volume,
            "queue": [t.as_dict() for t in self.upcoming],
            "history": [t.as_dict() for t in self.history],
            "error": self.error,
            "loop": self.loop.value,
            "pending": self.pending,
            "notice": self.notice,
            "filter": self.filter_name,
            "filters": copy.deepcopy(dict(self.filters)),
            "crossfade": self.crossfade,
        }


class PlayerCore:
    """Queue, cursor and transport state of one key.

    Positions given to commands count the upcoming tracks from 1 (1 = the next
    track), as ``/queue`` shows them.
    """

    #: Most tracks kept in a queue (history + current + upcoming).
    MAX_TRACKS = 500
    #: Tracks of history kept behind the current one.
    MAX_HISTORY = 50

    def __init__(self, key: str, *, volume: float = 1.0) -> None:
        self.key = key
        self.tracks: list[Track] = []
        #: Index of the current track in ``tracks`` (== len(tracks) when past the end).
        self.index = 0
        self.volume = volume
        self.paused = False
        self.nonce = 0
        self.start_at = 0.0
        self.status = PlayerStatus.IDLE
        self.error = ""
        # Matching engine events to plays.
        self.play_id: int | None = None
        self.bound_nonce: int | None = None
        self.expected_terminals = 0
        self.stream_live = False
        self.unconfirmed_replaced = 0
        # Position clock.
        self._ready_at: float | None = None
        self._position_base = 0.0
        self._paused_at: float | None = None
        self._buffered: dict[int, list[tuple[str, str, str]]] = {}
        self._early: list[tuple[str, str, str]] = []
        self._awaiting_ready = False
        #: The nonce whose play was sent last (its answer may still be on the way).
        self.sent_nonce: int | None = None
        #: Restored from storage and not started at the engine since.
        self.restored = False
        self.loop = LoopMode.OFF
        #: The latest track that could not be played.
        self.failure: Failure | None = None
        self._failures = 0
        self._interrupted: _Interrupted | None = None
        # Sound settings (kept across tracks).
        self.filters: dict[str, Any] = {}
        self.filter_name = ""
        self.crossfade = 0.0
        # Gapless: the next track the engine holds, and the nonce a join bound.
        self._next: _NextBound | None = None
        #: The nonce the latest join moved to (its play was never sent: the engine
        #: joined it to the stream).
        self.joined_nonce: int | None = None

    # -- queries ----------------------------------------------------------------------

    @property
    def current(self) -> Track | None:
        """The track at the cursor, if any."""
        return self.tracks[self.index] if 0 <= self.index < len(self.tracks) else None

    @property
    def upcoming(self) -> list[Track]:
        """Tracks after the current one."""
        return self.tracks[self.index + 1 :]

    def position(self, now: float) -> float:
        """Seconds into the current track."""
        if self._ready_at is None:
            return self._position_base
        end = self._paused_at if self._paused_at is not None else now
        return self._position_base + max(0.0, end - self._ready_at)

    def desired(self) -> Desired:
        """What the engine should be doing now."""
        return Desired(self.nonce, self.current, self.start_at, self.paused, self.volume,
                       self.filters, self.crossfade)

    def next_plan(self) -> NextPlan | None:
        """The track the engine should join after the current play, or None (no
        track follows, or the current play is not streaming yet). Loop modes
        count: the same track again under ``TRACK``, the queue's first track (or
        the current one, when it is alone) under ``QUEUE``."""
        current = self.current
        if (current is None or self.restored or not self.stream_live
                or self.bound_nonce != self.nonce or self.play_id is None):
            return None
        upcoming = self.upcoming
        if self.loop is LoopMode.TRACK:
            track = current
        elif upcoming:
            track = upcoming[0]
        elif self.loop is LoopMode.QUEUE:
            track = current
        else:
            return None
        return NextPlan(self.nonce, track)

    @property
    def next_play_id(self) -> int | None:
        """The engine's play id of the next track it holds for us, if any."""
        return self._next.play_id if self._next is not None else None

    def view(self, now: float) -> PlayerView:
        """A snapshot for fronts."""
        current = self.current
        return PlayerView(
            filter_name=self.filter_name,
            filters=self.filters,
            crossfade=self.crossfade,
            key=self.key,
            status=self.status,
            current=current,
            position=self.position(now) if current else 0.0,
            duration=current.duration if current else None,
            paused=self.paused,
            volume=self.volume,
            upcoming=tuple(self.upcoming),
            history=tuple(self.tracks[max(0, self.index - self.MAX_HISTORY) : self.index]),
            error=self.error,
            loop=self.loop,
            failure=self.failure,
        )

    # -- commands ---------------------------------------------------------------------

    def enqueue(self, track: Track, now: float) -> int:
        """Add *track* at the end; start it if nothing is playing. Returns its
        position among the upcoming tracks (0 when it starts at once).

        Raises:
            CommandError: when the queue is full.
        """
        self._check_room()
        self.tracks.append(track)
        if self.current is track:
            self._start(0.0, now)
            return 0
        if self.current is None:
            self.index = len(self.tracks) - 1
            self._start(0.0, now)
            return 0
        return len(self.upcoming)

    def enqueue_many(self, tracks: list[Track], now: float) -> tuple[int, int]:
        """Add *tracks* at the end, as many as the queue has room for (a
        playlist). Returns the first one's position (0 when it starts at once)
        and how many were added.

        Raises:
            CommandError: when the queue is full or *tracks* is empty.
        """
        if not tracks:
            raise CommandError("there is nothing to add")
        self._check_room()
        room = self.MAX_TRACKS - 1 - len(self.upcoming)
        added = tracks[:room]
        first = self.enqueue(added[0], now)
        for track in added[1:]:
            self.tracks.append(track)
        return first, len(added)

    def play_now(self, track: Track, now: float) -> None:
        """Play *track* at once; the current track goes to the history.

        If *track* then fails before it starts (the engine refuses the play, or
        its ``error`` arrives before ``ready``), the interrupted track comes back
        where it was cut off, and ``failure`` says what went wrong.

        Raises:
            CommandError: when the queue is full.
        """
        self._check_room()
        interrupted = self.current
        saved = self._save_interrupted(now) if interrupted is not None else None
        if interrupted is None:
            self.tracks.append(track)
            self.index = len(self.tracks) - 1
        else:
            self.tracks.insert(self.index + 1, track)
            self.index += 1
        self._start(0.0, now)
        self._trim_history()
        if saved is not None:
            self._interrupted = dataclasses.replace(saved, nonce=self.nonce)

    def skip(self, now: float) -> Track | None:
        """Go to the next track (or stop at the end of the queue). Returns the
        track skipped. Under ``LoopMode.TRACK`` a skip still moves on; under
        ``LoopMode.QUEUE`` the skipped track goes back to the end of the queue.

        Raises:
            CommandError: when nothing is playing.
        """
        skipped = self.current
        if skipped is None:
            raise CommandError("nothing is playing")
        self._advance(now, requeue=self.loop is LoopMode.QUEUE)
        return skipped

    def previous(self, now: float) -> Track:
        """Go back one track and play it from the start.

        Raises:
            CommandError: when there is no previous track.
        """
        if self.index <= 0 or not self.tracks:
            raise CommandError("there is no previous track")
        self.index = min(self.index, len(self.tracks)) - 1
        self._start(0.0, now)
        track = self.current
        assert track is not None
        return track

    def jump(self, position: int, now: float) -> Track:
        """Play the upcoming track at *position* (1 = next), skipping those before it.

        Raises:
            CommandError: when the position is out of range.
        """
        self._check_position(position)
        self.index += position
        self._start(0.0, now)
        self._trim_history()
        track = self.current
        assert track is not None
        return track

    def remove(self, position: int) -> Track:
        """Remove the upcoming track at *position* (1 = next).

        Raises:
            CommandError: when the position is out of range.
        """
        self._check_position(position)
        return self.tracks.pop(self.index + position)

    def clear(self) -> int:
        """Remove every upcoming track; returns how many."""
        count = len(self.upcoming)
        del self.tracks[self.index + 1 :]
        return count

    def shuffle(self, rng: random.Random) -> int:
        """Put the upcoming tracks in a random order (once; tracks added later go
        to the end). The current track keeps playing. Returns how many moved.

        Raises:
            CommandError: when fewer than two tracks are coming up.
        """
        upcoming = self.upcoming
        if len(upcoming) < 2:
            raise CommandError("there is nothing to shuffle: add at least two tracks first")
        rng.shuffle(upcoming)
        self.tracks[self.index + 1 :] = upcoming
        return len(upcoming)

    def move(self, position: int, to: int) -> Track:
        """Move the upcoming track at *position* to position *to* (both count
        from 1 = next). Returns the moved track.

        Raises:
            CommandError: when either position is out of range.
        """
        self._check_position(position)
        self._check_position(to)
        track = self.tracks.pop(self.index + position)
        self.tracks.insert(self.index + to, track)
        return track

    def set_loop(self, mode: LoopMode) -> None:
        """Choose what happens when a track ends (takes effect at the next end;
        the current play is not touched)."""
        self.loop = mode

    def seek(self, seconds: float, now: float) -> None:
        """Restart the current track at *seconds* (a new play with ``start_at``).

        Raises:
            CommandError: when nothing is playing or the time is out of range.
        """
        current = self.current
        if current is None:
            raise CommandError("nothing is playing")
        if seconds < 0:
            raise CommandError("the position must not be negative")
        if current.duration and seconds >= current.duration:
            raise CommandError(
                f"the track is only {_clock(current.duration)} long"
            )
        self._start(seconds, now, keep_pause=True)

    def pause(self, now: float) -> None:
        """Pause output.

        Raises:
            CommandError: when nothing is playing or it is already paused.
        """
        if self.current is None:
            raise CommandError("nothing is playing")
        if self.paused:
            raise CommandError("already paused")
        self.paused = True
        if self._ready_at is not None and self._paused_at is None:
            self._paused_at = now
        if self.status is PlayerStatus.PLAYING:
            self.status = PlayerStatus.PAUSED

    def resume(self, now: float) -> None:
        """Resume output.

        Raises:
            CommandError: when nothing is playing or it is not paused.
        """
        if self.current is None:
            raise CommandError("nothing is playing")
        if not self.paused:
            raise CommandError("not paused")
        if self.restored:
            # Nothing runs at the engine for a restored player: start it where
            # it was left.
            self._start(self._position_base, now)
            return
        self.paused = False
        if self._paused_at is not None and self._ready_at is not None:
            self._ready_at += now - self._paused_at
        self._paused_at = None
        if self.status is PlayerStatus.PAUSED:
            self.status = PlayerStatus.PLAYING

    def set_volume(self, volume: float) -> None:
        """Set the gain (0 to 2).

        Raises:
            CommandError: when out of range.
        """
        if not 0.0 <= volume <= 2.0:
            raise CommandError("the volume must be between 0 and 200 %")
        self.volume = volume

    def set_filters(self, filters: Mapping[str, Any], name: str = "custom") -> None:
        """Use Lavalink's *filters* object from now on (``{}``: none), called *name*
        (a preset's name, or "custom"). The engine checks every value; here only
        the shape and size.

        Raises:
            CommandError: not an object of filters, or too large.
        """
        if not isinstance(filters, Mapping) or not all(isinstance(k, str) for k in filters):
            raise CommandError("the filters must be an object of named filters")
        try:
            size = len(json.dumps(filters, allow_nan=False))
        except (TypeError, ValueError):
            raise CommandError("the filters must be plain numbers, lists and objects"
                               ) from None
        if size > MAX_FILTERS_SIZE:
            raise CommandError("the filters are too large")
        self.filters = copy.deepcopy(dict(filters))
        self.filter_name = name if self.filters else ""

    def set_crossfade(self, seconds: float) -> None:
        """Fade each next track in over the last *seconds* of the one before (0:
        gapless, no fade).

        Raises:
            CommandError: out of range.
        """
        if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_CROSSFADE):
            raise CommandError(f"the crossfade must be between 0 and {MAX_CROSSFADE:g} seconds")
        self.crossfade = float(seconds)

    def stop(self) -> None:
        """Stop playing and forget the whole queue."""
        self.tracks.clear()
        self.index = 0
        self.paused = False
        self.error = ""
        self._bump()
        self.status = PlayerStatus.IDLE

    # -- engine events ----------------------------------------------------------------

    def bind_play(self, nonce: int, play_id: int | None, now: float) -> None:
        """The engine accepted *nonce*'s play and named it *play_id* (None for
        engines without play ids). Replays its events that arrived first."""
        if nonce != self.nonce:
            return
        self.bound_nonce = nonce
        self.play_id = play_id
        self._awaiting_ready = True
        if play_id is not None:
            early = self._buffered.pop(play_id, [])
            self._buffered.clear()
        else:
            early = list(self._early)
        self._early.clear()
        for kind, message, reason in early:
            self._apply(kind, message, now, reason)

    def sending(self, nonce: int) -> None:
        """The shell is about to send *nonce*'s play (or a stop) to the engine.

        For engines without play ids: if a stream of ours may still be playing
        there, its coming ``finished``/``error`` is caused by this call and must
        not count as a real end.
        """
        if self.stream_live:
            self.expected_terminals += 1
            self.stream_live = False
        elif self._awaiting_ready:
            # Replaced before its ready arrived: that ready may be in flight.
            self.unconfirmed_replaced += 1
        self._awaiting_ready = False
        self.sent_nonce = nonce
        self._early.clear()

    def play_failed(self, nonce: int, message: str, now: float) -> None:
        """The engine refused the play for *nonce* (bad URL, limit reached...).

        A refused play has not touched the engine's session, so after a failed
        "play now" the interrupted stream is still playing there: it is taken
        back as it was. Otherwise the queue moves on (never looping the failed
        track)."""
        if nonce != self.nonce:
            return
        self.error = message
        current = self.current
        interrupted = self._interrupted
        if current is not None and interrupted is not None and interrupted.nonce == nonce:
            self._record_failure(current, message, kept=interrupted.track)
            self._reinstate(interrupted, now)
            return
        if current is not None:
            self._record_failure(current, message)
        self._advance(now, failed=True)

    def on_event(self, kind: str, play_id: int | None, message: str, now: float,
                 packets_since_ready: int = 0, reason: str = "") -> bool:
        """Apply an engine event (``ready``, ``finished`` or ``error``; *reason* is
        a ``finished``'s reason when the engine gives one). Returns True if it was
        taken as this player's current stream."""
        if play_id is not None:
            if self.play_id is None or self.bound_nonce != self.nonce:
                # The play's answer has not arrived yet (or a newer play is on the
                # way): keep events of recent plays until it is known.
                self._buffered.setdefault(play_id, []).append((kind, message, reason))
                if len(self._buffered) > 8:
                    self._buffered.pop(min(self._buffered))
                return False
            if play_id != self.play_id:
                if self._next is not None and play_id == self._next.play_id:
                    # The next track's events before the join (kept for it).
                    self._buffered.setdefault(play_id, []).append((kind, message, reason))
                return False
            return self._apply(kind, message, now, reason)
        # An engine without play ids: order and counting.
        if kind != "ready":
            if self.expected_terminals > 0:
                self.expected_terminals -= 1
                return False
            if self.unconfirmed_replaced > 0 and packets_since_ready < STALE_STREAM_PACKETS:
                # The ready we took was the replaced stream's, and this is its end.
                self.unconfirmed_replaced -= 1
                self.stream_live = False
                self._ready_at = None
                if self.current is not None and self.bound_nonce == self.nonce:
                    self.status = PlayerStatus.LOADING
                return False
        if self.bound_nonce == self.nonce:
            return self._apply(kind, message, now, reason)
        if self.sent_nonce == self.nonce:
            # Sent, answer not back yet: these belong to it.
            self._early.append((kind, message, reason))
        return False

    def bind_next(self, plan: NextPlan, play_id: int, now: float) -> bool:
        """The engine holds *plan*'s track as the next play *play_id*.

        If the core moved on meanwhile by a plain ``finished`` to that very track
        and the engine did join it (its ``ready`` is already here), that play is
        taken as the current track's: returns True, and no play is needed."""
        if plan.nonce == self.nonce:
            if self.bound_nonce == self.nonce and self.stream_live:
                self._next = _NextBound(plan.nonce, plan.track.url, play_id)
            return False
        current = self.current
        early = self._buffered.get(play_id, [])
        if (current is not None and current.url == plan.track.url and self.start_at == 0.0
                and self.bound_nonce != self.nonce and self.sent_nonce != self.nonce
                and any(kind == "ready" for kind, _, _ in early)):
            self.joined_nonce = self.nonce
            self.bind_play(self.nonce, play_id, now)
            return True
        return False

    def clear_next(self) -> None:
        """The engine no longer holds a next track for us (cancelled)."""
        self._next = None

    def join_missed(self, now: float) -> bool:
        """The track a join moved to never started at the engine (the next track
        came too late to join, or another one joined): play it plainly. Returns
        True when a play is now desired."""
        if self.joined_nonce != self.nonce or self.stream_live or self.current is None:
            return False
        self.joined_nonce = None
        self._start(self.start_at, now)
        return True

    def stream_lost(self, at: float, now: float) -> bool:
        """The engine no longer has this player's stream, which was not over (the
        engine restarted or shut down at *at*, or dropped the session). The track
        and the position reached at *at* are kept. Returns True when a new play
        is now desired (the player was playing); a paused player stays paused,
        with nothing at the engine, and plays from its position on resume."""
        self.stream_live = False
        self._awaiting_ready = False
        self.expected_terminals = 0
        self.unconfirmed_replaced = 0
        self._buffered.clear()
        self._early.clear()
        self._next = None
        if self.current is None:
            return False
        position = self._position_base
        if self._ready_at is not None:
            end = at if self._paused_at is None else min(self._paused_at, at)
            position += max(0.0, end - self._ready_at)
        if self.paused:
            self.play_id = None
            self.bound_nonce = None
            self._ready_at = None
            self._paused_at = None
            self._position_base = position
            self.start_at = position
            self.restored = True
            self.status = PlayerStatus.PAUSED
            return False
        self._start(position, now, keep_pause=True)
        return True

    def ready_missed(self, now: float, position: float | None = None) -> bool:
        """The engine says the bound play is streaming, but its ``ready`` never
        reached us (the socket was down when it was written): take it as ready
        now, at *position* seconds when the engine told it. Returns True if that
        changed anything."""
        if self.current is None or self.bound_nonce != self.nonce or self.stream_live:
            return False
        if position is not None:
            self._position_base = position
        return self._apply("ready", "", now)

    def stream_ended(self, now: float) -> None:
        """The engine reports this player's stream over (its end event never
        reached us, e.g. while the socket was down): go on as after ``finished``."""
        self.stream_live = False
        self._awaiting_ready = False
        self.unconfirmed_replaced = 0
        self._advance(now)

    # -- internals --------------------------------------------------------------------

    def _apply(self, kind: str, message: str, now: float, reason: str = "") -> bool:
        match kind:
            case "ready":
                self._interrupted = None
                self.stream_live = True
                self._awaiting_ready = False
                self._ready_at = now
                self._paused_at = now if self.paused else None
                self.status = PlayerStatus.PAUSED if self.paused else PlayerStatus.PLAYING
                self.error = ""
            case "finished" if reason in LOST_STREAM_REASONS:
                self.stream_lost(now, now)
            case "finished":
                self.stream_live = False
                self._awaiting_ready = False
                self.unconfirmed_replaced = 0
                following = self._next if reason == "end" else None
                ended_nonce = self.nonce
                self._ended(now)
                if following is not None and following.nonce == ended_nonce:
                    self._join(following, now)
            case "error":
                self.stream_live = False
                self._awaiting_ready = False
                self.unconfirmed_replaced = 0
                current = self.current
                label = current.label if current else "the track"
                self.error = f"could not play {label}: {message}" if message else (
                    f"could not play {label}")
                interrupted = self._interrupted
                if interrupted is not None and interrupted.nonce != self.nonce:
                    interrupted = None
                if current is not None:
                    self._record_failure(current, message, kept=interrupted.track
                                         if interrupted is not None else None)
                if interrupted is not None:
                    # The engine replaced the interrupted stream before this one
                    # failed: play it again from where it was cut off.
                    self._give_back(interrupted, now)
                else:
                    self._advance(now, failed=True)
            case _:
                return False
        return True

    def _join(self, following: _NextBound, now: float) -> None:
        """The engine went on to the next track it held, in the same stream: bind
        the track the queue moved to to that play (no play is sent). When the
        queue wants another track now, the plain play of it replaces the join."""
        current = self.current
        if current is None or current.url != following.url or self.start_at != 0.0:
            return
        self.joined_nonce = self.nonce
        self.bind_play(self.nonce, following.play_id, now)

    def _bump(self) -> None:
        self.restored = False
        self._interrupted = None
        self._next = None
        self.nonce += 1
        self.play_id = None
        self.bound_nonce = None
        self._ready_at = None
        self._paused_at = None
        self._position_base = 0.0

    def _start(self, start_at: float, now: float, *, keep_pause: bool = False) -> None:
        self._bump()
        self.start_at = start_at
        self._position_base = start_at
        if not keep_pause:
            self.paused = False
        self.status = PlayerStatus.LOADING
        if keep_pause and self.paused:
            self._paused_at = None

    def _ended(self, now: float) -> None:
        """The current track played to its end: what comes next depends on the loop."""
        if self.loop is LoopMode.TRACK and self.current is not None:
            self._start(0.0, now)
        else:
            self._advance(now, requeue=self.loop is LoopMode.QUEUE)

    def _advance(self, now: float, *, requeue: bool = False, failed: bool = False) -> None:
        """Move the cursor on. *requeue* puts a copy of the track that ends at the
        end of the queue (loop queue); a *failed* track is never put back, so a
        queue of broken links ends instead of looping on errors."""
        current = self.current
        if requeue and not failed and current is not None:
            self.tracks.append(current.again())
        if self.index < len(self.tracks):
            self.index += 1
        if self.current is not None:
            self._start(0.0, now)
            self._trim_history()
        else:
            self._bump()
            self.start_at = 0.0
            self.paused = False
            self.status = PlayerStatus.IDLE

    def _record_failure(self, track: Track, message: str, *, kept: Track | None = None
                        ) -> None:
        self._failures += 1
        self.failure = Failure(track, message, self._failures, kept)

    def _save_interrupted(self, now: float) -> _Interrupted:
        current = self.current
        assert current is not None
        return _Interrupted(
            nonce=self.nonce, track=current, position=self.position(now), paused=self.paused,
            status=self.status, restored=self.restored, play_id=self.play_id,
            bound=self.bound_nonce == self.nonce, stream_live=self.stream_live,
            expected_terminals=self.expected_terminals,
            unconfirmed_replaced=self.unconfirmed_replaced,
            awaiting_ready=self._awaiting_ready, ready_at=self._ready_at,
            paused_at=self._paused_at, position_base=self._position_base,
            start_at=self.start_at,
        )

    def _drop_failed_current(self, interrupted: _Interrupted) -> bool:
        """Take the failed "play now" track out and put the cursor back on the
        track it interrupted. False if that track is no longer just behind."""
        self._interrupted = None
        if self.index < 1 or self.tracks[self.index - 1] is not interrupted.track:
            return False
        del self.tracks[self.index]
        self.index -= 1
        return True

    def _reinstate(self, saved: _Interrupted, now: float) -> None:
        """The play of a "play now" was refused: the interrupted stream never
        stopped at the engine, so take it back as it was, under the current
        nonce (the shell counts that nonce as sent: no engine call follows)."""
        if not saved.restored and not saved.bound:
            # The interrupted track's own play had not been answered: nothing of
            # it is known to be playing, so start it again.
            self._give_back(saved, now)
            return
        if not self._drop_failed_current(saved):
            self._advance(now, failed=True)
            return
        if saved.play_id is not None:
            # Its events that came while the play was on its way.
            pending = self._buffered.pop(saved.play_id, [])
            self._buffered.clear()
            terminal_missed = False
        else:
            # The refused play was counted as ending the stream (``sending``);
            # if a terminal event was absorbed by that count, the stream really
            # ended meanwhile.
            expected = saved.expected_terminals + (1 if saved.stream_live else 0)
            terminal_missed = self.expected_terminals < expected
            pending = [e for e in self._early if e[0] != "ready"]
        self._early.clear()
        self.restored = saved.restored
        self.paused = saved.paused
        self.status = saved.status
        self.play_id = saved.play_id
        self.bound_nonce = None if saved.restored else self.nonce
        self.stream_live = saved.stream_live
        self.expected_terminals = saved.expected_terminals
        self.unconfirmed_replaced = saved.unconfirmed_replaced
        self._awaiting_ready = saved.awaiting_ready
        self._ready_at = saved.ready_at
        self._paused_at = saved.paused_at
        self._position_base = saved.position_base
        self.start_at = saved.start_at
        if terminal_missed:
            self.stream_live = False
            self._ended(now)
            return
        for kind, message, reason in pending:
            self._apply(kind, message, now, reason)

    def _give_back(self, saved: _Interrupted, now: float) -> None:
        """A "play now" failed after the engine had replaced the interrupted
        stream: play the interrupted track again from where it was cut off."""
        if not self._drop_failed_current(saved):
            self._advance(now, failed=True)
            return
        self.paused = saved.paused
        self._start(saved.position, now, keep_pause=True)

    def _trim_history(self) -> None:
        extra = self.index - self.MAX_HISTORY
        if extra > 0:
            del self.tracks[:extra]
            self.index -= extra

    def _check_room(self) -> None:
        if len(self.upcoming) + 1 >= self.MAX_TRACKS:
            raise CommandError(f"the queue is full ({self.MAX_TRACKS} tracks)")

    def _check_position(self, position: int) -> None:
        count = len(self.upcoming)
        if count == 0:
            raise CommandError("the queue is empty")
        if not 1 <= position <= count:
            raise CommandError(f"there is no track {position} in the queue (1 to {count})")

    # -- persistence ------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """What survives a gateway restart."""
        return {
            "tracks": [t.as_dict() for t in self.tracks],
            "index": self.index,
            "volume": self.volume,
            "position": self.position(now) if self.current else 0.0,
            "paused": self.paused,
            "playing": self.status in (PlayerStatus.PLAYING, PlayerStatus.LOADING),
            "loop": self.loop.value,
            "settings": self.settings(),
        }

    def settings(self) -> dict[str, Any]:
        """The sound settings (kept per key, with or without a queue)."""
        return {"filters": copy.deepcopy(self.filters), "filter_name": self.filter_name,
                "crossfade": self.crossfade}

    def restore_settings(self, data: object) -> None:
        """Take back ``settings()`` data; anything unreadable is left at its default."""
        if not isinstance(data, dict):
            return
        filters = data.get("filters")
        name = data.get("filter_name")
        if isinstance(filters, dict):
            try:
                self.set_filters(filters, name if isinstance(name, str) else "custom")
            except CommandError:
                pass
        crossfade = data.get("crossfade")
        if isinstance(crossfade, int | float) and not isinstance(crossfade, bool):
            try:
                self.set_crossfade(float(crossfade))
            except CommandError:
                pass

    @classmethod
    def restore(cls, key: str, data: dict[str, Any]) -> PlayerCore:
        """Rebuild a player from ``snapshot`` data. Playback is not resumed: the
        player comes back paused at its position if it was playing."""
        core = cls(key, volume=float(data.get("volume", 1.0)))
        core.tracks = [Track.from_dict(t) for t in data.get("tracks", [])]
        core.index = min(max(0, int(data.get("index", 0))), len(core.tracks))
        core._position_base = float(data.get("position", 0.0))
        core.start_at = core._position_base
        loop = data.get("loop")
        core.loop = LoopMode(loop) if loop in set(LoopMode) else LoopMode.OFF
        core.restore_settings(data.get("settings"))
        if core.current is not None:
            # Nothing plays at the engine until a command (resume, skip...)
            # starts a new play: the shell takes this state as already applied.
            core.paused = True
            core.status = PlayerStatus.PAUSED
            core.restored = True
        return core


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

