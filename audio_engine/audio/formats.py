"""The three output formats a play can ask for, and what each one costs."""

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
    def is_ogg(self) -> bool:
        """Whether payloads are Ogg Opus pages (else raw PCM)."""
        return self is not OutputFormat.PCM

    @property
    def bitrate(self) -> int:
        """Target Opus bitrate in bits per second (0 for PCM)."""
        match self:
            case OutputFormat.OPUS:
                return 128_000
            case OutputFormat.WEB:
                return 256_000
            case _:
                return 0
