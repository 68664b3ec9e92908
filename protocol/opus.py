"""Opus-specific pieces of Ogg Opus (RFC 7845) and of the Opus packet format (RFC 6716).

``OpusHead`` and ``OpusTags`` are the two header packets that start every Ogg Opus
logical stream; ``opus_packet_samples`` reads an Opus packet's duration from its
TOC byte, which is how the engine decides whether a source's packets can be passed
through as 20 ms frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from protocol.constants import CHANNELS, SAMPLE_RATE
from protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ENCODER_PRE_SKIP",
    "OPUS_SILENCE_FRAME",
    "OpusHead",
    "OpusTags",
    "opus_packet_samples",
]

#: A 20 ms Opus frame of silence (CELT fullband, as discord.py sends between streams).
OPUS_SILENCE_FRAME: Final = b"\xf8\xff\xfe"
#: libopus' look-ahead at 48 kHz with application ``audio``: the pre-skip a decoder
#: must drop from the start of a stream we encoded.
ENCODER_PRE_SKIP: Final = 312

_HEAD_MAGIC = b"OpusHead"
_TAGS_MAGIC = b"OpusTags"
_HEAD = struct.Struct("<8sBBHIhB")
#: Frame length in samples at 48 kHz for each TOC configuration 0..31.
_CONFIG_SAMPLES: Final = (
    (480, 960, 1920, 2880) * 3  # SILK-only NB/MB/WB: 10, 20, 40, 60 ms
    + (480, 960) * 2  # hybrid SWB/FB: 10, 20 ms
    + (120, 240, 480, 960) * 4  # CELT-only NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)
#: An Opus packet never holds more than 120 ms.
_MAX_PACKET_SAMPLES = 5760


def opus_packet_samples(packet: bytes) -> int:
    """Number of 48 kHz samples (per channel) that *packet* decodes to.

    Raises:
        RemoteProtocolError: if the packet is empty, its frame count byte is
            missing, or it claims more than 120 ms.
    """
    if not packet:
        raise RemoteProtocolError("empty Opus packet")
    toc = packet[0]
    per_frame = _CONFIG_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise RemoteProtocolError("Opus packet with code 3 lacks its frame count")
        frames = packet[1] & 0x3F
        if frames == 0:
            raise RemoteProtocolError("Opus packet with code 3 declares zero frames")
    samples = frames * per_frame
    if samples > _MAX_PACKET_SAMPLES:
        raise RemoteProtocolError(f"Opus packet of {samples} samples exceeds 120 ms")
    return samples


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header (first packet of an Ogg Opus stream).

    Only channel mapping family 0 (mono/stereo) is modelled: that is all the
    engine writes and all our sinks play. Other families keep their mapping
    table bytes in *mapping*.

    Raises (on construction):
        LocalProtocolError: if a field is out of range.
    """

    channels: int = CHANNELS
    pre_skip: int = 0
    input_sample_rate: int = SAMPLE_RATE
    output_gain: int = 0
    mapping_family: int = 0
    mapping: bytes = b""
    version: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= 255:
            raise LocalProtocolError(f"channel count {self.channels} out of range")
        if self.mapping_family == 0 and self.channels > 2:
            raise LocalProtocolError("mapping family 0 allows at most 2 channels")
        if not 0 <= self.pre_skip <= 0xFFFF:
            raise LocalProtocolError(f"pre-skip {self.pre_skip} out of range")
        if not 0 <= self.input_sample_rate <= 0xFFFFFFFF:
            raise LocalProtocolError("input sample rate out of range")
        if not -0x8000 <= self.output_gain <= 0x7FFF:
            raise LocalProtocolError("output gain out of range")

    def __bytes__(self) -> bytes:
        """The 19-byte (family 0) header packet."""
        return (
            _HEAD.pack(
                _HEAD_MAGIC,
                self.version,
                self.channels,
                self.pre_skip,
                self.input_sample_rate,
                self.output_gain,
                self.mapping_family,
            )
            + self.mapping
        )

    @classmethod
    def parse(cls, packet: bytes) -> OpusHead:
        """Parse an identification header packet.

        Raises:
            RemoteProtocolError: if *packet* is not a version-1 OpusHead.
        """
        if len(packet) < _HEAD.size or not packet.startswith(_HEAD_MAGIC):
            raise RemoteProtocolError("not an OpusHead packet")
        _, version, channels, pre_skip, rate, gain, family = _HEAD.unpack_from(packet)
        if version >> 4 != 0:
            raise RemoteProtocolError(f"unsupported OpusHead version {version}")
        try:
            return cls(channels, pre_skip, rate, gain, family, packet[_HEAD.size :], version)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"invalid OpusHead: {exc}") from exc


@dataclass(frozen=True, slots=True)
class OpusTags:
    """The comment header (second packet of an Ogg Opus stream)."""

    vendor: str = "audio-ipc-gateway"
    comments: tuple[str, ...] = field(default=())

    def __bytes__(self) -> bytes:
        """The header packet's bytes."""
        vendor = self.vendor.encode("utf-8")
        parts = [_TAGS_MAGIC, struct.pack("<I", len(vendor)), vendor]
        parts.append(struct.pack("<I", len(self.comments)))
        for comment in self.comments:
            raw = comment.encode("utf-8")
            parts += [struct.pack("<I", len(raw)), raw]
        return b"".join(parts)

    @classmethod
    def parse(cls, packet: bytes) -> OpusTags:
        """Parse a comment header packet.

        Raises:
            RemoteProtocolError: if *packet* is not a well-formed OpusTags.
        """
        if not packet.startswith(_TAGS_MAGIC):
            raise RemoteProtocolError("not an OpusTags packet")
        try:
            offset = len(_TAGS_MAGIC)
            (vendor_length,) = struct.unpack_from("<I", packet, offset)
            offset += 4
            vendor = packet[offset : offset + vendor_length]
            if len(vendor) != vendor_length:
                raise RemoteProtocolError("OpusTags vendor string is truncated")
            offset += vendor_length
            (count,) = struct.unpack_from("<I", packet, offset)
            offset += 4
            comments = []
            for _ in range(count):
                (length,) = struct.unpack_from("<I", packet, offset)
                offset += 4
                raw = packet[offset : offset + length]
                if len(raw) != length:
                    raise RemoteProtocolError("OpusTags comment is truncated")
                offset += length
                comments.append(raw.decode("utf-8", errors="replace"))
        except struct.error as exc:
            raise RemoteProtocolError(f"OpusTags is truncated: {exc}") from exc
        return cls(vendor.decode("utf-8", errors="replace"), tuple(comments))
