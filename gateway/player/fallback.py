"""What follows a track that cannot be played. Pure.

The engine refused its play, or sent ``error`` while it played: the failure is
recorded (``PlayerCore.failure``, ``error``) and the queue moves on, never looping
the failed track, which leaves the queue. A "play now" that fails instead gives the
interrupted track back rather than cutting it off: where it was (the engine refused
the play and never replaced the stream, or kept that stream until the new track had
audio), or played again from where it was cut off (the new track failed after
replacing it). What was interrupted is kept while the "play now" is the current play
and has not sent ``ready``; any other change of track makes a new play and forgets it.

An engine with ``play_now`` can keep the interrupted stream until the new track has
audio, and on if it fails: the shell asks ``replaces_live`` and sends the play as
such a replacement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from gateway.player.binding import BindingState, EngineEvent, Phase, PlayBinding, Trigger
from gateway.player.clock import ClockState, PositionClock
from gateway.player.queue import Queue
from gateway.player.track import Failure, Track

__all__ = ["Fallback", "Interrupted"]


@dataclass(frozen=True, slots=True)
class Interrupted:
    """What a "play now" interrupted, to give it back if the new track fails.

    Valid while the current play is still *nonce* (any other change of track makes a
    new play) and the new track has not sent ``ready``.
    """

    nonce: int
    track: Track
    position: float
    paused: bool
    start_at: float
    binding: BindingState
    clock: ClockState
    #: The new track went to the engine as a replacement made once it has audio: the
    #: engine plays the interrupted stream until then, and on if the new one fails.
    kept_live: bool = False


class _Core(Protocol):
    """What a failed track needs of the player's core (``PlayerCore``)."""

    queue: Queue
    binding: PlayBinding
    clock: PositionClock
    paused: bool
    start_at: float
    error: str
    failure: Failure | None

    @property
    def nonce(self) -> int: ...

    @property
    def current(self) -> Track | None: ...

    def position(self, now: float) -> float: ...

    def play_from(self, start_at: float, now: float, *, keep_pause: bool = False) -> None: ...

    def track_ended(self, now: float) -> None: ...

    def advance(self, now: float, *, requeue: bool = False, failed: bool = False) -> None: ...

    def replay(self, events: list[EngineEvent], now: float) -> None: ...


class Fallback:
    """A failed track's consequences, and the track the current "play now"
    interrupted, if any.

    Args:
        core: the player's core: its failure is recorded there, and its queue,
            binding and clock move on or are given back.
    """

    def __init__(self, core: _Core) -> None:
        self._core = core
        self._saved: Interrupted | None = None
        #: Failures so far (each ``Failure`` is numbered).
        self._failures = 0

    def capture(self, now: float) -> Interrupted | None:
        """What the current track is doing at *now*, before a "play now" replaces it
        (None: no track)."""
        core = self._core
        current = core.queue.current
        if current is None:
            return None
        return Interrupted(
            nonce=core.nonce, track=current, position=core.position(now),
            paused=core.paused, start_at=core.start_at, binding=core.binding.state(),
            clock=core.clock.state())

    def keep(self, saved: Interrupted) -> None:
        """The "play now" that interrupted *saved* is now the current play."""
        self._saved = dataclasses.replace(saved, nonce=self._core.nonce)

    def forget(self) -> None:
        """The current play is no longer a "play now" that can fail back."""
        self._saved = None

    def _of(self, nonce: int) -> Interrupted | None:
        """What *nonce*'s play interrupted, if it is such a "play now"."""
        saved = self._saved
        return saved if saved is not None and saved.nonce == nonce else None

    # -- a live replacement (engines with ``play_now``) -------------------------------

    def replaces_live(self, nonce: int) -> bool:
        """*nonce*'s play is a "play now" that interrupts a stream the engine plays
        (with a play id): an engine with ``play_now`` can keep that stream until the
        new track has audio, and on if it fails."""
        saved = self._saved
        return (saved is not None and saved.nonce == nonce == self._core.nonce
                and saved.binding.phase is Phase.STREAMING
                and saved.binding.play_id is not None)

    def replacing_live(self, nonce: int) -> None:
        """The shell sends *nonce*'s play as such a replacement (``replaces_live``)."""
        saved = self._saved
        if saved is not None and saved.nonce == nonce and saved.binding.play_id is not None:
            self._saved = dataclasses.replace(saved, kept_live=True)
            self._core.binding.keep_live(saved.binding.play_id)

    def sent_as_replacement(self, nonce: int) -> bool:
        """*nonce*'s play went to the engine as such a replacement."""
        saved = self._saved
        return saved is not None and saved.nonce == nonce and saved.kept_live

    def not_replacing_live(self, nonce: int) -> None:
        """The replacement could not be sent as such (the engine's stream had ended):
        a plain play follows."""
        saved = self._saved
        if saved is not None and saved.nonce == nonce:
            self._saved = dataclasses.replace(saved, kept_live=False)
            self._core.binding.live_play = None

    # -- a failed track ---------------------------------------------------------------

    def refused(self, nonce: int, message: str, now: float) -> None:
        """The engine refused the play for *nonce*, the current play (bad URL,
        limit reached...).

        A refused play has not touched the engine's session, so after a failed
        "play now" the interrupted stream is still playing there: it is taken
        back as it was. Otherwise the queue moves on (never looping the failed
        track)."""
        core = self._core
        current = core.current
        core.error = _could_not_play(current, message)
        interrupted = self._of(nonce)
        if current is not None and interrupted is not None:
            self._record(current, message, kept=interrupted.track)
            self._reinstate(interrupted, now)
            return
        if current is not None:
            self._record(current, message)
        core.advance(now, failed=True)

    def failed(self, message: str, now: float) -> None:
        """The current play ended with an error (the engine's *message*)."""
        core = self._core
        current = core.current
        core.error = _could_not_play(current, message)
        interrupted = self._of(core.nonce)
        if current is not None:
            self._record(current, message,
                         kept=interrupted.track if interrupted is not None else None)
        if interrupted is not None and interrupted.kept_live:
            # The engine never left the interrupted stream: take it back as it is.
            self._reinstate(interrupted, now)
        elif interrupted is not None:
            # The engine replaced the interrupted stream before this one
            # failed: play it again from where it was cut off.
            self._give_back(interrupted, now)
        else:
            core.advance(now, failed=True)

    def _record(self, track: Track, message: str, *, kept: Track | None = None) -> None:
        self._failures += 1
        self._core.failure = Failure(track, message, self._failures, kept)

    def _reinstate(self, saved: Interrupted, now: float) -> None:
        """The play of a "play now" was refused: the interrupted stream never
        stopped at the engine, so take it back as it was, under the current
        nonce (the shell counts that nonce as sent: no engine call follows)."""
        core = self._core
        if saved.binding.phase not in (Phase.PARKED, Phase.STARTING, Phase.JOINING,
                                       Phase.STREAMING):
            # The interrupted track's own play had not been answered: nothing of
            # it is known to be playing, so start it again.
            self._give_back(saved, now)
            return
        self._saved = None
        if not core.queue.take_back(saved.track):
            core.advance(now, failed=True)
            return
        pending, ended = core.binding.reinstate(saved.binding)
        core.paused = saved.paused
        core.clock.restore(saved.clock)
        core.start_at = saved.start_at
        if ended:
            core.binding.fire(Trigger.FINISH)
            core.track_ended(now)
            return
        core.replay(pending, now)

    def _give_back(self, saved: Interrupted, now: float) -> None:
        """A "play now" failed after the engine had replaced the interrupted
        stream: play the interrupted track again from where it was cut off."""
        core = self._core
        self._saved = None
        if not core.queue.take_back(saved.track):
            core.advance(now, failed=True)
            return
        core.paused = saved.paused
        core.play_from(saved.position, now, keep_pause=True)


def _could_not_play(track: Track | None, message: str) -> str:
    """A failed track, in the one wording every failure gets (a refused play, an
    error while it played): its name, then the engine's reason."""
    label = track.label if track else "the track"
    return f"could not play {label}: {message}" if message else f"could not play {label}"
