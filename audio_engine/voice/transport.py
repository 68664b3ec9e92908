"""The UDP side of a Discord voice connection, pure: IP discovery and RTP packets.

Every voice packet is an RTP header and an AEAD-encrypted Opus frame (Discord, "Voice
Connections", Transport Encryption)::

    80 78 | sequence u16 | timestamp u32 | ssrc u32 | ciphertext + 16-byte tag | nonce u32

Both ``_rtpsize`` modes authenticate the 12-byte header as additional data (no CSRCs,
no extension: we send none), encrypt the whole frame, and use a 32-bit counter as the
nonce, big-endian in the nonce's first four bytes and appended to the packet. The
timestamp counts 48 kHz samples, 960 per 20 ms frame.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from audio_engine.voice.opcodes import EncryptionMode

__all__ = [
    "IP_DISCOVERY_SIZE",
    "RTP_HEADER_SIZE",
    "SAMPLES_PER_FRAME",
    "SECRET_KEY_SIZE",
    "InvalidDiscoveryResponse",
    "RtpPacketizer",
    "TransportEncryptor",
    "ip_discovery_request",
    "parse_ip_discovery_response",
]

#: RTP version 2, no padding, extension or CSRCs.
_RTP_FLAGS: Final = 0x80
#: Discord's payload type for Opus.
_PAYLOAD_TYPE: Final = 0x78
RTP_HEADER_SIZE: Final = 12
#: 20 ms at 48 kHz: the RTP timestamp step per frame.
SAMPLES_PER_FRAME: Final = 960
#: Both AEAD modes take a 32-byte key (``secret_key`` of op 4).
SECRET_KEY_SIZE: Final = 32
#: Size of both IP discovery packets: type, length, SSRC, 64-byte address, port.
IP_DISCOVERY_SIZE: Final = 74
_DISCOVERY_REQUEST: Final = 0x1
_DISCOVERY_RESPONSE: Final = 0x2
_DISCOVERY_LENGTH: Final = 70
_HEADER = struct.Struct(">BBHII")


class InvalidDiscoveryResponse(ValueError):
    """A UDP packet is not a valid IP discovery response for our SSRC."""


def ip_discovery_request(ssrc: int) -> bytes:
    """The 74-byte IP discovery request for *ssrc* (address and port left zero)."""
    return struct.pack(">HHI", _DISCOVERY_REQUEST, _DISCOVERY_LENGTH, ssrc) + bytes(66)


def parse_ip_discovery_response(data: bytes, ssrc: int) -> tuple[str, int]:
    """The external (address, port) in an IP discovery response to *ssrc*.

    Raises:
        InvalidDiscoveryResponse: if *data* is not a response to *ssrc* carrying an IP
            address and a port.
    """
    if len(data) != IP_DISCOVERY_SIZE:
        raise InvalidDiscoveryResponse(f"discovery response of {len(data)} bytes, not 74")
    kind, length, answered = struct.unpack_from(">HHI", data)
    if (kind, length) != (_DISCOVERY_RESPONSE, _DISCOVERY_LENGTH) or answered != ssrc:
        raise InvalidDiscoveryResponse(
            f"not a discovery response to SSRC {ssrc} (type {kind}, SSRC {answered})")
    raw_address = data[8:72].split(b"\x00", 1)[0]
    try:
        address = str(ipaddress.ip_address(raw_address.decode("ascii")))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidDiscoveryResponse(f"discovery response address {raw_address!r}") from exc
    (port,) = struct.unpack_from(">H", data, 72)
    if port == 0:
        raise InvalidDiscoveryResponse("discovery response port 0")
    return address, port


class TransportEncryptor:
    """Seals RTP payloads with one of the ``_rtpsize`` AEAD modes and its nonce counter.

    Raises (on building):
        ValueError: if *secret_key* is not 32 bytes.
    """

    __slots__ = ("_aes", "_key", "_nonce", "mode")

    def __init__(self, mode: EncryptionMode, secret_key: bytes, *, nonce: int = 0) -> None:
        if len(secret_key) != SECRET_KEY_SIZE:
            raise ValueError(f"secret key of {len(secret_key)} bytes, not {SECRET_KEY_SIZE}")
        self.mode = mode
        self._key = bytes(secret_key)
        self._aes = AESGCM(self._key) if mode is EncryptionMode.AEAD_AES256_GCM_RTPSIZE else None
        self._nonce = nonce & 0xFFFF_FFFF

    def seal(self, header: bytes, payload: bytes) -> bytes:
        """``header`` + encrypted ``payload`` + tag + the 4-byte nonce; the counter
        then moves on (wrapping at 2**32, as Discord's clients do)."""
        counter = struct.pack(">I", self._nonce)
        self._nonce = (self._nonce + 1) & 0xFFFF_FFFF
        if self._aes is not None:
            sealed = self._aes.encrypt(counter + bytes(8), payload, header)
        else:
            sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(
                payload, header, counter + bytes(20), self._key)
        return header + sealed + counter


class RtpPacketizer:
    """Turns 20 ms Opus frames into encrypted RTP packets of one SSRC.

    Sequence and timestamp start at random values (RFC 3550) and wrap; ``skip()``
    moves the timestamp over a frame that was not sent, so a receiver hears the gap
    as time that passed rather than audio played early.
    """

    __slots__ = ("_encryptor", "_sequence", "_timestamp", "ssrc")

    def __init__(self, ssrc: int, encryptor: TransportEncryptor, *,
                 sequence: int | None = None, timestamp: int | None = None) -> None:
        self.ssrc = ssrc
        self._encryptor = encryptor
        self._sequence = secrets.randbits(16) if sequence is None else sequence & 0xFFFF
        self._timestamp = secrets.randbits(32) if timestamp is None else timestamp & 0xFFFF_FFFF

    @property
    def mode(self) -> EncryptionMode:
        """The transport encryption mode of the packets."""
        return self._encryptor.mode

    def packetize(self, frame: bytes) -> bytes:
        """The encrypted RTP packet carrying *frame* (one 20 ms Opus frame)."""
        header = _HEADER.pack(_RTP_FLAGS, _PAYLOAD_TYPE, self._sequence, self._timestamp,
                              self.ssrc)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFF_FFFF
        return self._encryptor.seal(header, frame)

    def skip(self) -> None:
        """Account for one frame's time without sending it."""
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFF_FFFF
