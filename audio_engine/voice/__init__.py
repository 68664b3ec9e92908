"""The engine's own Discord voice connection, one per guild (Lavalink's job, done here).

``gateway`` is the voice gateway v8 as a sans-I/O state machine, ``dave`` drives DAVE
end-to-end encryption through ``davey``, ``transport`` builds encrypted RTP packets and
IP discovery; ``connection.VoiceConnection`` is the asyncio shell an engine worker owns
per player and feeds from its 20 ms tick with ``send_opus``.
"""

from __future__ import annotations

from audio_engine.voice.connection import (
    VoiceClosed,
    VoiceConnectError,
    VoiceConnection,
    VoiceConnectionState,
    VoiceStats,
    gateway_url,
)
from audio_engine.voice.gateway import (
    CloseDecision,
    Phase,
    VoiceCredentials,
    VoiceGateway,
    VoiceGatewayError,
    VoiceUsageError,
)
from audio_engine.voice.opcodes import (
    CloseAction,
    EncryptionMode,
    SpeakingFlag,
    VoiceCloseCode,
    VoiceOp,
    close_action,
)
from audio_engine.voice.transport import RtpPacketizer, TransportEncryptor

__all__ = [
    "CloseAction",
    "CloseDecision",
    "EncryptionMode",
    "Phase",
    "RtpPacketizer",
    "SpeakingFlag",
    "TransportEncryptor",
    "VoiceCloseCode",
    "VoiceClosed",
    "VoiceConnectError",
    "VoiceConnection",
    "VoiceConnectionState",
    "VoiceCredentials",
    "VoiceGateway",
    "VoiceGatewayError",
    "VoiceOp",
    "VoiceStats",
    "VoiceUsageError",
    "close_action",
    "gateway_url",
]
