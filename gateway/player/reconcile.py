"""Making the engine do what the core wants: one engine call at a time.

The ``Reconciler`` compares the core's desired state with what the engine is known to
have *applied* and makes the one call that closes the first gap: a play (or a stop),
a pause or resume, the volume, the filters, the crossfade, the next track. A call
counts as applied only when the engine said so; its refusals are handled here (a
refused play goes on to the next track with the engine's words), while an engine
that cannot be reached or fails (``EngineUnavailable``, ``EngineFault``) raises, for
the player's task to retry.

It also asks the engine about the stream when the link came back (``verify``) or a
join's ``ready`` is overdue (``check_join``), through its ``StreamQuestions``
(``questions``): a live session is left alone, one that ended advances the queue, one
the engine lost is played again from where it was (a paused one parks there).

Sending a play is its ``PlaySender``'s (``plays``): a play whose answer was lost is
never sent blindly again (the engine is asked first), and a "play now" may go as a
replacement of the live stream. The reconciler takes what the engine then has as
applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.engine_client import (
    EngineError,
    EngineFault,
    EngineInvalidRequest,
    EngineNotFound,
    EngineUnavailable,
    Feature,
)
from gateway.player.binding import Phase
from gateway.player.core import Desired, NextPlan
from gateway.player.link import EngineApi, LinkView
from gateway.player.plays import PlaySender, Refused, SendingPlayer
from gateway.player.questions import StreamQuestions
from protocol.filters import Filters

__all__ = ["Reconciler"]


@dataclass(frozen=True, slots=True)
class _Applied:
    """What the engine is known to do for this key."""

    nonce: int
    paused: bool
    volume: float
    filters: Filters
    crossfade: float

    @classmethod
    def of(cls, desired: Desired, *, paused: bool | None = None) -> _Applied:
        return cls(desired.nonce, desired.paused if paused is None else paused,
                   desired.volume, desired.filters, desired.crossfade)


class _Player(SendingPlayer, Protocol):
    """What the reconciler needs of its player: what sending its plays needs, and
    its notifications."""

    def changed(self) -> None: ...

    def took_join(self) -> None: ...


class Reconciler:
    """The engine side of one player.

    Args:
        player: the player (its core, its notifications).
        engine: the engine calls (a client, or a node binding).
        link: the engine connection's state and capabilities.
        clock: the shell's monotonic clock.
    """

    def __init__(self, player: _Player, *, engine: EngineApi, link: LinkView,
                 clock: Callable[[], float]) -> None:
        self._player = player
        self._engine = engine
        self._link = link
        self._clock = clock
        # A fresh or restored player has nothing at the engine: taken as applied.
        self.applied = _Applied.of(player.core.desired())
        #: The next track the engine was told (None: none, or not asked).
        self.next_applied: NextPlan | None = None
        #: The engine's stream must be asked about (the link was lost, a call failed).
        self.verify = False
        #: A join's ``ready`` is overdue: ask the engine whether it happened.
        self.check_join = False
        self._engine_generation = link.generation
        #: The plays (sent once, asked about when their answer was lost).
        self._plays = PlaySender(player, engine=engine, link=link)
        #: The questions about the stream (``verify``, ``check_join``).
        self._questions = StreamQuestions(player, engine=engine, link=link, clock=clock,
                                          took_as_applied=self.took_as_applied)
        self._calls = 0

    @property
    def calls(self) -> int:
        """Engine calls made (for tests and metrics)."""
        return self._calls + self._plays.calls + self._questions.calls

    @property
    def lost_at(self) -> float | None:
        """Clock time the engine link was lost under this player's stream (the
        position a lost stream is played again from)."""
        return self._questions.lost_at

    @lost_at.setter
    def lost_at(self, at: float | None) -> None:
        self._questions.lost_at = at

    # -- what is left to do ---------------------------------------------------------------

    def supports(self, feature: Feature) -> bool:
        """The engine announced *feature*."""
        return feature in self._link.capabilities

    def differs(self) -> bool:
        """The engine is not known to match the desired state."""
        desired = self._player.core.desired()
        applied = self.applied
        return ((desired.nonce, desired.paused, desired.volume, desired.crossfade)
                != (applied.nonce, applied.paused, applied.volume, applied.crossfade)
                or desired.filters != applied.filters
                or self.next_wanted() != self.next_applied
                or self.check_join)

    def next_wanted(self) -> NextPlan | None:
        """The next track the engine should hold now (engines with ``next_track``)."""
        if not self.supports(Feature.NEXT_TRACK):
            return None
        return self._player.core.next_plan()

    def has_session(self) -> bool:
        """The engine has (or is about to have) a session for this key."""
        return self._player.core.at_engine

    def took_as_applied(self) -> None:
        """The core's state is what the engine has (a restored queue; a paused
        stream the engine lost, which has nothing at the engine)."""
        desired = self._player.core.desired()
        if desired.nonce == self.applied.nonce and self._player.core.phase is Phase.PARKED:
            self.applied = _Applied.of(desired)

    def restored(self) -> None:
        """A queue was restored from the store: nothing plays at the engine."""
        self.applied = _Applied.of(self._player.core.desired())

    def joined(self) -> None:
        """The core moved to a play the engine joined itself: no play is sent, and
        the engine's next track was used up."""
        self.applied = dataclasses.replace(self.applied, nonce=self._player.core.nonce,
                                           paused=False)
        self.next_applied = None

    def faults_cleared(self) -> None:
        """A call went through: 5xx answers to plays count from zero again."""
        self._plays.faults_cleared()

    # -- one call ---------------------------------------------------------------------------

    async def step(self) -> None:
        """One engine call towards the desired state (or a question about the stream).

        Raises:
            EngineUnavailable: the engine cannot be reached (try again later).
            EngineFault: the engine failed (try again later).
            EngineError: an answer that makes no sense here.
        """
        if self._link.generation != self._engine_generation:
            # A new connection: the engine may be a new process (play ids start again).
            self._engine_generation = self._link.generation
            self._plays.new_engine()
        if self.verify:
            await self._questions.stream(self.applied.nonce)
            self.verify = False
        elif self.check_join:
            await self._questions.joined()
            self.check_join = False
        elif self.differs():
            await self._apply(self._player.core.desired())

    async def _apply(self, desired: Desired) -> None:
        applied = self.applied
        if desired.nonce != applied.nonce:
            await self._apply_track(desired)
        elif desired.paused != applied.paused:
            await self._apply_pause(desired)
        elif desired.volume != applied.volume:
            await self._apply_volume(desired)
        elif desired.filters != applied.filters:
            await self._apply_filters(desired)
        elif desired.crossfade != applied.crossfade:
            await self._apply_crossfade(desired)
        else:
            await self._apply_next(self.next_wanted())

    # -- the calls that change something -----------------------------------------------------

    async def _apply_track(self, desired: Desired) -> None:
        player = self._player
        player.core.sending(desired.nonce)
        if desired.track is None:
            self._calls += 1
            try:
                await self._engine.stop(player.key)
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                player.log.warning("stop refused: %s", exc)
            self.applied = _Applied.of(desired, paused=False)
            self.next_applied = None
            player.changed()
            return
        sent = await self._plays.send(desired)
        if isinstance(sent, Refused):
            self._play_refused(desired, sent.error)
            return
        previous = self.applied
        player.core.bind_play(desired.nonce, sent.play_id, self._clock())
        if sent.replacing:
            # The session goes on with its pause, volume, filters and crossfade: what
            # differs from the desired state is changed live next.
            self.applied = dataclasses.replace(previous, nonce=desired.nonce)
        else:
            # The play is applied (with the filters and crossfade it carried); a pause
            # it needs is a separate step, so an engine failure there is retried
            # rather than lost.
            self.applied = _Applied.of(desired, paused=False)
        # A new session holds no next track; a replacement used up or gave back the
        # one it displaced (set again when wanted).
        self.next_applied = None
        player.changed()

    def _play_refused(self, desired: Desired, exc: EngineError) -> None:
        player = self._player
        self.applied = _Applied.of(desired)
        player.log.warning("play refused: %s", exc)
        player.core.play_failed(desired.nonce, str(exc), self._clock())
        player.changed()

    async def _apply_pause(self, desired: Desired) -> None:
        player = self._player
        engine = self._engine
        self._calls += 1
        try:
            await (engine.pause if desired.paused else engine.resume)(player.key)
        except EngineNotFound:
            # The engine has no session for us any more: find out what happened.
            if desired.paused:
                self.verify = True
                return
            # A resume of a session that is gone: play it again from its position.
            player.stats.lost_streams += 1
            player.core.stream_lost(self._clock(), self._clock())
            player.changed()
            return
        except (EngineUnavailable, EngineFault):
            raise
        except EngineError as exc:
            player.log.warning("%s refused: %s", "pause" if desired.paused else "resume", exc)
        self.applied = dataclasses.replace(self.applied, paused=desired.paused)

    async def _apply_volume(self, desired: Desired) -> None:
        player = self._player
        if self.supports(Feature.VOLUME) and self.has_session():
            self._calls += 1
            try:
                await self._engine.set_volume(player.key, desired.volume)
            except EngineNotFound:
                pass  # no live session: the next play carries the volume
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                player.log.warning("volume refused: %s", exc)
        self.applied = dataclasses.replace(self.applied, volume=desired.volume)

    async def _apply_filters(self, desired: Desired) -> None:
        player = self._player
        if self.supports(Feature.FILTERS) and self.has_session():
            self._calls += 1
            try:
                await self._engine.set_filters(player.key, desired.filters)
            except EngineNotFound:
                pass  # no live session: the next play carries the filters
            except (EngineUnavailable, EngineFault):
                raise
            except EngineInvalidRequest as exc:
                # The engine's words say which value is wrong: keep what it plays.
                player.log.warning("filters refused: %s", exc)
                player.core.filters_refused(self.applied.filters, str(exc))
                player.changed()
                return
            except EngineError as exc:
                player.log.warning("filters refused: %s", exc)
        self.applied = dataclasses.replace(self.applied, filters=desired.filters)

    async def _apply_crossfade(self, desired: Desired) -> None:
        player = self._player
        if self.supports(Feature.CROSSFADE) and self.has_session():
            self._calls += 1
            try:
                await self._engine.set_crossfade(player.key, desired.crossfade)
            except EngineNotFound:
                pass  # no live session: the next play carries it
            except (EngineUnavailable, EngineFault):
                raise
            except EngineError as exc:
                player.log.warning("crossfade refused: %s", exc)
        self.applied = dataclasses.replace(self.applied, crossfade=desired.crossfade)

    async def _apply_next(self, wanted: NextPlan | None) -> None:
        """Tell the engine the next track (or that there is none any more)."""
        player = self._player
        core = player.core
        held = self.next_applied
        if wanted is None:
            self.next_applied = None
            if held is not None and held.nonce == core.nonce and core.next_play_id is not None:
                self._calls += 1
                try:
                    await self._engine.cancel_next(player.key)
                except EngineNotFound:
                    pass  # the session is gone, and its next track with it
                except (EngineUnavailable, EngineFault):
                    self.next_applied = held
                    raise
                except EngineError as exc:
                    player.log.warning("cancelling the next track failed: %s", exc)
                core.clear_next()
            return
        track = wanted.track
        self._calls += 1
        try:
            result = await self._engine.set_next(player.key, track.url,
                                                 duration=track.duration or 0.0)
        except (EngineUnavailable, EngineFault):
            raise
        except EngineError as exc:
            # Refused (the session ended, or the engine cannot use the URL): the
            # track is played plainly when the current one ends.
            player.log.info("the engine did not take the next track (%s); it will be a new "
                            "play", exc)
            self.next_applied = wanted
            return
        self.next_applied = wanted
        if core.bind_next(wanted, result.play_id, self._clock()):
            player.took_join()
            player.changed()
