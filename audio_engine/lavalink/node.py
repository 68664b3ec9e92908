"""The Lavalink node: client sessions, their players, and what the engine says about them.

``LavalinkNode`` is the state behind the REST routes and the WebSocket
(``audio_engine.lavalink.routes``). It maps Lavalink onto the engine's front:

- a player is a claimed guild id (``VoiceClaims.claim``, the front's ``voices``); its
  voice object connects the guild's voice connection on the worker that plays it
  (``VoiceClaims.connect``); each track is a ``voice`` play on that id
  (``Front.play``), with the player's volume (percent / 100), filters, start position
  and end time (``PlayRequest.end_at``); an update is checked whole before any of it
  is applied (``updates``);
- events: as lavaplayer does, ``TrackStartEvent`` goes out when a track is played
  (and ``TrackEndEvent`` ``replaced`` for the one it replaces, ``stopped`` for a
  ``null`` track, ``cleanup`` for a destroyed player); what happens later comes
  from the engine, and positions for ``playerUpdate`` from the workers' reports: both
  are the node's ``events`` (``PlayerEvents``, the front's voice listener).

Everything runs on the front's event loop: no locks but one per player, which keeps a
player's updates in order while they wait on the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

from audio_engine.audio.formats import OutputFormat
from audio_engine.cluster.front import (
    Front,
    PlayRefused,
    Reply,
    SessionConflict,
    SessionNotFound,
    WorkerUnavailable,
)
from audio_engine.cluster.peer import CallFailed
from audio_engine.cluster.reports import VoiceServer
from audio_engine.lavalink.errors import LavalinkError
from audio_engine.lavalink.events import PlayerEvents
from audio_engine.lavalink.loader import TrackLoader, play_url
from audio_engine.lavalink.player import ClientSession, Player, new_session_id
from audio_engine.lavalink.updates import check_update
from audio_engine.sessions.session import PlayRequest
from lifecycle import Process, TaskOwner, declare
from protocol.lavalink import (
    Cpu,
    DecodedTrack,
    FrameStats,
    Memory,
    PlayerUpdate,
    ReadyMessage,
    Session,
    SessionUpdate,
    Severity,
    Stats,
    StatsMessage,
    Track,
    TrackEndReason,
    TrackStartEvent,
    VoiceState,
    decode_track,
)

__all__ = ["STATS_INTERVAL", "LavalinkNode"]

log = logging.getLogger(__name__)

_OWNER = "LavalinkNode"
SESSION_END = declare(
    "lavalink-session-{key}-end", owner=_OWNER, process=Process.ENGINE,
    what="ending a Lavalink client session that is gone (closed, or not resumed in "
         "time): its players destroyed, their engine sessions stopped",
    ends="every player destroyed; `LavalinkNode.close` waits for it")

#: Seconds between ``stats`` messages (Lavalink's fixed minute).
STATS_INTERVAL: Final = 60.0
#: Largest guild id (a snowflake is a 64-bit number; Lavalink parses it as a Long).
_MAX_SNOWFLAKE: Final = 2**63 - 1

T = TypeVar("T")


def _guild(guild_id: str) -> str:
    """*guild_id* checked as Lavalink's path parameter (a positive 64-bit number)."""
    if not guild_id.isascii() or not guild_id.isdigit() or not 0 < int(guild_id) <= _MAX_SNOWFLAKE:
        raise LavalinkError(400, f"guildId {guild_id!r} is not a Discord id")
    return str(int(guild_id))


class LavalinkNode:
    """See the module docstring.

    Args:
        front: the engine's front (it calls back ``voice_event``/``voice_closed``).
        player_update_interval: seconds between a playing player's ``playerUpdate``.
    """

    def __init__(self, front: Front, *, player_update_interval: float = 5.0) -> None:
        self.front = front
        self.loader = TrackLoader(front.resolver)
        self.player_update_interval = player_update_interval
        self.sessions: dict[str, ClientSession] = {}
        #: Every player by guild id, with its session (a guild has one player).
        self._players: dict[str, tuple[ClientSession, Player]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._tasks = TaskOwner(_OWNER, logger=log)
        self._closed = False
        #: What the clients hear about their players; it hears the engine's notices.
        self.events = PlayerEvents(front.voices, self._players,
                                   stuck_threshold=front.settings.stuck_threshold)
        front.voices.listener = self.events

    # -- client sessions -----------------------------------------------------------------------

    def connect(self, user_id: int, client_name: str, resume_id: str | None
                ) -> tuple[ClientSession, bool]:
        """The session of a new WebSocket: the resumable one *resume_id* names (and
        True), else a new one."""
        if resume_id:
            session = self.sessions.get(resume_id)
            if session is not None and session.resuming and not session.closed \
                    and session.user_id == user_id:
                handle = self._expiry.pop(session.id, None)
                if handle is not None:
                    handle.cancel()
                if session.connected:
                    # The client reconnected before its old WebSocket's close reached
                    # us (a dropped connection is noticed late): the new one takes
                    # the session, the old one is closed.
                    session.outbox = None
                    session.taken_over.set()
                log.info("Lavalink session %s resumed by %s", session.id, client_name)
                return session, True
        session_id = new_session_id()
        while session_id in self.sessions:
            session_id = new_session_id()
        session = ClientSession(session_id, user_id, client_name)
        self.sessions[session_id] = session
        log.info("Lavalink session %s opened by %s (user %d)", session_id,
                 client_name or "a client without Client-Name", user_id)
        return session, False

    def attach(self, session: ClientSession, outbox: asyncio.Queue[str], resumed: bool
               ) -> None:
        """The WebSocket with *outbox* serves *session* from now on: ``ready`` first,
        then (resumed) the events kept meanwhile and every player's position."""
        session.outbox = outbox
        session.taken_over = asyncio.Event()
        session.send(ReadyMessage(resumed=resumed, session_id=session.id).dump())
        if resumed:
            held, session.held = list(session.held), type(session.held)(
                maxlen=session.held.maxlen)
            for text in held:
                try:
                    outbox.put_nowait(text)
                except asyncio.QueueFull:
                    session.dropped += 1
            self.events.send_player_updates(session, every=True)

    def detach(self, session: ClientSession, outbox: asyncio.Queue[str]) -> None:
        """The WebSocket with *outbox* closed: the session waits for its client when it
        may be resumed, else it ends (its players are destroyed)."""
        if session.outbox is not outbox:
            return
        session.outbox = None
        if session.resuming and not self._closed:
            log.info("Lavalink session %s may be resumed within %d s", session.id,
                     session.timeout)
            self._expiry[session.id] = asyncio.get_running_loop().call_later(
                session.timeout, self._expire, session)
            return
        self._tasks.spawn(SESSION_END, self._end(session), key=session.id)

    def _expire(self, session: ClientSession) -> None:
        self._expiry.pop(session.id, None)
        if not session.connected:
            log.info("Lavalink session %s was not resumed in time", session.id)
            self._tasks.spawn(SESSION_END, self._end(session), key=session.id)

    async def _end(self, session: ClientSession) -> None:
        """End *session*: every player is destroyed (its track ends with ``cleanup``,
        sent to nobody) and its engine session stopped."""
        session.closed = True
        self.sessions.pop(session.id, None)
        for guild_id in list(session.players):
            await self._destroy(session, guild_id, notify=False)

    def session(self, session_id: str) -> ClientSession:
        """The connected session *session_id*.

        Raises:
            LavalinkError: 404 ``Session not found`` (Lavalink's answer, also while a
                resumable session waits for its client).
        """
        session = self.sessions.get(session_id)
        if session is None or not session.connected:
            raise LavalinkError(404, "Session not found")
        return session

    def update_session(self, session: ClientSession, update: SessionUpdate) -> Session:
        """``PATCH /v4/sessions/{id}``."""
        if update.resuming is not None:
            session.resuming = update.resuming
        if update.timeout is not None:
            session.timeout = update.timeout
        return Session(resuming=session.resuming, timeout=session.timeout)

    # -- players: the REST API ------------------------------------------------------------------

    def player(self, session: ClientSession, guild_id: str) -> Player:
        """The player of *guild_id*. Raises LavalinkError 404 ``Player not found``."""
        player = session.players.get(_guild(guild_id))
        if player is None:
            raise LavalinkError(404, "Player not found")
        return player

    def player_json(self, player: Player) -> dict[str, Any]:
        return player.to_json(self.events.state(player)).dump()

    async def update_player(self, session: ClientSession, guild_id: str, update: PlayerUpdate,
                            *, no_replace: bool, caller: str = "") -> tuple[dict[str, Any],
                                                                              list[Reply]]:
        """``PATCH /v4/sessions/{id}/players/{guildId}`` (Lavalink's order: voice,
        pause, user data, volume, seek, end time, filters, then the track). Returns
        the player and the replies the engine waits for (``Front.replied`` once the
        answer is written).

        Raises:
            LavalinkError: Lavalink's 400s for what the update cannot mean, 409 when
                the guild is another client's player or a Go session, 500 when the
                voice server cannot be reached or a track not loaded, 503 while its
                engine worker restarts.
        """
        guild_id = _guild(guild_id)
        change = check_update(update)
        new_track, user_data, filters = change.new_track, change.user_data, change.filters
        sent, voice = update.sent, update.voice
        player = self._player_for(session, guild_id)
        replies: list[Reply] = []
        async with player.lock:
            sid = player.session_id
            if voice is not None:
                await self._connect(session, player, voice)
            if update.paused is not None and not new_track:
                await self._engine(self.front.calls.pause(sid) if update.paused
                                   else self.front.calls.resume(sid))
                player.paused = update.paused
            if user_data is not None and not new_track and player.track is not None:
                player.track = player.track.model_copy(update={"user_data": user_data})
            if update.volume is not None:
                player.volume = update.volume
                if player.track is not None:
                    await self._engine(self.front.calls.set_volume(sid, update.volume / 100))
            if update.position is not None and not new_track and player.track is not None:
                await self._engine(self.front.calls.seek(sid, update.position / 1000))
                self.events.send_update(session, player)
            if "end_time" in sent and not new_track and player.track is not None:
                player.end_time = update.end_time
                await self._engine(self.front.calls.set_end(
                    sid, update.end_time / 1000 if update.end_time else None))
            if filters is not None:
                player.filters = filters
                player.loudness_default = "loudness" not in (update.filters or {})
                if player.track is not None:
                    await self._engine(self.front.calls.set_filters(
                        sid, filters, player.loudness_default))
                self.events.send_update(session, player)
            if new_track and not (no_replace and player.track is not None):
                if change.encoded_sent and change.encoded is None:
                    replies += await self._stop(session, player, TrackEndReason.STOPPED)
                else:
                    decoded_new = change.decoded
                    if change.identifier_sent:
                        assert change.identifier is not None
                        track = await self.loader.load_one(change.identifier,
                                                           caller=caller or sid)
                        decoded_new = decode_track(track.encoded)
                    else:
                        assert change.encoded is not None and decoded_new is not None
                        track = Track.from_decoded(decoded_new, encoded=change.encoded)
                    if user_data is not None:
                        track = track.model_copy(update={"user_data": user_data})
                    assert decoded_new is not None
                    position = update.position if update.position is not None \
                        else decoded_new.position
                    replies += await self._play(
                        session, player, track, decoded_new, position=position,
                        end_time=update.end_time,
                        paused=bool(update.paused) if update.paused is not None else False)
            return self.player_json(player), replies

    def _player_for(self, session: ClientSession, guild_id: str) -> Player:
        """The player of *guild_id*, made (and its guild id claimed) if new.

        Raises:
            LavalinkError: 409 when the guild is another session's player or a Go
                session's.
        """
        player = session.players.get(guild_id)
        if player is not None:
            return player
        owner = self._players.get(guild_id)
        if owner is not None:
            raise LavalinkError(409, f"guild {guild_id} has a player in another Lavalink "
                                "session on this node")
        try:
            self.front.voices.claim(guild_id)
        except SessionConflict as exc:
            raise LavalinkError(409, str(exc)) from exc
        player = Player(guild_id)
        session.players[guild_id] = player
        self._players[guild_id] = (session, player)
        return player

    async def _connect(self, session: ClientSession, player: Player, voice: VoiceState) -> None:
        player.voice = voice
        server = VoiceServer(
            guild_id=int(player.guild_id), user_id=session.user_id,
            session_id=voice.session_id, token=voice.token, endpoint=voice.endpoint,
            channel_id=int(voice.channel_id) if voice.channel_id else None)
        answer = await self._engine(self.front.voices.connect(player.session_id, server))
        if not answer or not answer.get("connected"):
            reason = answer.get("reason") if answer else "no answer"
            log.warning("guild %s: voice connection failed: %s", player.guild_id, reason)
            raise LavalinkError(500, "Failed to connect to voice server")
        self.events.send_update(session, player)

    async def _play(self, session: ClientSession, player: Player, track: Track,
                    decoded: DecodedTrack, *, position: int, end_time: int | None, paused: bool
                    ) -> list[Reply]:
        """Play *track* on *player* from *position* ms (replacing its current one)."""
        if player.track is not None:
            self.events.track_end(session, player, TrackEndReason.REPLACED)
        player.track, player.decoded = track, decoded
        player.play_id, player.started = None, False
        player.end_time = end_time
        player.paused = paused
        session.send(TrackStartEvent(guild_id=player.guild_id, track=track).dump())
        url = play_url(decoded)
        if url is None:
            self.events.failed(session, player, f"no source for {decoded.source_name} tracks here",
                         Severity.COMMON)
            return []
        request = PlayRequest(
            url=url, output=OutputFormat.VOICE, start_at=max(0, position) / 1000,
            duration=None if decoded.is_stream else decoded.length / 1000,
            volume=player.volume / 100, filters=player.filters,
            loudness_default=player.loudness_default,
            end_at=end_time / 1000 if end_time else None)
        try:
            outcome = await self.front.play(player.session_id, request)
        except SessionConflict as exc:
            self.events.failed(session, player, str(exc), Severity.COMMON)
            return []
        except WorkerUnavailable as exc:
            self.events.failed(session, player, str(exc), Severity.SUSPICIOUS)
            return []
        if isinstance(outcome, PlayRefused):
            self.events.failed(session, player, outcome.message, Severity.SUSPICIOUS)
            return [outcome.reply]
        player.play_id = outcome.play_id
        if paused:
            await self._engine(self.front.calls.pause(player.session_id))
        self.events.send_update(session, player)
        return [outcome.reply]

    async def _stop(self, session: ClientSession, player: Player, reason: TrackEndReason
                    ) -> list[Reply]:
        if player.track is None:
            return []
        self.events.track_end(session, player, reason)
        player.clear()
        reply = await self._engine(self.front.stop_session(player.session_id))
        return [reply] if reply is not None else []

    async def destroy_player(self, session: ClientSession, guild_id: str) -> list[Reply]:
        """``DELETE /v4/sessions/{id}/players/{guildId}`` (unknown players are fine, as
        Lavalink answers 204 for them too)."""
        guild_id = _guild(guild_id)
        if guild_id not in session.players:
            return []
        return await self._destroy(session, guild_id, notify=True)

    async def _destroy(self, session: ClientSession, guild_id: str, *, notify: bool
                       ) -> list[Reply]:
        player = session.players.pop(guild_id, None)
        if player is None:
            return []
        if self._players.get(guild_id, (None, None))[1] is player:
            del self._players[guild_id]
        async with player.lock:
            if notify and player.track is not None:
                self.events.track_end(session, player, TrackEndReason.CLEANUP)
            player.clear()
            try:
                reply = await self.front.release_voice(guild_id)
            except (WorkerUnavailable, SessionNotFound, CallFailed) as exc:
                log.warning("guild %s: player destroyed, engine not told: %s", guild_id, exc)
                return []
        return [reply]

    async def _engine(self, call: Awaitable[T]) -> T | None:
        """An engine call about a player's session: None when the session is gone
        (its track ended meanwhile: nothing left to change), LavalinkError 503 while
        its worker restarts."""
        try:
            return await call
        except SessionNotFound:
            return None
        except WorkerUnavailable as exc:
            raise LavalinkError(503, str(exc)) from exc
        except CallFailed as exc:
            if exc.kind in ("not_playable", "not_found"):
                return None
            raise LavalinkError(500, exc.failure.message) from exc

    # -- statistics ---------------------------------------------------------------------------

    async def stats(self, *, frame_stats: bool) -> dict[str, Any]:
        """``/v4/stats`` (without ``frameStats``), or the ``stats`` message (with it)."""
        raw = await self.front.overview.stats()
        memory = Memory(**raw["memory"])
        cpu = Cpu(**raw["cpu"])
        if not frame_stats:
            return Stats(players=raw["players"], playing_players=raw["playingPlayers"],
                         uptime=raw["uptime"], memory=memory, cpu=cpu).dump()
        frames = FrameStats(**raw["frameStats"]) if raw.get("frameStats") else None
        return StatsMessage(frame_stats=frames, players=raw["players"],
                            playing_players=raw["playingPlayers"], uptime=raw["uptime"],
                            memory=memory, cpu=cpu).dump()

    # -- tasks --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop waiting for resumes and end the session tasks (the engine ends the
        players' sessions when it stops). Idempotent; safe to cancel."""
        self._closed = True
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        await self._tasks.join()
