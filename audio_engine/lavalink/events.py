"""What a Lavalink client hears about its players: their ``state``, ``playerUpdate``
messages and track events, and the engine's notices turned into them.

``PlayerEvents`` is the front's voice listener (``VoiceClaims.listener``): a play's
event lines come back from its worker, and as lavaplayer does, its end is
``TrackEndEvent`` ``finished``, a failure ``TrackExceptionEvent`` then
``TrackEndEvent`` (``loadFailed`` before its first audio, ``finished`` after), a stall
``TrackStuckEvent``; a voice connection closed for good is ``WebSocketClosedEvent``.
Positions come from the workers' reports (``VoiceClaims.player_state``). The node
(``node``) sends the events of what its clients ask (a track started, replaced,
stopped, destroyed) through the same methods.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from audio_engine.cluster.claims import VoiceClaims
from audio_engine.lavalink.player import ClientSession, Player
from protocol.lavalink import PlayerState as PlayerStateJson
from protocol.lavalink import (
    PlayerUpdateMessage,
    Severity,
    Track,
    TrackEndEvent,
    TrackEndReason,
    TrackException,
    TrackExceptionEvent,
    TrackStuckEvent,
    WebSocketClosedEvent,
)

__all__ = ["PlayerEvents"]


class PlayerEvents:
    """See the module docstring.

    Args:
        voices: the front's Lavalink claims (positions, voice connections).
        players: every player by guild id, with its session (the node's; read only).
        stuck_threshold: seconds without audio after which a track is stuck (the
            engine's setting, reported in ``TrackStuckEvent``).
    """

    def __init__(self, voices: VoiceClaims,
                 players: Mapping[str, tuple[ClientSession, Player]], *,
                 stuck_threshold: float) -> None:
        self._voices = voices
        self._players = players
        self._stuck_threshold = stuck_threshold

    # -- positions ------------------------------------------------------------------------------

    def state(self, player: Player) -> PlayerStateJson:
        """The player's ``state``: Unix time in ms, track position, voice connection."""
        now = self._voices.player_state(player.session_id, player.filters.tempo)
        position = 0
        if player.track is not None and now.position is not None:
            position = max(0, round(now.position * 1000))
            if player.decoded is not None and not player.decoded.is_stream:
                position = min(position, player.decoded.length)
        return PlayerStateJson(time=int(time.time() * 1000), position=position,
                               connected=now.connected, ping=now.ping_ms)

    def send_update(self, session: ClientSession, player: Player) -> None:
        """*player*'s ``playerUpdate``."""
        session.send(PlayerUpdateMessage(state=self.state(player),
                                         guild_id=player.guild_id).dump())

    def send_player_updates(self, session: ClientSession, *, every: bool = False) -> None:
        """Each player's ``playerUpdate`` (of those with a track, unless *every*)."""
        for player in list(session.players.values()):
            if every or player.track is not None:
                self.send_update(session, player)

    # -- what the engine says (VoiceClaims.listener) --------------------------------------------

    def voice_event(self, session_id: str, fields: dict[str, Any]) -> None:
        """An event line of a player's engine session: see the module docstring."""
        owner = self._players.get(session_id)
        if owner is None:
            return
        session, player = owner
        if player.play_id is None or fields.get("play") != player.play_id:
            return  # a replaced or stopped track's late word: already reported
        kind = fields.get("type")
        reason = str(fields.get("reason") or "")
        if kind == "ready":
            player.started = True
            self.send_update(session, player)
        elif kind == "finished":
            end = {"end": TrackEndReason.FINISHED, "stopped": TrackEndReason.STOPPED,
                   "replaced": TrackEndReason.REPLACED}.get(reason, TrackEndReason.CLEANUP)
            self.track_end(session, player, end)
            player.clear()
        elif kind == "error":
            message = str(fields.get("message") or "the track failed")
            if reason == "stuck":
                session.send(TrackStuckEvent(
                    guild_id=player.guild_id, track=self._event_track(player),
                    threshold_ms=round(self._stuck_threshold * 1000)).dump())
                self.track_end(session, player, TrackEndReason.STOPPED)
                player.clear()
            else:
                severity = Severity.COMMON if reason == "resolve" else Severity.SUSPICIOUS
                self.failed(session, player, message, severity)

    def voice_closed(self, session_id: str, code: int, reason: str, by_remote: bool) -> None:
        """The guild's voice connection closed for good: ``WebSocketClosedEvent``."""
        owner = self._players.get(session_id)
        if owner is None:
            return
        session, player = owner
        session.send(WebSocketClosedEvent(guild_id=player.guild_id, code=code, reason=reason,
                                          by_remote=by_remote).dump())
        self.send_update(session, player)

    # -- track events ---------------------------------------------------------------------------

    def _event_track(self, player: Player) -> Track:
        track = player.track_json(self.state(player).position)
        assert track is not None
        return track

    def track_end(self, session: ClientSession, player: Player,
                  reason: TrackEndReason) -> None:
        """``TrackEndEvent`` with *reason* for *player*'s current track (if any)."""
        if player.track is None:
            return
        session.send(TrackEndEvent(guild_id=player.guild_id, track=self._event_track(player),
                                   reason=reason).dump())

    def failed(self, session: ClientSession, player: Player, message: str,
               severity: Severity) -> None:
        """The current track failed: ``TrackExceptionEvent``, then ``TrackEndEvent``
        (``loadFailed`` before its first audio, else ``finished``)."""
        if player.track is None:
            return
        exception = TrackException(message=message, severity=severity,
                                   cause=f"audiogate.TrackFailed: {message}")
        session.send(TrackExceptionEvent(guild_id=player.guild_id,
                                         track=self._event_track(player),
                                         exception=exception).dump())
        self.track_end(session, player, TrackEndReason.FINISHED if player.started
                       else TrackEndReason.LOAD_FAILED)
        player.clear()
