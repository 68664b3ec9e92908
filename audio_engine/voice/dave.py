"""DAVE, Discord's end-to-end encryption of voice, driven through the ``davey`` package.

``davey.DaveSession`` holds the MLS group and the per-sender keys; this module reads the
voice gateway's DAVE opcodes (21-31, see daveprotocol.com "Voice Gateway Opcodes"),
feeds them to the session and returns what to send back:

* op 4 Session Description names the call's protocol version; version > 0 means a
  fresh MLS session and our key package (op 26).
* op 25 gives the voice gateway's external sender; op 27 brings proposals to append or
  revoke, and a commit (with a welcome when it adds members) goes back as op 28.
* op 29 (a commit) and op 30 (a welcome) move us to the next epoch; we answer op 23
  Transition Ready for a non-zero transition id. A commit or welcome we cannot process
  is reported with op 31 and the session starts over with a new key package.
* op 21 announces a transition (to version 0: a downgrade, during which receivers
  accept plain frames), op 22 executes one, op 24 with epoch 1 starts a new group.

Frames are encrypted once the session is ready and the call's version is not 0;
before that they pass through as they are, as discord.py's voice client does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from typing import Any, Final

import davey

from audio_engine.voice.actions import Action, SendBinary, SendJson
from audio_engine.voice.opcodes import VoiceOp

__all__ = ["DAVE_MAX_PROTOCOL_VERSION", "DaveDriver"]

#: The highest DAVE version ``davey`` implements; sent in identify.
DAVE_MAX_PROTOCOL_VERSION: Final[int] = davey.DAVE_PROTOCOL_VERSION
#: How long receivers accept plain frames around a downgrade, in seconds (discord.py
#: uses the same figure).
_DOWNGRADE_PASSTHROUGH: Final = 120
_log = logging.getLogger(__name__)


class DaveDriver:
    """The DAVE state of one voice connection (user *user_id* in channel *channel_id*)."""

    def __init__(self, user_id: int, channel_id: int) -> None:
        self.user_id = user_id
        self.channel_id = channel_id
        self.protocol_version = 0
        self._session: davey.DaveSession | None = None
        self._pending: dict[int, int] = {}  # transition id -> protocol version
        self.encrypted_frames = 0
        self.plain_frames = 0

    @property
    def active(self) -> bool:
        """Whether outgoing frames are end-to-end encrypted now."""
        return (self.protocol_version > 0 and self._session is not None
                and self._session.ready)

    @property
    def privacy_code(self) -> str | None:
        """The call's voice privacy code once a group is established."""
        return None if self._session is None else self._session.voice_privacy_code

    def encrypt(self, frame: bytes) -> bytes:
        """*frame* end-to-end encrypted when ``active``, else as it is.

        Raises:
            RuntimeError: if davey fails to encrypt (it does not while ready).
        """
        if not self.active:
            self.plain_frames += 1
            return frame
        assert self._session is not None
        self.encrypted_frames += 1
        return self._session.encrypt_opus(frame)

    def session_description(self, protocol_version: int) -> list[Action]:
        """Op 4 named the call's DAVE version."""
        self.protocol_version = protocol_version
        return self._restart()

    def receive_json(self, op: VoiceOp, data: Mapping[str, Any]) -> list[Action]:
        """A JSON DAVE opcode (21, 22 or 24) arrived."""
        match op:
            case VoiceOp.DAVE_PREPARE_TRANSITION:
                transition, version = int(data["transition_id"]), int(data["protocol_version"])
                self._pending[transition] = version
                if transition == 0:
                    self._execute(transition)
                    return []
                if version == 0 and self._session is not None:
                    self._session.set_passthrough_mode(True, _DOWNGRADE_PASSTHROUGH)
                return [_ready(transition)]
            case VoiceOp.DAVE_EXECUTE_TRANSITION:
                self._execute(int(data["transition_id"]))
                return []
            case VoiceOp.DAVE_PREPARE_EPOCH:
                if int(data["epoch"]) == 1:
                    self.protocol_version = int(data["protocol_version"])
                    return self._restart()
                return []
            case _:
                return []

    def receive_binary(self, op: VoiceOp, payload: bytes) -> list[Action]:
        """A binary DAVE opcode (25, 27, 29 or 30) arrived; *payload* follows the opcode.

        Raises:
            ValueError: if the payload is too short for its opcode, or the external
                sender package cannot be read.
        """
        session = self._session
        if session is None:
            return []  # not an E2EE call (yet): nothing to apply the message to
        match op:
            case VoiceOp.DAVE_MLS_EXTERNAL_SENDER:
                try:
                    session.set_external_sender(payload)
                except Exception as exc:  # davey's errors are untyped (pyo3)
                    raise ValueError(f"external sender package refused: {exc}") from exc
                return []
            case VoiceOp.DAVE_MLS_PROPOSALS:
                if not payload:
                    raise ValueError("DAVE proposals without an operation type")
                operation = (davey.ProposalsOperationType.append if payload[0] == 0
                             else davey.ProposalsOperationType.revoke)
                try:
                    result = session.process_proposals(operation, payload[1:])
                except Exception as exc:  # davey's errors are untyped (pyo3)
                    _log.warning("DAVE proposals refused (%s): starting over", exc)
                    return self._restart()
                if result is None:
                    return []
                return [SendBinary(VoiceOp.DAVE_MLS_COMMIT_WELCOME,
                                   result.commit + (result.welcome or b""))]
            case VoiceOp.DAVE_MLS_ANNOUNCE_COMMIT_TRANSITION | VoiceOp.DAVE_MLS_WELCOME:
                if len(payload) < 2:
                    raise ValueError(f"{op.name} shorter than its transition id")
                (transition,) = struct.unpack_from(">H", payload)
                try:
                    if op is VoiceOp.DAVE_MLS_WELCOME:
                        session.process_welcome(payload[2:])
                    else:
                        session.process_commit(payload[2:])
                except Exception as exc:  # davey's errors are untyped (pyo3)
                    _log.warning("DAVE %s for transition %d refused (%s): asking to be"
                                 " added again", op.name, transition, exc)
                    return [SendJson(VoiceOp.DAVE_MLS_INVALID_COMMIT_WELCOME,
                                     {"transition_id": transition}), *self._restart()]
                if transition == 0:
                    return []
                self._pending[transition] = self.protocol_version
                return [_ready(transition)]
            case _:
                return []

    def _restart(self) -> list[Action]:
        """A new MLS session for the current version (or none for version 0)."""
        if self.protocol_version == 0:
            if self._session is not None:
                self._session.reset()
                self._session.set_passthrough_mode(True, 10)
            return []
        if self._session is None:
            self._session = davey.DaveSession(self.protocol_version, self.user_id,
                                              self.channel_id)
        else:
            self._session.reinit(self.protocol_version, self.user_id, self.channel_id)
        return [SendBinary(VoiceOp.DAVE_MLS_KEY_PACKAGE,
                           self._session.get_serialized_key_package())]

    def _execute(self, transition: int) -> None:
        version = self._pending.pop(transition, None)
        if version is None:
            _log.debug("DAVE transition %d executed without being announced", transition)
            return
        if version > 0 and self.protocol_version == 0 and self._session is not None:
            self._session.set_passthrough_mode(True, 10)  # upgrade: accept both a while
        self.protocol_version = version


def _ready(transition: int) -> SendJson:
    return SendJson(VoiceOp.DAVE_TRANSITION_READY, {"transition_id": transition})
