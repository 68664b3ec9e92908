"""A player's questions to the engine about its stream, and what the answers mean.
Runs on the event loop.

When the engine's state is unknown (the link was lost and is back, a call failed
midway, the stream's node is gone), the player asks whether its stream still exists
(``stream``): a live session is left alone, and its ``ready``, if it was lost, is taken
now; one that ended advances the queue; one the engine lost is played again from the
position reached when the link was lost (``lost_at``), and a paused one parks there.
A gapless join whose ``ready`` is overdue is asked about too (``joined``): taken as
started if the engine streams the joined play, otherwise the track is played plainly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from applog import SessionLogger
from gateway.engine_client import Feature
from gateway.player.binding import Phase
from gateway.player.core import PlayerCore
from gateway.player.link import EngineApi, LinkView
from gateway.player.plays import LIVE_STATES
from gateway.player.stats import PlayerStats

__all__ = ["StreamQuestions"]


class _Player(Protocol):
    """What the questions need of their player."""

    key: str
    log: SessionLogger
    stats: PlayerStats

    @property
    def core(self) -> PlayerCore: ...

    def changed(self) -> None: ...


class StreamQuestions:
    """The questions one player asks about its stream.

    Each raises what the engine call raises (``EngineUnavailable``, ``EngineFault``,
    ``EngineError``), for the player's task to ask again later.

    Args:
        player: the player (its core, its notifications).
        engine: the engine calls (a client, or a node binding).
        link: the engine connection's capabilities.
        clock: the shell's monotonic clock.
        took_as_applied: takes the core's state as what the engine has (the
            reconciler's), after a paused stream was lost.
    """

    def __init__(self, player: _Player, *, engine: EngineApi, link: LinkView,
                 clock: Callable[[], float], took_as_applied: Callable[[], None]) -> None:
        self._player = player
        self._engine = engine
        self._link = link
        self._clock = clock
        self._took_as_applied = took_as_applied
        #: Clock time the engine link was lost under this player's stream.
        self.lost_at: float | None = None
        #: Engine calls made (for tests and metrics).
        self.calls = 0

    def supports(self, feature: Feature) -> bool:
        """The engine announced *feature*."""
        return feature in self._link.capabilities

    async def stream(self, applied_nonce: int) -> None:
        """Ask the engine whether this player's stream still exists, and recover
        when it does not: played again from the position reached when the link
        was lost (paused players park there), or advanced when it ended. Nothing
        is asked unless the engine has the play *applied_nonce*, the current one."""
        player = self._player
        core = player.core
        if not core.at_engine or core.nonce != applied_nonce:
            return  # nothing at the engine to check, or a new play replaces it anyway
        nonce = core.nonce
        self.calls += 1
        status = await self._engine.status(player.key)
        if core.nonce != nonce or player.core is not core:
            return  # changed while we asked: the new desired state decides
        now = self._clock()
        current = core.current
        assert current is not None
        lost_at, self.lost_at = self.lost_at, None
        if status is not None and status.status in ("streaming", "paused"):
            await self._ready_if_missed()
            return
        if status is not None and status.status in LIVE_STATES:
            return
        if status is not None and status.status in ("stopped", "error"):
            player.log.info("the stream ended while the engine was out of reach")
            core.stream_ended(now)
            player.changed()
            return
        player.stats.lost_streams += 1
        if core.stream_lost(min(lost_at if lost_at is not None else now, now), now):
            player.log.info("the engine lost the stream; playing %s again from %.1f s",
                            current.label, core.start_at)
        else:
            self._took_as_applied()
            player.log.info("the engine lost the paused stream; it stays paused at %.1f s",
                            core.start_at)
        player.changed()

    async def joined(self) -> None:
        """A join's ``ready`` did not come: if the engine streams the joined play,
        take it as started; otherwise the join did not happen (the next track came
        too late, or another joined), so play the track plainly."""
        player = self._player
        core = player.core
        if core.phase is not Phase.JOINING:
            return
        nonce, play_id = core.nonce, core.binding.play_id
        self.calls += 1
        info = await self._engine.session_info(player.key)
        if core.nonce != nonce or core.phase is not Phase.JOINING:
            return
        if (info is not None and info.status in ("streaming", "paused")
                and info.play_id == play_id):
            if core.ready_missed(self._clock(), info.position):
                player.log.info("gapless: the joined play streams; its ready was lost")
                player.changed()
            return
        if core.join_missed(self._clock()):
            player.stats.missed_joins += 1
            player.log.info("gapless: the next track did not join the stream; playing it")
            player.changed()

    async def _ready_if_missed(self) -> None:
        """The engine streams our bound play: if its ``ready`` was lost (written
        while the socket was down), take it now, at the engine's position when it
        can tell (our engine), else at the play's start."""
        player = self._player
        core = player.core
        if core.phase not in (Phase.STARTING, Phase.JOINING) or core.current is None:
            return
        nonce = core.nonce
        position: float | None = None
        if self.supports(Feature.PLAY_ID):
            self.calls += 1
            info = await self._engine.session_info(player.key)
            if info is None or core.nonce != nonce or (
                    info.play_id is not None and info.play_id != core.binding.play_id):
                return
            position = info.position
        if core.ready_missed(self._clock(), position):
            player.log.info("the engine streams the play but its ready was lost; taking it "
                            "as started")
            player.changed()
