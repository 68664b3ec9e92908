"""What fronts ask a player to do, as values: one frozen dataclass per command, applied
by ``Player.apply(command) -> Outcome`` (the pure core's ``PlayerCore.apply``).

A command is a plain value that can be logged, compared and tested; whether it can
apply is decided when it is applied (a position depends on the queue, a seek on the
track), and a refusal is a ``CommandError`` whose words are for the user.

Positions count the upcoming tracks from 1 (1 = the next track), as ``/queue`` shows
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from gateway.player.errors import CommandError
from gateway.player.queue import LoopMode
from gateway.player.track import Track
from gateway.player.view import PlayerView
from protocol.filter_presets import Preset, preset
from protocol.filters import FilterError, Filters, parse_filters

__all__ = [
    "Clear",
    "Command",
    "Enqueue",
    "Jump",
    "Move",
    "Outcome",
    "Pause",
    "PlayNext",
    "PlayNow",
    "Previous",
    "Remove",
    "RemoveDuplicates",
    "Resume",
    "Seek",
    "SeekBy",
    "SetCrossfade",
    "SetFilters",
    "SetLoop",
    "SetVolume",
    "Shuffle",
    "Skip",
    "Stop",
    "UndoClear",
]


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Add *track* (and *more* after it) at the end of the queue, as many as fit; the
    first starts at once if nothing plays. Outcome: its ``position`` (0 = playing
    now) and ``count`` added.

    Refused: the queue is full."""

    track: Track
    more: tuple[Track, ...] = ()


@dataclass(frozen=True, slots=True)
class PlayNow:
    """Play *track* at once (the current one goes to the history); *more* go to the
    end of the queue, as many as fit. If *track* fails before it starts, the
    interrupted track comes back where it was cut off. Outcome: ``count`` added.

    Refused: the queue is full."""

    track: Track
    more: tuple[Track, ...] = ()


@dataclass(frozen=True, slots=True)
class PlayNext:
    """Put *track* (and *more* after it) right after the current track, as many as
    fit; the first starts at once if nothing plays. Outcome: its ``position`` (1, or
    0 = playing now) and ``count`` added.

    Refused: the queue is full."""

    track: Track
    more: tuple[Track, ...] = ()


@dataclass(frozen=True, slots=True)
class Skip:
    """Go to the next track (under loop ``queue`` the skipped one goes back to the
    end). Outcome: the skipped ``track``. Refused: nothing is playing."""


@dataclass(frozen=True, slots=True)
class Previous:
    """Go back one track and play it from the start. Outcome: that ``track``.
    Refused: there is no previous track."""


@dataclass(frozen=True, slots=True)
class Jump:
    """Play the upcoming track at *position* now, skipping those before it.
    Outcome: that ``track``. Refused: no such position."""

    position: int


@dataclass(frozen=True, slots=True)
class Remove:
    """Remove the upcoming track at *position*. Outcome: that ``track``.
    Refused: no such position."""

    position: int


@dataclass(frozen=True, slots=True)
class Move:
    """Move the upcoming track at *position* to position *to*. Outcome: that
    ``track``. Refused: no such position."""

    position: int
    to: int


@dataclass(frozen=True, slots=True)
class RemoveDuplicates:
    """Remove every upcoming track whose link is already the current track's or an
    earlier upcoming track's. Outcome: ``count`` removed."""


@dataclass(frozen=True, slots=True)
class Clear:
    """Remove every upcoming track (the current one plays on). Outcome: ``count``
    removed."""


@dataclass(frozen=True, slots=True)
class UndoClear:
    """Put back the upcoming tracks the latest ``Clear`` removed, at the head of the
    upcoming ones (with nothing playing they wait, as after a stop), within
    ``applier.UNDO_CLEAR_SECONDS`` of it. Outcome: ``count`` put back. Refused: no
    clear to undo, too late, or the queue is full."""


@dataclass(frozen=True, slots=True)
class Shuffle:
    """Put the upcoming tracks in a random order, once, drawn from *seed* (so the
    command is a value: the same seed gives the same order). Outcome: ``count``
    moved. Refused: fewer than two tracks are coming up."""

    seed: int


@dataclass(frozen=True, slots=True)
class SetLoop:
    """What happens when a track ends by itself, from the next end on."""

    mode: LoopMode


@dataclass(frozen=True, slots=True)
class Seek:
    """Play the current track again from *seconds* (pause state kept).
    Refused: nothing is playing, a negative time, or past the track's end."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SeekBy:
    """Play the current track again from *seconds* after (or, negative, before) the
    position reached; rewinding past the start plays it from the start (pause state
    kept). Outcome: the ``view``'s position is where it plays from. Refused: nothing
    is playing, or past the track's end."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Pause:
    """Pause. Refused: nothing is playing, or already paused."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Resume (a restored queue starts playing from its position; a stopped one
    plays its first track). Refused: nothing is playing or waiting, or not paused."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop playing and forget the whole queue; with *keep_queue*, forget nothing:
    the current track waits at the head of the upcoming ones, from its start, and
    ``Resume`` plays on from there."""

    keep_queue: bool = False


@dataclass(frozen=True, slots=True)
class SetVolume:
    """Set the gain: 0 (mute) to 2 (double). Refused: out of range, or an engine
    without live volume."""

    volume: float


@dataclass(frozen=True, slots=True)
class SetFilters:
    """Use *filters* (Lavalink's filter set) from now on, called *name* (a preset's
    name, or "custom"; "" when the set is empty). Refused: an engine without
    filters."""

    filters: Filters
    name: str = "custom"

    @classmethod
    def from_json(cls, data: object, name: str = "custom") -> SetFilters:
        """A filter set from JSON (a user's own, a stored one), checked.

        Raises:
            CommandError: *data* is not a valid filters object (its words say why).
        """
        try:
            filters = parse_filters(data)
        except FilterError as exc:
            raise CommandError(str(exc)) from exc
        return cls(filters, name if filters != Filters() else "")

    @classmethod
    def preset(cls, name: Preset) -> SetFilters:
        """The preset *name* (``reset``: no filter)."""
        filters = preset(name)
        return cls(filters, name.value if filters != Filters() else "")


@dataclass(frozen=True, slots=True)
class SetCrossfade:
    """Fade each next track in over the last *seconds* of the one before (0:
    gapless). Refused: outside 0-12 s, or an engine without crossfade."""

    seconds: float


#: Every command a player takes.
Command: TypeAlias = (Enqueue | PlayNow | Skip | Previous | Jump | Remove | Move | Clear
                      | Shuffle | SetLoop | Seek | Pause | Resume | Stop | SetVolume
                      | SetFilters | SetCrossfade | UndoClear | PlayNext | SeekBy
                      | RemoveDuplicates)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did.

    Attributes:
        command: the command applied.
        view: the player right after it.
        track: the track it acted on (added first, skipped, jumped to, removed, moved,
            gone back to), if any.
        position: for ``Enqueue`` and ``PlayNext``: the first added track's position
            among the upcoming tracks (0: it plays now).
        count: tracks added, removed, shuffled or put back.
    """

    command: Command
    view: PlayerView
    track: Track | None = None
    position: int = 0
    count: int = 0
