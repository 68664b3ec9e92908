"""A player's tracks: history, the current one and what comes next, the loop mode,
shuffles and moves. Pure: no engine, no clock, no play state.

Positions given to the methods count the upcoming tracks from 1 (1 = the next
track), as ``/queue`` shows them.

A queue can also be *stopped* (``stop``): nothing is current, and the track that was
waits at the head of the upcoming ones, until ``start`` makes it current again (or
a jump, a "play now" or going back picks another).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from gateway.player.errors import CommandError
from gateway.player.track import Track

__all__ = ["LoopMode", "Queue"]


class LoopMode(StrEnum):
    """What happens when a track ends by itself."""

    #: Go on to the next track; the queue ends after the last one.
    OFF = "off"
    #: Play the same track again (a skip still moves on).
    TRACK = "track"
    #: Every track that ends (or is skipped) goes back to the end of the queue.
    QUEUE = "queue"


class Queue:
    """History, current track and upcoming tracks of one player, and its loop mode."""

    #: Most tracks kept in a queue (history + current + upcoming).
    MAX_TRACKS = 500
    #: Tracks of history kept behind the current one.
    MAX_HISTORY = 50

    def __init__(self, tracks: Iterable[Track] = (), index: int = 0,
                 loop: LoopMode = LoopMode.OFF, *, stopped: bool = False) -> None:
        self._tracks = list(tracks)
        #: Index of the current track (== len(tracks) when past the end).
        self._index = min(max(0, index), len(self._tracks))
        self.loop = loop
        #: Stopped: the cursor's track is not current but the first upcoming one.
        self._stopped = stopped and self._index < len(self._tracks)

    # -- reading ---------------------------------------------------------------------

    @property
    def current(self) -> Track | None:
        """The track at the cursor, if any (none while stopped)."""
        tracks, index = self._tracks, self._index
        return tracks[index] if index < len(tracks) and not self._stopped else None

    @property
    def upcoming(self) -> list[Track]:
        """Tracks after the current one (while stopped: from the cursor's on)."""
        return self._tracks[self._head :]

    @property
    def stopped(self) -> bool:
        """Nothing is current, and the upcoming tracks wait for ``start``."""
        return self._stopped

    @property
    def history(self) -> list[Track]:
        """Tracks before the current one (at most ``MAX_HISTORY``), oldest first."""
        return self._tracks[max(0, self._index - self.MAX_HISTORY) : self._index]

    @property
    def tracks(self) -> Sequence[Track]:
        """Every track, history first (read-only)."""
        return tuple(self._tracks)

    def after_end(self) -> Track | None:
        """The track a natural end of the current one leads to (the loop mode
        counts), or None when the queue would end."""
        current, upcoming = self.current, self.upcoming
        if current is None:
            return None
        if self.loop is LoopMode.TRACK:
            return current
        if upcoming:
            return upcoming[0]
        return current if self.loop is LoopMode.QUEUE else None

    # -- changes -----------------------------------------------------------------------

    def add(self, tracks: Sequence[Track]) -> tuple[int, int]:
        """Add *tracks* at the end, as many as there is room for. Returns the first
        one's position among the upcoming tracks (0 when it becomes the current
        track) and how many were added.

        Raises:
            CommandError: when the queue is full.
        """
        self._check_room()
        room = self.MAX_TRACKS - 1 - len(self.upcoming)
        added = tracks[:room]
        first_index = len(self._tracks)
        self._tracks.extend(added)
        return first_index - self._head + 1, len(added)

    def insert_next(self, tracks: Sequence[Track]) -> tuple[int, int]:
        """Put *tracks* right after the current track (at the head of a stopped
        queue's waiting tracks), in their order, as many as there is room for (with
        no track at all they are added as by ``add``).
        Returns the first one's position among the upcoming tracks (0 when it becomes
        the current track) and how many were inserted.

        Raises:
            CommandError: when the queue is full.
        """
        if self.current is None and not self._stopped:
            return self.add(tracks)
        self._check_room()
        room = self.MAX_TRACKS - 1 - len(self.upcoming)
        inserted = list(tracks[:room])
        self._tracks[self._head : self._head] = inserted
        return 1, len(inserted)

    def insert_now(self, track: Track) -> None:
        """Make *track* the current track, the current one going to the history.

        Raises:
            CommandError: when the queue is full.
        """
        self._check_room()
        if self._stopped:
            self._tracks.insert(self._index, track)
            self._stopped = False
        elif self.current is None:
            self._tracks.append(track)
            self._index = len(self._tracks) - 1
        else:
            self._tracks.insert(self._index + 1, track)
            self._index += 1
        self._trim_history()

    def advance(self, *, requeue: bool = False) -> Track | None:
        """Move the cursor on; returns the new current track. *requeue* puts a copy of
        the track that ends at the end of the queue first (loop queue). A stopped
        queue does not move (``start`` does)."""
        if self._stopped:
            return None
        current = self.current
        if requeue and current is not None:
            self._tracks.append(current.again())
        if self._index < len(self._tracks):
            self._index += 1
        if self.current is not None:
            self._trim_history()
        return self.current

    def discard(self) -> Track | None:
        """The current track could not be played: it leaves the queue (it never
        played, so it is no history) and the next one becomes current; returns
        it."""
        if self.current is not None:
            del self._tracks[self._index]
        return self.current

    def back(self) -> Track:
        """Go back one track; returns it.

        Raises:
            CommandError: when there is no previous track.
        """
        if self._index <= 0 or not self._tracks:
            raise CommandError("there is no previous track")
        self._stopped = False
        self._index = min(self._index, len(self._tracks)) - 1
        track = self.current
        assert track is not None
        return track

    def jump(self, position: int) -> Track:
        """Make the upcoming track at *position* current, skipping those before it.

        Raises:
            CommandError: when the position is out of range.
        """
        self._check_position(position)
        self._index = self._slot(position)
        self._stopped = False
        self._trim_history()
        track = self.current
        assert track is not None
        return track

    def remove(self, position: int) -> Track:
        """Remove the upcoming track at *position*.

        Raises:
            CommandError: when the position is out of range.
        """
        self._check_position(position)
        track = self._tracks.pop(self._slot(position))
        self._settle()
        return track

    def clear(self) -> int:
        """Remove every upcoming track; returns how many."""
        count = len(self.upcoming)
        del self._tracks[self._head :]
        self._settle()
        return count

    def put_back(self, tracks: Sequence[Track]) -> int:
        """Put *tracks* back at the head of the upcoming ones (an undone clear), as
        many as there is room for; with nothing current they wait, as after a stop.
        Returns how many.

        Raises:
            CommandError: when the queue is full.
        """
        self._check_room()
        back = list(tracks[: self.MAX_TRACKS - 1 - len(self.upcoming)])
        if back and self.current is None:
            self._stopped = True
        self._tracks[self._head : self._head] = back
        return len(back)

    def remove_duplicates(self) -> int:
        """Remove every upcoming track whose link is already the current track's or
        an earlier upcoming track's (the first one stays where it is). Returns how
        many were removed."""
        seen = {self.current.url.strip()} if self.current is not None else set()
        kept: list[Track] = []
        for track in self.upcoming:
            url = track.url.strip()
            if url not in seen:
                seen.add(url)
                kept.append(track)
        removed = len(self.upcoming) - len(kept)
        self._tracks[self._head :] = kept
        self._settle()
        return removed

    def shuffle(self, rng: random.Random) -> int:
        """Put the upcoming tracks in a random order (once; tracks added later go
        to the end). Returns how many moved.

        Raises:
            CommandError: when fewer than two tracks are coming up.
        """
        upcoming = self.upcoming
        if len(upcoming) < 2:
            raise CommandError("there is nothing to shuffle: add at least two tracks first")
        rng.shuffle(upcoming)
        self._tracks[self._head :] = upcoming
        return len(upcoming)

    def move(self, position: int, to: int) -> Track:
        """Move the upcoming track at *position* to position *to*; returns it.

        Raises:
            CommandError: when either position is out of range.
        """
        self._check_position(position)
        self._check_position(to)
        track = self._tracks.pop(self._slot(position))
        self._tracks.insert(self._slot(to), track)
        return track

    def take_back(self, interrupted: Track) -> bool:
        """A "play now" failed: drop the current track and put the cursor back on
        *interrupted*. False (nothing changed) if that track is no longer just
        behind the current one."""
        if self._index < 1 or self._tracks[self._index - 1] is not interrupted:
            return False
        del self._tracks[self._index]
        self._index -= 1
        return True

    def forget(self) -> None:
        """Empty the queue (the loop mode stays)."""
        self._tracks.clear()
        self._index = 0
        self._stopped = False

    def stop(self) -> None:
        """Nothing plays any more, and nothing is forgotten: the current track waits
        at the head of the upcoming ones (``start`` plays it again from there)."""
        if self.current is not None:
            self._stopped = True

    def start(self) -> Track | None:
        """A stopped queue goes on: its first upcoming track becomes current and is
        returned (None when the queue is not stopped)."""
        if not self._stopped:
            return None
        self._stopped = False
        return self.current

    # -- persistence -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain values for the store."""
        return {"tracks": [t.as_dict() for t in self._tracks], "index": self._index,
                "loop": self.loop.value, "stopped": self._stopped}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Queue:
        """Inverse of ``snapshot``; an unknown loop mode is off."""
        loop = data.get("loop")
        return cls((Track.from_dict(t) for t in data.get("tracks", [])),
                   int(data.get("index", 0)),
                   LoopMode(loop) if loop in set(LoopMode) else LoopMode.OFF,
                   stopped=data.get("stopped") is True)

    # -- rules -------------------------------------------------------------------------

    @property
    def _head(self) -> int:
        """Index of the first upcoming track."""
        return self._index if self._stopped else self._index + 1

    def _slot(self, position: int) -> int:
        """Index of the upcoming track at *position* (1 = the next one)."""
        return self._head + position - 1

    def _settle(self) -> None:
        # A stopped queue whose waiting tracks are all gone is simply idle.
        if self._index >= len(self._tracks):
            self._stopped = False

    def _trim_history(self) -> None:
        extra = self._index - self.MAX_HISTORY
        if extra > 0:
            del self._tracks[:extra]
            self._index -= extra

    def _check_room(self) -> None:
        if len(self.upcoming) + 1 >= self.MAX_TRACKS:
            raise CommandError(f"the queue is full ({self.MAX_TRACKS} tracks)")

    def _check_position(self, position: int) -> None:
        count = len(self.upcoming)
        if count == 0:
            raise CommandError("the queue is empty")
        if not 1 <= position <= count:
            raise CommandError(f"there is no track {position} in the queue (1 to {count})")
