"""A worker's Discord voice connections: one per Lavalink player placed on it.

A Lavalink player is an engine session whose frames go to its guild's own voice
connection (``audio_engine.voice``) instead of the socket consumers. Its connection
outlives the plays of that guild (a new track is a new play on the same session id),
so it lives here, per session id, owned by the worker, not by the session:

- ``VoicePlayer`` is the ``VoiceSink`` of one guild's sessions: the clock hands it
  each frame (``send_opus``) and asks whether frames may flow (``ready``);
- ``VoicePlayers`` holds them: the front attaches, replaces or closes a guild's
  connection (credentials from the Lavalink client's ``voice`` object); a final close
  Discord caused goes to the front as a ``voice_closed`` notice;
- ``VoiceRouting`` is the ``Hub`` the worker's session manager writes to: event lines
  of voice sessions go to the front as ``voice_event`` notices (it turns them into
  Lavalink events), never into the socket batch the Go consumers read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from audio_engine.cluster.reports import VoiceServer, VoiceSnapshot

if TYPE_CHECKING:
    from audio_engine.voice import VoiceClosed, VoiceConnection

__all__ = ["MAX_VOICE_IDS", "VoicePlayer", "VoicePlayers", "VoiceRouting"]

log = logging.getLogger(__name__)

#: Session ids remembered as voice sessions after their player was closed (their
#: last event lines may still be on their way): far more guilds than a worker plays.
MAX_VOICE_IDS: Final = 100_000


class Notices(Protocol):
    """The worker's channel to the front (``WorkerLink``), as far as voice goes."""

    def cast(self, method: str, *args: Any) -> None: ...


class VoicePlayer:
    """One guild's voice connection as its sessions see it (a ``VoiceSink``)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.connection: VoiceConnection | None = None
        self.server: VoiceServer | None = None

    @property
    def ready(self) -> bool:
        connection = self.connection
        return connection is not None and connection.usable

    def send_opus(self, frame: bytes) -> bool:
        connection = self.connection
        return connection.send_opus(frame) if connection is not None else False

    def snapshot(self) -> VoiceSnapshot:
        connection = self.connection
        if connection is None:
            return VoiceSnapshot(connected=False, ping_ms=-1)
        return VoiceSnapshot(connected=connection.usable, ping_ms=connection.ping_ms)


class VoicePlayers:
    """The worker's voice players by session id.

    Args:
        notices: where ``voice_closed`` notices go (the front).
        dave: take part in DAVE end-to-end encryption when a call uses it.
    """

    def __init__(self, notices: Notices, *, dave: bool = True) -> None:
        self._notices = notices
        self._dave = dave
        self._players: dict[str, VoicePlayer] = {}
        #: Every id whose lines are voice lines, oldest first (an ordered set).
        self._ids: dict[str, None] = {}

    def owns(self, session_id: str) -> bool:
        """Whether *session_id*'s event lines belong to a voice session."""
        return session_id in self._ids

    @property
    def any(self) -> bool:
        return bool(self._ids)

    def sink(self, session_id: str) -> VoicePlayer:
        """The voice player of *session_id*, made (without a connection) if none."""
        player = self._players.get(session_id)
        if player is None:
            player = self._players[session_id] = VoicePlayer(session_id)
        self._own(session_id)
        return player

    def disown(self, session_id: str) -> None:
        """A plain (socket) play starts on *session_id*: its lines are socket lines."""
        if session_id not in self._players:
            self._ids.pop(session_id, None)

    def _own(self, session_id: str) -> None:
        self._ids.pop(session_id, None)
        self._ids[session_id] = None
        while len(self._ids) > MAX_VOICE_IDS:
            oldest = next(iter(self._ids))
            if oldest in self._players:
                break
            del self._ids[oldest]

    def snapshots(self) -> dict[str, VoiceSnapshot]:
        """Every player's connection state (for the worker's report)."""
        return {sid: player.snapshot() for sid, player in self._players.items()}

    async def attach(self, session_id: str, server: VoiceServer, *, within: float
                     ) -> dict[str, Any]:
        """Connect *session_id*'s player to *server*, replacing a connection to another
        one (the bot moved); the same credentials on a live connection keep it. Waits
        up to *within* seconds for the connection to be usable.

        Returns ``{"connected": bool, "code": int, "reason": str}``: code and reason
        of the close when it failed for good. Cancelling is safe (the connection goes
        on trying; ``close`` stops it).
        """
        # Here, not at the top: a worker that never plays a Lavalink player does not
        # load the voice stack (websockets' client, davey, the AEAD ciphers: ~9 MB).
        from audio_engine.voice import (
            VoiceConnectError,
            VoiceConnection,
            VoiceConnectionState,
            VoiceCredentials,
        )

        player = self.sink(session_id)
        current = player.connection
        if current is not None and player.server == server and \
                current.state is not VoiceConnectionState.CLOSED:
            connection = current
        else:
            if current is not None:
                player.connection = None
                await current.close()
            credentials = VoiceCredentials(
                guild_id=server.guild_id, user_id=server.user_id,
                session_id=server.session_id, token=server.token, endpoint=server.endpoint,
                channel_id=server.channel_id)
            try:
                connection = VoiceConnection(
                    credentials, dave=self._dave,
                    on_close=lambda closed: self._closed(session_id, connection, closed))
            except ValueError as exc:  # an endpoint that is no ws(s):// host
                return {"connected": False, "code": 4000, "reason": str(exc)}
            player.connection, player.server = connection, server
        try:
            async with asyncio.timeout(within):
                await connection.connect()
        except VoiceConnectError as exc:
            return {"connected": False, "code": exc.closed.code, "reason": exc.closed.reason}
        except TimeoutError:
            return {"connected": False, "code": 0, "reason": "the voice server did not answer "
                    f"within {within:g} s; still trying"}
        return {"connected": True, "code": 0, "reason": ""}

    def _closed(self, session_id: str, connection: VoiceConnection, closed: VoiceClosed
                ) -> None:
        player = self._players.get(session_id)
        if player is None or player.connection is not connection:
            return  # replaced or closed meanwhile: nobody waits for its close
        self._notices.cast("voice_closed", session_id, closed.code, closed.reason,
                           closed.by_remote)

    async def close(self, session_id: str) -> None:
        """Close and forget *session_id*'s player (its lines stay voice lines)."""
        player = self._players.pop(session_id, None)
        if player is not None and player.connection is not None:
            connection, player.connection = player.connection, None
            await connection.close()

    async def close_all(self) -> None:
        """Close every connection (the worker stops). Idempotent."""
        await asyncio.gather(*(self.close(sid) for sid in list(self._players)),
                             return_exceptions=True)


class HubLink(Notices, Protocol):
    """The hub the routing passes everything else to (``WorkerLink``)."""

    @property
    def go_style_connected(self) -> bool: ...

    def broadcast(self, parts: list[bytes], events: list[bytes], audio_packets: int, *,
                  announced: Sequence[str] = (),
                  headers: Sequence[tuple[str, bytes]] = ()) -> float | None: ...

    def send_event(self, line: bytes) -> None: ...

    def forget(self, session_id: str) -> None: ...


class VoiceRouting:
    """The session manager's ``Hub`` in a worker: socket lines and audio go to the
    front's consumers as before; the event lines of voice sessions go to the front as
    ``voice_event`` notices (the line's fields as a dict), in the order they were made.
    """

    def __init__(self, link: HubLink, voices: VoicePlayers) -> None:
        self._link = link
        self._voices = voices

    @property
    def go_style_connected(self) -> bool:
        return self._link.go_style_connected

    def broadcast(self, parts: list[bytes], events: list[bytes], audio_packets: int, *,
                  announced: Sequence[str] = (),
                  headers: Sequence[tuple[str, bytes]] = ()) -> float | None:
        if events and self._voices.any:
            diverted = {id(line) for line in events if self._divert(line)}
            if diverted:
                parts = [part for part in parts if id(part) not in diverted]
                events = [line for line in events if id(line) not in diverted]
                if not parts and not announced and not headers:
                    return None
        return self._link.broadcast(parts, events, audio_packets, announced=announced,
                                    headers=headers)

    def send_event(self, line: bytes) -> None:
        if not (self._voices.any and self._divert(line)):
            self._link.send_event(line)

    def forget(self, session_id: str) -> None:
        self._link.forget(session_id)

    def _divert(self, line: bytes) -> bool:
        """Send *line* to the front as a voice notice if it is a voice session's."""
        try:
            fields = json.loads(line)
        except ValueError:
            return False  # not a line of ours: leave it to the socket
        if not isinstance(fields, dict) or not self._voices.owns(
                str(fields.get("session_id", ""))):
            return False
        self._link.cast("voice_event", fields)
        return True
