"""The front's Lavalink players: the guild ids they claim and the worker that holds
each one's Discord voice connection.

A guild is either a Lavalink player or a Go session, never both: a Lavalink player
claims its guild's session id (``claim``), its plays are ``voice`` sessions on the
worker that holds its voice connection (placed with its first connection or play),
and their events come back from that worker as notices for the Lavalink face (the
``listener``). On a worker's death the connections it held are made again on the
workers their sessions moved to (``reconnect``). The worker side of the same
connections is ``cluster.voice``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from audio_engine.cluster.calls import CALL_TIMEOUT
from audio_engine.cluster.directory import SessionDirectory
from audio_engine.cluster.errors import (
    SessionConflict,
    SessionNotFound,
    WorkerUnavailable,
    conflict_message,
)
from audio_engine.cluster.peer import CallFailed, CallTimedOut, PeerGone
from audio_engine.cluster.pool import WorkerPool
from audio_engine.cluster.reports import VoiceServer
from audio_engine.cluster.workers import WorkerProcess

__all__ = ["PlayerState", "VoiceClaim", "VoiceClaims", "VoiceListener"]

log = logging.getLogger(__name__)

#: Seconds the front waits for a worker to connect a voice connection (the worker
#: waits 10 s for the handshake, ``worker.VOICE_CONNECT_WAIT``).
_VOICE_CALL_TIMEOUT: Final = 12.0
#: Longest a player's position is carried forward from the last report (reports come
#: every 0.5 s; a worker that stopped reporting is not playing on).
_EXTRAPOLATE_MAX: Final = 2.0


class VoiceListener(Protocol):
    """What receives the events of voice sessions (the Lavalink face)."""

    def voice_event(self, session_id: str, fields: dict[str, Any]) -> None:
        """An event line of a voice session, as a dict (``type``, ``play``,
        ``reason``, ``message``...)."""

    def voice_closed(self, session_id: str, code: int, reason: str, by_remote: bool) -> None:
        """The session's voice connection closed for good (Discord's close code)."""


class PlayerState(NamedTuple):
    """A voice session's state for Lavalink's ``playerUpdate``: the track position
    (seconds, None when nothing plays), and its voice connection."""

    position: float | None
    connected: bool
    ping_ms: int


@dataclass(slots=True)
class VoiceClaim:
    """A guild claimed by a Lavalink player: the worker that holds its voice
    connection (None until placed) and the credentials it connects with."""

    worker: WorkerProcess | None = None
    server: VoiceServer | None = None
    #: What the worker said of its connection outside its reports (the answer to
    #: ``voice``, a ``voice_closed`` notice), and when: newer than its latest report,
    #: it is the connection's state (reports come every 0.5 s).
    connected: bool = False
    said_at: float = -math.inf


class VoiceClaims:
    """See the module docstring.

    Args:
        sessions: the front's session directory (a claim gives an ended Go
            session's id up; positions come from its records).
        pool: the worker processes.
        place: the front's placement: the worker a new session goes to, among live
            ones.
    """

    def __init__(self, sessions: SessionDirectory[WorkerProcess], pool: WorkerPool,
                 place: Callable[[list[WorkerProcess]], WorkerProcess]) -> None:
        self._sessions = sessions
        self._pool = pool
        self._place = place
        #: Session ids claimed by Lavalink players.
        self._claims: dict[str, VoiceClaim] = {}
        #: Where the events of voice sessions go (the Lavalink face, when enabled).
        self.listener: VoiceListener | None = None

    def get(self, session_id: str) -> VoiceClaim | None:
        """The claim on *session_id*, if a Lavalink player holds it."""
        return self._claims.get(session_id)

    def is_voice(self, session_id: str) -> bool:
        """Whether *session_id* is claimed by a Lavalink player."""
        return session_id in self._claims

    def held_by(self, worker: WorkerProcess) -> list[tuple[str, VoiceClaim]]:
        """The claims whose voice connection *worker* holds."""
        return [(sid, v) for sid, v in self._claims.items() if v.worker is worker]

    def holds_any(self, worker: WorkerProcess) -> bool:
        """Whether *worker* holds a claimed guild's voice connection."""
        return any(v.worker is worker for v in self._claims.values())

    def claim(self, session_id: str) -> None:
        """Claim *session_id* for a Lavalink player (idempotent).

        Raises:
            SessionConflict: a Go session with this id is live.
        """
        if session_id in self._claims:
            return
        record = self._sessions.get(session_id)
        if record is not None and record.live:
            raise SessionConflict(conflict_message(session_id, lavalink=False))
        self._sessions.pop(session_id)  # an ended Go session gives the id up
        self._claims[session_id] = VoiceClaim()

    async def release(self, session_id: str, voice: VoiceClaim) -> None:
        """Give *session_id* up and close the voice connection of its claim *voice*
        (its session was stopped; ``Front.release_voice``)."""
        self._claims.pop(session_id, None)
        if voice.worker is not None and voice.worker.alive:
            try:
                await voice.worker.call("voice_close", session_id, within=CALL_TIMEOUT)
            except (PeerGone, CallTimedOut, CallFailed) as exc:
                log.warning("voice connection of %s not closed: %s", session_id, exc)

    async def connect(self, session_id: str, server: VoiceServer) -> dict[str, Any]:
        """Connect (or move) the voice connection of the Lavalink player *session_id*
        on the worker that plays it (placed now if it has none), and wait until it
        is usable or failed: ``{"connected", "code", "reason"}``.

        Raises:
            SessionNotFound: the id is not claimed (``claim``).
            WorkerUnavailable: no worker can take it now.
        """
        voice = self._claims.get(session_id)
        if voice is None:
            raise SessionNotFound(session_id)
        if voice.worker is None or not voice.worker.alive:
            if voice.worker is not None:
                raise WorkerUnavailable("the engine is moving this player to another "
                                        "worker; try again shortly")
            workers = self._pool.live(started=True)
            if not workers:
                raise WorkerUnavailable("the engine is starting its workers; try again shortly")
            voice.worker = self._place(workers)
        voice.server = server
        try:
            answer = await voice.worker.call("voice", session_id, server,
                                             within=_VOICE_CALL_TIMEOUT)
        except (PeerGone, CallTimedOut) as exc:
            raise WorkerUnavailable("the engine worker of this player is not answering; "
                                    "try again shortly") from exc
        voice.connected, voice.said_at = bool(answer.get("connected")), time.monotonic()
        return dict(answer)

    def player_state(self, session_id: str, tempo: float = 1.0) -> PlayerState:
        """Where the voice session *session_id* is (from its worker's reports, carried
        forward at *tempo* track seconds per second while it plays), and its voice
        connection's state."""
        voice = self._claims.get(session_id)
        worker = voice.worker if voice is not None else None
        report = worker.report if worker is not None else None
        snapshot = report.voices.get(session_id) if report is not None else None
        connected = snapshot is not None and snapshot.connected
        ping = snapshot.ping_ms if snapshot is not None else -1
        if voice is not None and (report is None or voice.said_at > report.at):
            connected = voice.connected
            ping = ping if connected else -1
        record = self._sessions.get(session_id)
        if record is None or not record.live:
            return PlayerState(None, connected, ping)
        now = time.monotonic()
        session = record.snapshot
        position, at = (session.position, record.snapshot_at) if session is not None \
            else (record.request.start_at, now)
        if record.position_hint is not None and record.position_hint[1] > at:
            position, at = record.position_hint
        playing = connected and not record.paused and (session is None or session.ready_sent)
        if playing:
            position += min(_EXTRAPOLATE_MAX, max(0.0, now - at)) * tempo
        return PlayerState(position, connected, ping)

    # -- what the workers send (through the front) ---------------------------------------------

    def worker_event(self, worker: WorkerProcess, fields: dict[str, Any]) -> None:
        """An event line of a voice session from *worker*: to the listener, unless
        the player was released or another worker holds it now."""
        session_id = str(fields.get("session_id", ""))
        voice = self._claims.get(session_id)
        if voice is None or voice.worker is not worker or self.listener is None:
            return  # a released player, or a dead worker's late word
        self.listener.voice_event(session_id, fields)

    def worker_closed(self, worker: WorkerProcess, session_id: str, code: int,
                      reason: str, by_remote: bool) -> None:
        """*worker* closed *session_id*'s voice connection for good."""
        voice = self._claims.get(session_id)
        if voice is None or voice.worker is not worker:
            return
        voice.connected, voice.said_at = False, time.monotonic()
        if self.listener is not None:
            self.listener.voice_closed(session_id, code, reason, by_remote)

    async def reconnect(self, dead: WorkerProcess, moving: list[tuple[str, VoiceClaim]]
                        ) -> None:
        """Connect the voice connections the *dead* worker held (*moving*) again, each
        on the worker its guild's session moved to (or a placed one)."""
        if not moving:
            return
        workers = self._pool.live(started=True)
        calls = []
        for session_id, voice in moving:
            if self._claims.get(session_id) is not voice:
                continue  # released meanwhile
            if voice.worker is dead or voice.worker is None or not voice.worker.alive:
                if not workers:
                    voice.worker = None
                    continue
                voice.worker = self._place(workers)
            if voice.server is not None:
                calls.append(voice.worker.call("voice", session_id, voice.server,
                                               within=_VOICE_CALL_TIMEOUT))
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        log.info("%d voice connections moved (%d failed)", len(calls) - len(failed),
                 len(failed))
