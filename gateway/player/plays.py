"""Sending a player's play to the engine, and never twice by accident.

A play is the one engine call that is not harmless to repeat: a broken connection
after it was sent (``EngineOutcomeUnknown``) leaves unknown whether the engine started
it, so the engine is asked first (``session_info`` with play ids, else ``status``) and
the play is sent again only when it did not arrive. A "play now" on an engine with
``play_now`` goes as a replacement of the live stream (the stream plays on until the
new track has audio); any other play is a plain one, carrying the volume, filters and
crossfade the engine supports. 5xx answers are retried by the player's task up to
``PLAY_ATTEMPTS`` times before the track counts as refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from applog import SessionLogger
from gateway.engine_client import (
    EngineError,
    EngineFault,
    EngineNotFound,
    EngineOutcomeUnknown,
    EngineUnavailable,
    Feature,
    Format,
)
from gateway.player.core import Desired, PlayerCore
from gateway.player.link import EngineApi, LinkView
from gateway.player.stats import PlayerStats
from protocol.filters import Filters

__all__ = ["LIVE_STATES", "PLAY_ATTEMPTS", "PlaySender", "Refused", "SendingPlayer", "Sent"]

#: Engine states of a session that still has (or is about to have) a stream.
LIVE_STATES = frozenset({"extracting", "streaming", "paused"})
#: Attempts of a play the engine fails with 5xx before the track is given up.
PLAY_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Sent:
    """The engine took the play: its play id (None: an engine without play ids),
    and whether it went as a replacement of the live stream."""

    play_id: int | None
    replacing: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """The engine refused the play (or failed it ``PLAY_ATTEMPTS`` times): its error,
    whose words are for the user."""

    error: EngineError


class SendingPlayer(Protocol):
    """What sending a play needs of its player."""

    key: str
    output: str
    log: SessionLogger
    stats: PlayerStats

    @property
    def core(self) -> PlayerCore: ...


class PlaySender:
    """The plays of one player.

    Args:
        player: the player (its key, its core, its output format).
        engine: the engine calls (a client, or a node binding).
        link: the engine connection's capabilities.
    """

    def __init__(self, player: SendingPlayer, *, engine: EngineApi, link: LinkView) -> None:
        self._player = player
        self._engine = engine
        self._link = link
        self._faults = 0
        #: The nonce whose play may have reached the engine without our hearing back.
        self._unknown_play: int | None = None
        #: The engine's play id of the latest play bound (None: unknown / Go engine).
        self._engine_play_id: int | None = None
        #: Engine calls made (for tests and metrics).
        self.calls = 0

    def supports(self, feature: Feature) -> bool:
        """The engine announced *feature*."""
        return feature in self._link.capabilities

    def new_engine(self) -> None:
        """A new connection: the engine may be a new process (play ids start again)."""
        self._engine_play_id = None

    def faults_cleared(self) -> None:
        """A call went through: 5xx answers to plays count from zero again."""
        self._faults = 0

    async def send(self, desired: Desired) -> Sent | Refused:
        """Send *desired*'s play (it has a track), at most twice: a second time only
        after the engine said the first did not arrive. The player's core was told
        (``sending``); what the answer means for it is the caller's.

        Raises:
            EngineUnavailable: the engine cannot be reached (try again later).
            EngineFault: the engine failed, fewer than ``PLAY_ATTEMPTS`` times in a
                row (try again later).
            EngineOutcomeUnknown: whether the engine took the play is still unknown
                (it is asked before the next send).
        """
        player = self._player
        play_id: int | None = None
        played = replacing = False
        # At most two sends: a second only after the engine said the first did
        # not arrive.
        for _ in range(2):
            if self._unknown_play == desired.nonce:
                played, play_id = await self._outcome(desired)
                if played:
                    replacing = player.core.fallback.sent_as_replacement(desired.nonce)
                    break
            try:
                # Until an answer arrives, whether the engine acted is unknown
                # (also if this task is cancelled or fails meanwhile).
                self._unknown_play = desired.nonce
                self.calls += 1
                result = await self._send(desired)
            except EngineOutcomeUnknown as exc:
                player.stats.play_checks += 1
                player.log.warning("the play's answer was lost (%s); asking the engine "
                                   "what it did", exc.detail)
                continue
            except EngineUnavailable:
                self._unknown_play = None
                raise
            except EngineFault as exc:
                self._unknown_play = None
                self._faults += 1
                if self._faults < PLAY_ATTEMPTS:
                    raise
                self._faults = 0
                return Refused(exc)
            except EngineError as exc:
                self._unknown_play = None
                self._faults = 0
                return Refused(exc)
            play_id, replacing = result
            played = True
            break
        if not played:
            raise EngineOutcomeUnknown("the connection to the audio engine broke")
        self._unknown_play = None
        self._engine_play_id = play_id
        return Sent(play_id, replacing)

    async def _outcome(self, desired: Desired) -> tuple[bool, int | None]:
        """Whether the play for *desired* reached the engine (and its play id),
        for a play whose answer was lost. Raises ``EngineUnavailable`` when the
        engine cannot be asked (the question is asked again later)."""
        assert desired.track is not None
        player = self._player
        url = desired.track.url
        if self.supports(Feature.PLAY_ID):
            self.calls += 1
            info = await self._engine.session_info(player.key)
            if (info is not None and info.url == url and info.status in LIVE_STATES
                    and info.play_id is not None and info.play_id != self._engine_play_id):
                player.log.info("the engine had started the play (play %d)", info.play_id)
                return True, info.play_id
            return False, None
        self.calls += 1
        status = await self._engine.status(player.key)
        if status is not None and status.url == url and status.status in LIVE_STATES:
            # A Go engine names no plays: a live session of this URL is taken as
            # this play (a replay of the same URL cannot be told apart).
            player.log.info("the engine had started the play")
            return True, None
        return False, None

    async def _send(self, desired: Desired) -> tuple[int | None, bool]:
        """Send *desired*'s play: its play id, and whether it went as a replacement
        of the live stream ("play now" on an engine with ``play_now``: the stream plays
        on until the new track has audio, and on if it fails)."""
        assert desired.track is not None
        core = self._player.core
        if self.supports(Feature.PLAY_NOW) and core.fallback.replaces_live(desired.nonce):
            core.fallback.replacing_live(desired.nonce)
            try:
                result = await self._engine.set_next(
                    self._player.key, desired.track.url, start_at=desired.start_at,
                    duration=desired.track.duration or 0.0, now=True)
            except EngineNotFound:
                # The stream is gone: a plain play.
                core.fallback.not_replacing_live(desired.nonce)
            except EngineError as exc:
                if exc.status != 409:  # 409: the stream ended meanwhile
                    raise
                core.fallback.not_replacing_live(desired.nonce)
            else:
                return result.play_id, True
        return await self._send_plain(desired), False

    async def _send_plain(self, desired: Desired) -> int | None:
        assert desired.track is not None
        filters = desired.filters
        result = await self._engine.play(
            self._player.key, desired.track.url, format=self._output_format(),
            start_at=desired.start_at, duration=desired.track.duration or 0.0,
            volume=desired.volume if self.supports(Feature.VOLUME) else None,
            filters=filters if (filters != Filters() and self.supports(Feature.FILTERS))
            else None,
            crossfade=desired.crossfade if (
                desired.crossfade and self.supports(Feature.CROSSFADE)) else None,
        )
        return result.play_id

    def _output_format(self) -> Format:
        output = self._player.output
        return "web" if output == "web" else "pcm" if output == "pcm" else "opus"
