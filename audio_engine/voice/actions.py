"""What the sans-I/O voice gateway asks its shell to do: values, applied in order.

The core (``gateway.VoiceGateway``) never touches a socket or a clock; every input
returns a list of these and the asyncio shell (``connection.VoiceConnection``) carries
them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audio_engine.voice.opcodes import BINARY_OPS, EncryptionMode, VoiceOp

__all__ = [
    "Action",
    "CloseForResume",
    "DiscoverIp",
    "SendBinary",
    "SendJson",
    "SessionReady",
    "StartHeartbeat",
]


@dataclass(frozen=True, slots=True)
class SendJson:
    """Send ``{"op": op, "d": data}`` as a text message."""

    op: VoiceOp
    data: Mapping[str, Any] | int | None

    def __post_init__(self) -> None:
        if self.op in BINARY_OPS:
            raise ValueError(f"opcode {self.op.name} is binary, not JSON")

    def to_text(self) -> str:
        """The message as JSON text."""
        data = dict(self.data) if isinstance(self.data, Mapping) else self.data
        return json.dumps({"op": int(self.op), "d": data}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SendBinary:
    """Send a binary message: the opcode byte, then *payload* (client to server
    messages carry no sequence number)."""

    op: VoiceOp
    payload: bytes

    def __post_init__(self) -> None:
        if self.op not in BINARY_OPS:
            raise ValueError(f"opcode {self.op.name} is JSON, not binary")

    def to_bytes(self) -> bytes:
        """The message as sent."""
        return bytes((int(self.op),)) + self.payload


@dataclass(frozen=True, slots=True)
class StartHeartbeat:
    """Heartbeat every *interval* seconds from now on (replacing any earlier beat)."""

    interval: float


@dataclass(frozen=True, slots=True)
class DiscoverIp:
    """Open UDP to *address*:*port* (or keep the open one there), run IP discovery
    for *ssrc*, and report with ``VoiceGateway.ip_discovered``."""

    address: str
    port: int
    ssrc: int


@dataclass(frozen=True, slots=True)
class SessionReady:
    """Voice may flow: encrypt for *ssrc* with *mode* and *secret_key*."""

    ssrc: int
    mode: EncryptionMode
    secret_key: bytes


@dataclass(frozen=True, slots=True)
class CloseForResume:
    """Close the WebSocket (it looks dead) and resume on a new one."""

    reason: str


Action = SendJson | SendBinary | StartHeartbeat | DiscoverIp | SessionReady | CloseForResume
