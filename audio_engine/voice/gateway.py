"""The voice gateway v8 as a state machine: messages and events in, actions out.

One ``VoiceGateway`` lives as long as a voice connection; each WebSocket it runs over
is one *attempt*, started with ``start()`` and ended with ``connection_lost()``. The
handshake (Discord, "Voice Connections")::

    identify (op 0) ──► READY (op 2: ssrc, ip, port, modes) ──► IP discovery over UDP
      ──► SELECT PROTOCOL (op 1) ──► SESSION DESCRIPTION (op 4: mode, key, DAVE version)
    resume (op 7, with seq_ack) ──► RESUMED (op 9)

HELLO (op 8) can come at any point and starts the heartbeat: op 3 with a nonce and
``seq_ack``, the last ``seq`` the server numbered (text messages carry it as ``seq``,
binary ones in their first two bytes). A heartbeat due while the previous one is not
acknowledged means the connection is dead: the shell closes it and we resume.

Phases and the messages that move between them are data (``_TRANSITIONS``); a message
that is not allowed in the current phase is a ``VoiceGatewayError``. After a close,
``connection_lost`` decides with Discord's close codes (``opcodes.close_action``)
whether to resume, identify anew or stop, and gives up after ``max_attempts`` attempts
in a row that never reached the connected phase.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from audio_engine.voice.actions import (
    Action,
    CloseForResume,
    DiscoverIp,
    SendJson,
    SessionReady,
    StartHeartbeat,
)
from audio_engine.voice.dave import DAVE_MAX_PROTOCOL_VERSION, DaveDriver
from audio_engine.voice.opcodes import (
    BINARY_OPS,
    CloseAction,
    EncryptionMode,
    SpeakingFlag,
    VoiceOp,
    close_action,
)
from audio_engine.voice.transport import SECRET_KEY_SIZE
from protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "CloseDecision",
    "Phase",
    "VoiceCredentials",
    "VoiceGateway",
    "VoiceGatewayError",
    "VoiceUsageError",
    "reconnect_delay",
]

#: Attempts in a row that may fail before a connection gives up: enough to ride out a
#: voice server restart (Discord's clients retry a handful of times), few enough that a
#: client learns of a dead player within seconds (see ``reconnect_delay``).
DEFAULT_MAX_ATTEMPTS: Final = 5


class VoiceGatewayError(RemoteProtocolError):
    """The voice gateway sent something the protocol does not allow here."""


class VoiceUsageError(LocalProtocolError):
    """The core was driven out of order (an input its phase does not accept)."""


@dataclass(frozen=True, slots=True)
class VoiceCredentials:
    """What a Lavalink client's ``voice`` object (plus guild and bot user) gives us.

    *channel_id* is needed for DAVE (the MLS group is the channel); without it the
    connection announces no DAVE support.
    """

    guild_id: int
    user_id: int
    session_id: str
    token: str
    endpoint: str
    channel_id: int | None = None


class Phase(Enum):
    """Where an attempt stands."""

    #: No WebSocket (before the first ``start`` and between attempts).
    DISCONNECTED = "disconnected"
    #: Identify sent, waiting for READY.
    IDENTIFYING = "identifying"
    #: READY received, the shell runs IP discovery.
    DISCOVERING = "discovering"
    #: Select protocol sent, waiting for the session description.
    SELECTING = "selecting"
    #: Resume sent, waiting for RESUMED.
    RESUMING = "resuming"
    #: Voice may flow.
    CONNECTED = "connected"
    #: Stopped for good.
    CLOSED = "closed"


#: (phase, opcode or local input) -> next phase. Anything else that changes the phase
#: is refused; ``_ANY_OPEN_PHASE`` messages are fine in every phase with a WebSocket.
_TRANSITIONS: Final[dict[tuple[Phase, VoiceOp | str], Phase]] = {
    (Phase.DISCONNECTED, "identify"): Phase.IDENTIFYING,
    (Phase.DISCONNECTED, "resume"): Phase.RESUMING,
    (Phase.IDENTIFYING, VoiceOp.READY): Phase.DISCOVERING,
    (Phase.DISCOVERING, "ip_discovered"): Phase.SELECTING,
    (Phase.SELECTING, VoiceOp.SESSION_DESCRIPTION): Phase.CONNECTED,
    (Phase.RESUMING, VoiceOp.RESUMED): Phase.CONNECTED,
    # Discord may describe the session again (a new key or DAVE version).
    (Phase.CONNECTED, VoiceOp.SESSION_DESCRIPTION): Phase.CONNECTED,
}
_ANY_OPEN_PHASE: Final = frozenset({
    VoiceOp.HELLO, VoiceOp.HEARTBEAT_ACK, VoiceOp.SPEAKING, VoiceOp.CLIENTS_CONNECT,
    VoiceOp.CLIENT_DISCONNECT, VoiceOp.DAVE_PREPARE_TRANSITION,
    VoiceOp.DAVE_EXECUTE_TRANSITION, VoiceOp.DAVE_PREPARE_EPOCH, *BINARY_OPS,
})
_OPEN_PHASES: Final = frozenset({Phase.IDENTIFYING, Phase.DISCOVERING, Phase.SELECTING,
                                 Phase.RESUMING, Phase.CONNECTED})


@dataclass(frozen=True, slots=True)
class CloseDecision:
    """What ``connection_lost`` decided: the action, and the close it is about (Discord's
    code, or None when the connection dropped without one; its reason; whether Discord
    closed it)."""

    action: CloseAction
    code: int | None
    reason: str
    by_remote: bool


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before attempt number *attempt* (1 for the first retry):
    0 for the first (a crashed voice server wants a resume at once), then doubling
    from 0.25 s up to 4 s."""
    return 0.0 if attempt <= 1 else min(4.0, 0.25 * 2 ** (attempt - 2))


class VoiceGateway:
    """The voice gateway protocol for one connection (see the module docstring).

    Args:
        credentials: the voice server and session to join.
        dave: whether to take part in DAVE (needs ``credentials.channel_id``).
        max_attempts: failed attempts in a row before giving up.
    """

    def __init__(self, credentials: VoiceCredentials, *, dave: bool = True,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.credentials = credentials
        self.phase = Phase.DISCONNECTED
        self.max_attempts = max_attempts
        self.dave = (DaveDriver(credentials.user_id, credentials.channel_id)
                     if dave and credentials.channel_id is not None else None)
        self.ssrc: int | None = None
        self.mode: EncryptionMode | None = None
        self.speaking = SpeakingFlag.NONE
        self.ping: float | None = None
        self.clients: set[int] = set()
        self.resumes = 0
        self.reidentifies = 0
        self._seq_ack = -1
        self._ready_ip: tuple[str, int] | None = None
        self._modes: tuple[EncryptionMode, ...] = ()
        self._had_session = False
        self._failed_attempts = 0
        self._heartbeat_nonce: int | None = None
        self._heartbeat_sent_at = 0.0
        self._acked = True
        self._zombie = False
        self._closing = False

    # -- attempts ------------------------------------------------------------------------

    def start(self, *, now: float) -> list[Action]:
        """A new WebSocket is open: identify, or resume the session we had.

        Raises:
            VoiceUsageError: outside the disconnected phase.
        """
        resume = self._had_session
        self._move("resume" if resume else "identify")
        self._acked, self._zombie, self._heartbeat_nonce = True, False, None
        creds = self.credentials
        if resume:
            return [SendJson(VoiceOp.RESUME, {
                "server_id": str(creds.guild_id), "session_id": creds.session_id,
                "token": creds.token, "seq_ack": self._seq_ack})]
        self._seq_ack = -1
        return [SendJson(VoiceOp.IDENTIFY, {
            "server_id": str(creds.guild_id), "user_id": str(creds.user_id),
            "session_id": creds.session_id, "token": creds.token,
            "max_dave_protocol_version": DAVE_MAX_PROTOCOL_VERSION if self.dave else 0})]

    def close(self) -> None:
        """We close the connection ourselves: whatever the close code, it is final."""
        self._closing = True

    def connection_lost(self, code: int | None, reason: str, *,
                        by_remote: bool) -> CloseDecision:
        """The WebSocket closed with *code* (None: no close frame). Decides what next;
        unless final, call ``start`` on a new WebSocket (after ``reconnect_delay``)."""
        was = self.phase
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.DISCONNECTED
        if self._closing or was is Phase.CLOSED:
            return self._final(code, reason, by_remote)
        if self._zombie:
            action = CloseAction.RESUME
        else:
            action = close_action(code, resuming=was is Phase.RESUMING)
        if action is CloseAction.RESUME and not self._had_session:
            action = CloseAction.REIDENTIFY  # nothing to resume: the handshake broke
        if action is not CloseAction.FINAL:
            self._failed_attempts += 1
            if self._failed_attempts >= self.max_attempts:
                return self._final(code, reason, by_remote)
        if action is CloseAction.REIDENTIFY:
            self._forget_session()
            self.reidentifies += 1
        elif action is CloseAction.RESUME:
            self.resumes += 1
        else:
            return self._final(code, reason, by_remote)
        return CloseDecision(action, code, reason, by_remote)

    @property
    def failed_attempts(self) -> int:
        """Attempts in a row that ended before the connection was usable again."""
        return self._failed_attempts

    # -- inputs from the WebSocket --------------------------------------------------------

    def receive_text(self, text: str, *, now: float) -> list[Action]:
        """A text message arrived.

        Raises:
            VoiceGatewayError: if it is not a voice gateway message, or not one this
                phase allows, or lacks what its opcode needs.
        """
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise VoiceGatewayError("voice gateway sent text that is not JSON") from exc
        if not isinstance(message, dict) or not isinstance(message.get("op"), int):
            raise VoiceGatewayError("voice gateway message without an integer op")
        seq = message.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self._seq_ack = seq
        try:
            op = VoiceOp(message["op"])
        except ValueError:
            return []  # an opcode newer than us (Discord adds them): ignored
        data = message.get("d")
        try:
            return self._dispatch(op, data, now)
        except (KeyError, TypeError, ValueError) as exc:
            raise VoiceGatewayError(f"voice gateway sent a malformed {op.name}: {exc!r}") \
                from exc

    def receive_binary(self, data: bytes) -> list[Action]:
        """A binary message arrived (sequence number, opcode, payload).

        Raises:
            VoiceGatewayError: if it is shorter than its header, or a DAVE payload is
                malformed.
        """
        if len(data) < 3:
            raise VoiceGatewayError(f"binary voice message of {len(data)} bytes")
        (self._seq_ack,) = struct.unpack_from(">H", data)
        try:
            op = VoiceOp(data[2])
        except ValueError:
            return []
        if op not in BINARY_OPS:
            raise VoiceGatewayError(f"{op.name} arrived as a binary message")
        self._check(op)
        if self.dave is None:
            return []
        try:
            return self.dave.receive_binary(op, data[3:])
        except ValueError as exc:
            raise VoiceGatewayError(f"malformed {op.name}: {exc}") from exc

    # -- inputs from the shell -----------------------------------------------------------

    def ip_discovered(self, address: str, port: int) -> list[Action]:
        """IP discovery found our external *address* and *port*: select the protocol.

        Raises:
            VoiceUsageError: outside the discovering phase.
        """
        self._move("ip_discovered")
        assert self._modes
        return [SendJson(VoiceOp.SELECT_PROTOCOL, {
            "protocol": "udp",
            "data": {"address": address, "port": port, "mode": self._modes[0].value}})]

    def heartbeat(self, *, now: float) -> list[Action]:
        """The heartbeat interval elapsed: beat, or close if the last beat went
        unanswered."""
        if self.phase not in _OPEN_PHASES:
            return []
        if not self._acked:
            self._zombie = True
            return [CloseForResume("heartbeat not acknowledged")]
        nonce = int(now * 1000)
        self._heartbeat_nonce, self._heartbeat_sent_at, self._acked = nonce, now, False
        return [SendJson(VoiceOp.HEARTBEAT, {"t": nonce, "seq_ack": self._seq_ack})]

    def set_speaking(self, flags: SpeakingFlag) -> list[Action]:
        """Tell Discord we speak (or stopped); needed once before the first packet."""
        self.speaking = flags
        if self.phase is not Phase.CONNECTED or self.ssrc is None:
            return []  # sent when the session is (re)described
        return [self._speaking_message()]

    # -- internals ----------------------------------------------------------------------

    def _dispatch(self, op: VoiceOp, data: Any, now: float) -> list[Action]:
        self._check(op)
        match op:
            case VoiceOp.HELLO:
                return [StartHeartbeat(float(data["heartbeat_interval"]) / 1000.0)]
            case VoiceOp.HEARTBEAT_ACK:
                nonce = data.get("t") if isinstance(data, Mapping) else data
                if nonce == self._heartbeat_nonce:
                    self._acked = True
                    self.ping = now - self._heartbeat_sent_at
                return []
            case VoiceOp.READY:
                self._move(op)
                offered = set(data["modes"])
                self._modes = tuple(mode for mode in EncryptionMode if mode.value in offered)
                if not self._modes:
                    raise ValueError(f"no mode we support among {sorted(offered)}")
                self.ssrc = int(data["ssrc"])
                self._ready_ip = (str(data["ip"]), int(data["port"]))
                return [DiscoverIp(self._ready_ip[0], self._ready_ip[1], self.ssrc)]
            case VoiceOp.SESSION_DESCRIPTION:
                self._move(op)
                mode = EncryptionMode(data["mode"])
                key = bytes(data["secret_key"])
                if len(key) != SECRET_KEY_SIZE:
                    raise ValueError(f"secret key of {len(key)} bytes")
                assert self.ssrc is not None
                self.mode = mode
                self._connected()
                # Speaking goes out now even when silent: it tells Discord our SSRC, which
                # it wants before the first packet (discord.py does the same).
                actions: list[Action] = [SessionReady(self.ssrc, mode, key),
                                         self._speaking_message()]
                if self.dave is not None:
                    actions += self.dave.session_description(
                        int(data.get("dave_protocol_version", 0)))
                return actions
            case VoiceOp.RESUMED:
                self._move(op)
                self._connected()
                return [self._speaking_message()] if self.speaking else []
            case VoiceOp.CLIENTS_CONNECT:
                self.clients.update(int(user) for user in data["user_ids"])
                return []
            case VoiceOp.CLIENT_DISCONNECT:
                self.clients.discard(int(data["user_id"]))
                return []
            case VoiceOp.DAVE_PREPARE_TRANSITION | VoiceOp.DAVE_EXECUTE_TRANSITION \
                    | VoiceOp.DAVE_PREPARE_EPOCH:
                return [] if self.dave is None else self.dave.receive_json(op, data)
            case _:
                return []  # SPEAKING of others and client-only opcodes echoed: nothing to do

    def _check(self, op: VoiceOp) -> None:
        if (self.phase, op) in _TRANSITIONS:
            return
        if op in _ANY_OPEN_PHASE and self.phase in _OPEN_PHASES:
            return
        raise VoiceGatewayError(f"unexpected {op.name} while {self.phase.value}")

    def _move(self, event: VoiceOp | str) -> None:
        target = _TRANSITIONS.get((self.phase, event))
        if target is None:
            name = event.name if isinstance(event, VoiceOp) else event
            if isinstance(event, VoiceOp):
                raise VoiceGatewayError(f"unexpected {name} while {self.phase.value}")
            raise VoiceUsageError(f"{name} is not possible while {self.phase.value}")
        self.phase = target

    def _connected(self) -> None:
        self._had_session = True
        self._failed_attempts = 0

    def _forget_session(self) -> None:
        self._had_session = False
        self.ssrc, self.mode, self._ready_ip, self._modes = None, None, None, ()
        self.clients.clear()

    def _final(self, code: int | None, reason: str, by_remote: bool) -> CloseDecision:
        self.phase = Phase.CLOSED
        return CloseDecision(CloseAction.FINAL, code, reason, by_remote)

    def _speaking_message(self) -> SendJson:
        return SendJson(VoiceOp.SPEAKING,
                        {"speaking": int(self.speaking), "delay": 0, "ssrc": self.ssrc})
