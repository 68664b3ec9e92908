"""The closed sets of Discord's voice gateway v8: opcodes, close codes, modes, flags.

Sources: Discord's developer documentation, "Voice Connections" and "Opcodes and
Status Codes" (discord/discord-api-docs), and the DAVE protocol whitepaper
(daveprotocol.com) for opcodes 21-31.
"""

from __future__ import annotations

from enum import Enum, IntEnum, IntFlag, StrEnum
from typing import Final

__all__ = [
    "BINARY_OPS",
    "GATEWAY_VERSION",
    "CloseAction",
    "EncryptionMode",
    "SpeakingFlag",
    "VoiceCloseCode",
    "VoiceOp",
    "close_action",
]

#: The voice gateway version we speak (``?v=8``): server messages carry ``seq`` and are
#: re-sent on resume; heartbeats and resumes carry ``seq_ack``.
GATEWAY_VERSION: Final = 8


class VoiceOp(IntEnum):
    """Voice gateway opcodes."""

    IDENTIFY = 0
    SELECT_PROTOCOL = 1
    READY = 2
    HEARTBEAT = 3
    SESSION_DESCRIPTION = 4
    SPEAKING = 5
    HEARTBEAT_ACK = 6
    RESUME = 7
    HELLO = 8
    RESUMED = 9
    CLIENTS_CONNECT = 11
    CLIENT_DISCONNECT = 13
    DAVE_PREPARE_TRANSITION = 21
    DAVE_EXECUTE_TRANSITION = 22
    DAVE_TRANSITION_READY = 23
    DAVE_PREPARE_EPOCH = 24
    DAVE_MLS_EXTERNAL_SENDER = 25
    DAVE_MLS_KEY_PACKAGE = 26
    DAVE_MLS_PROPOSALS = 27
    DAVE_MLS_COMMIT_WELCOME = 28
    DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION = 29
    DAVE_MLS_WELCOME = 30
    DAVE_MLS_INVALID_COMMIT_WELCOME = 31


#: Opcodes sent as binary WebSocket messages (sequence number, opcode byte, payload from
#: the server; opcode byte and payload from the client). Every other opcode is JSON.
BINARY_OPS: Final = frozenset({
    VoiceOp.DAVE_MLS_EXTERNAL_SENDER, VoiceOp.DAVE_MLS_KEY_PACKAGE, VoiceOp.DAVE_MLS_PROPOSALS,
    VoiceOp.DAVE_MLS_COMMIT_WELCOME, VoiceOp.DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION,
    VoiceOp.DAVE_MLS_WELCOME,
})


class EncryptionMode(StrEnum):
    """Transport encryption modes we implement, most preferred first (Discord: prefer
    AES-256-GCM when offered; XChaCha20-Poly1305 is always offered)."""

    AEAD_AES256_GCM_RTPSIZE = "aead_aes256_gcm_rtpsize"
    AEAD_XCHACHA20_POLY1305_RTPSIZE = "aead_xchacha20_poly1305_rtpsize"


class SpeakingFlag(IntFlag):
    """Bits of op 5's ``speaking`` field."""

    NONE = 0
    MICROPHONE = 1 << 0
    SOUNDSHARE = 1 << 1
    PRIORITY = 1 << 2


class VoiceCloseCode(IntEnum):
    """Close codes of the voice gateway (and the transport codes that matter to us)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006  # no close frame: the connection dropped
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    UNKNOWN_OPCODE = 4001
    FAILED_TO_DECODE = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    SESSION_NO_LONGER_VALID = 4006
    SESSION_TIMEOUT = 4009
    SERVER_NOT_FOUND = 4011
    UNKNOWN_PROTOCOL = 4012
    DISCONNECTED = 4014
    VOICE_SERVER_CRASHED = 4015
    UNKNOWN_ENCRYPTION_MODE = 4016
    BAD_REQUEST = 4020
    RATE_LIMITED = 4021
    CALL_TERMINATED = 4022


class CloseAction(Enum):
    """What to do after the voice WebSocket closed."""

    #: Open a new WebSocket and send op 7 Resume: same session, same UDP and key.
    RESUME = "resume"
    #: Open a new WebSocket and identify again with the same credentials: a new session
    #: (new SSRC, IP discovery and key) on the same voice server.
    REIDENTIFY = "reidentify"
    #: Stop and report the close (Lavalink's ``WebSocketClosedEvent``).
    FINAL = "final"


#: Close codes after which Discord says to resume: its server crashed (4015), or the
#: connection itself broke (no close frame, a proxy or restart), which says nothing
#: against the session.
_RESUME_CODES: Final = frozenset({
    VoiceCloseCode.VOICE_SERVER_CRASHED, VoiceCloseCode.GOING_AWAY, VoiceCloseCode.ABNORMAL,
    VoiceCloseCode.INTERNAL_ERROR, VoiceCloseCode.SERVICE_RESTART,
    VoiceCloseCode.TRY_AGAIN_LATER, VoiceCloseCode.BAD_GATEWAY,
})
#: The session timed out (4009): it cannot be resumed, but the credentials the client
#: gave us are still the voice server's, so a fresh identify is what remains to try.
_REIDENTIFY_CODES: Final = frozenset({VoiceCloseCode.SESSION_TIMEOUT})


def close_action(code: int | None, *, resuming: bool) -> CloseAction:
    """What Discord's documentation asks after a close with *code* (None: the
    connection dropped without a close frame).

    Everything not listed to resume or identify again is final: 4014 and 4022 say
    "should not reconnect", 4021 is a rate limit, 4004/4006/4011/4012/4016 and the
    protocol errors would fail the same way again, 1000 is an orderly end. One
    exception: 4006 answering our resume means the session could not be resumed, and
    Discord asks to connect anew then.
    """
    if code is None or code in _RESUME_CODES:
        return CloseAction.RESUME
    if code in _REIDENTIFY_CODES:
        return CloseAction.REIDENTIFY
    if resuming and code == VoiceCloseCode.SESSION_NO_LONGER_VALID:
        return CloseAction.REIDENTIFY
    return CloseAction.FINAL
