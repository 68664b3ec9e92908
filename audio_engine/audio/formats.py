"""The output formats of a session, and what each one costs.

Three are the Go engine's (``opus``, ``web``, ``pcm``: what a play's ``format`` asks
for); ``voice`` is ours, for sessions whose frames go to the engine's own Discord voice
connection (the Lavalink face) rather than to the socket consumers.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OutputFormat"]


class OutputFormat(StrEnum):
    """Payload format of a session on the socket (PROTOCOL.md, "play semantics")."""

    #: Ogg Opus at 128 kb/s, for Discord voice.
    OPUS = "opus"
    #: Ogg Opus at 256 kb/s, for browsers.
    WEB = "web"
    #: Raw s16le stereo 48 kHz, one 20 ms frame per packet.
    PCM = "pcm"
    #: Raw Opus packets at 128 kb/s, one 20 ms frame each, no Ogg paging and no socket
    #: framing: what a Discord voice connection sends in its RTP packets. Never asked
    #: for by a Go play (``from_request`` does not map to it).
    VOICE = "voice"

    @classmethod
    def from_request(cls, value: str) -> OutputFormat:
        """Map a play request's ``format`` field: ``opus``, ``web``, anything else is PCM
        (as the Go engine does, including the empty string)."""
        match value:
            case "opus":
                return cls.OPUS
            case "web":
                return cls.WEB
            case _:
                return cls.PCM

    @property
    def is_opus(self) -> bool:
        """Whether the audio is Opus (encoded by us, or an Opus source passed through)."""
        return self is not OutputFormat.PCM

    @property
    def is_ogg(self) -> bool:
        """Whether the Opus packets are wrapped in Ogg pages (the socket's formats)."""
        return self is OutputFormat.OPUS or self is OutputFormat.WEB

    @property
    def bitrate(self) -> int:
        """Target Opus bitrate in bits per second (0 for PCM)."""
        match self:
            case OutputFormat.OPUS | OutputFormat.VOICE:
                return 128_000
            case OutputFormat.WEB:
                return 256_000
            case _:
                return 0
