"""One Lavalink player and one client session, as the node keeps them (plain state).

A player is one guild of one client session. Its audio is an engine session whose id
is the guild id (a snowflake: at most 20 digits, within the engine's 24 bytes), played
as a ``voice`` session on the worker that holds the guild's voice connection. The
player holds what Lavalink reports about it (the current track with its user data,
volume, pause, filters, voice credentials) and which engine play is its current track.

A client session is one ``/v4/websocket`` connection's state: its players, whether it
may be resumed and for how long, and the messages to send.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import string
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from protocol.filters import Filters
from protocol.lavalink import DecodedTrack, Op, Track, VoiceState
from protocol.lavalink import Player as PlayerJson
from protocol.lavalink import PlayerState as PlayerStateJson

__all__ = [
    "EVENT_QUEUE",
    "OUTBOX",
    "ClientSession",
    "Player",
    "new_session_id",
]

log = logging.getLogger(__name__)

#: Messages waiting for a client's WebSocket writer: many events at once (a burst of
#: track ends) fit; a client that stops reading loses playerUpdates first.
OUTBOX: Final = 1024
#: Events kept for a client that may resume (Lavalink replays them in order): the
#: events of hundreds of tracks; older ones are dropped first.
EVENT_QUEUE: Final = 1000
#: Lavalink's session ids: 16 characters of a-z0-9.
_ALPHABET: Final = string.ascii_lowercase + string.digits


def new_session_id() -> str:
    """A fresh Lavalink session id (16 random characters of ``[a-z0-9]``)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(16))


@dataclass(slots=True)
class Player:
    """One guild's player (see the module docstring)."""

    guild_id: str
    #: The current track (its encoded string as the client sent it, user data), and
    #: what it decodes to; None when nothing plays.
    track: Track | None = None
    decoded: DecodedTrack | None = None
    #: The engine's play id of the current track, and whether its audio started.
    play_id: int | None = None
    started: bool = False
    volume: int = 100
    paused: bool = False
    filters: Filters = field(default_factory=Filters)
    #: The engine's default loudness applies (the filters object has no ``loudness``).
    loudness_default: bool = True
    voice: VoiceState = field(default_factory=lambda: VoiceState(
        token="", endpoint="", session_id=""))
    #: Track position (ms) at which the current track ends (Lavalink's ``endTime``).
    end_time: int | None = None
    #: Serialises the updates of this player (each awaits engine calls).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def session_id(self) -> str:
        """The engine session id of the player's audio."""
        return self.guild_id

    def clear(self) -> None:
        """Nothing plays any more: no current track, play, or end time."""
        self.track = self.decoded = None
        self.play_id, self.started = None, False
        self.end_time = None

    def track_json(self, position_ms: int) -> Track | None:
        """The current track as Lavalink shows it, at *position_ms*."""
        if self.track is None:
            return None
        info = self.track.info.model_copy(update={"position": position_ms})
        return self.track.model_copy(update={"info": info})

    def to_json(self, state: PlayerStateJson) -> PlayerJson:
        """The player object of ``GET /v4/sessions/{id}/players/{guildId}``."""
        return PlayerJson(guild_id=self.guild_id, track=self.track_json(state.position),
                          volume=self.volume, paused=self.paused, state=state,
                          voice=self.voice, filters=self.filters.to_lavalink())


class ClientSession:
    """One client's Lavalink session (see the module docstring).

    Args:
        session_id: its Lavalink session id.
        user_id: the bot's Discord user id (the ``User-Id`` header).
        client_name: the ``Client-Name`` header.
    """

    _numbers = itertools.count(1)

    def __init__(self, session_id: str, user_id: int, client_name: str) -> None:
        self.id = session_id
        self.user_id = user_id
        self.client_name = client_name
        self.number = next(self._numbers)
        self.resuming = False
        #: Seconds a resumable session waits for its client (Lavalink's default).
        self.timeout = 60
        self.players: dict[str, Player] = {}
        #: The connected WebSocket's outbox (None while disconnected).
        self.outbox: asyncio.Queue[str] | None = None
        #: Set when a resuming client took the session over from the WebSocket that
        #: still held it (that one is then closed).
        self.taken_over = asyncio.Event()
        #: Events kept while a resumable session waits for its client.
        self.held: deque[str] = deque(maxlen=EVENT_QUEUE)
        #: Set once the session ended for good (its players were destroyed).
        self.closed = False
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self.outbox is not None

    def send(self, message: dict[str, Any]) -> None:
        """Send *message* (a Lavalink message as JSON) to the client, or keep it for
        a client that may resume (events only: positions are sent anew on resume)."""
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        outbox = self.outbox
        if outbox is None:
            if not self.closed and message.get("op") == Op.EVENT:
                self.held.append(text)
            return
        try:
            outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("Lavalink session %s: the client does not read; a %s message was "
                        "dropped", self.id, message.get("op"))
