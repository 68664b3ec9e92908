"""The voice gateway's side of DAVE's MLS, for the Discord voice stand-in.

A real voice gateway is the MLS group's *external sender*: it announces its signing key
(op 25) and proposes adding members with Add proposals it signs (op 27); members commit
those. ``davey`` is a member's library only, so this module writes the gateway's part
by hand, from RFC 9420 (MLS) and the DAVE whitepaper:

* ``ExternalSender``: ``signature_key<V>`` (an uncompressed P-256 point) and a basic
  ``Credential`` (type 1, ``identity<V>``).
* An external Add proposal: an ``MLSMessage`` (version mls10, wire format
  ``mls_public_message``) whose ``FramedContent`` names the group (the channel id as 8
  big-endian bytes), epoch, sender ``external`` #0, and the proposal ``Add`` carrying
  the key package the member sent in op 26; signed with ECDSA-P256-SHA256 over
  ``SignContent("MLS 1.0 FramedContentTBS", version || wire_format || content)``
  (no group context for external senders), the signature DER-encoded.
* Op 28 carries a commit ``MLSMessage`` followed by a bare ``Welcome``; the two are told
  apart by parsing the welcome from the end.

Integers are big-endian; ``<V>`` vectors have a QUIC-style variable-length prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["ExternalSender", "split_commit_welcome", "vector"]

_MLS10: Final = 1
_PUBLIC_MESSAGE: Final = 1
_SENDER_EXTERNAL: Final = 2
_CONTENT_PROPOSAL: Final = 2
_PROPOSAL_ADD: Final = 1
_CREDENTIAL_BASIC: Final = 1
#: DAVE protocol version 1 uses MLS_128_DHKEMP256_AES128GCM_SHA256_P256.
_CIPHER_SUITE: Final = 2


def _varint(value: int) -> bytes:
    if value < 1 << 6:
        return bytes((value,))
    if value < 1 << 14:
        return struct.pack(">H", 0x4000 | value)
    if value < 1 << 30:
        return struct.pack(">I", 0x8000_0000 | value)
    raise ValueError(f"vector of {value} bytes is too long for MLS")


def vector(data: bytes) -> bytes:
    """*data* as an MLS ``opaque <V>`` vector."""
    return _varint(len(data)) + data


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """(value, offset after it); raises IndexError or ValueError on bad input."""
    first = data[offset]
    prefix = first >> 6
    if prefix == 0:
        return first, offset + 1
    if prefix == 1:
        return struct.unpack_from(">H", data, offset)[0] & 0x3FFF, offset + 2
    if prefix == 2:
        return struct.unpack_from(">I", data, offset)[0] & 0x3FFF_FFFF, offset + 4
    raise ValueError("invalid MLS varint prefix")


class ExternalSender:
    """The voice gateway's MLS signing identity for one call."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def package(self) -> bytes:
        """Op 25's payload: the serialized ``ExternalSender``."""
        return (vector(self.public_key) + struct.pack(">H", _CREDENTIAL_BASIC)
                + vector(b"\x00"))

    def add_proposal(self, key_package: bytes, group_id: int, epoch: int) -> bytes:
        """A signed external Add proposal for the member whose op 26 was *key_package*."""
        content = (vector(struct.pack(">Q", group_id)) + struct.pack(">Q", epoch)
                   + bytes((_SENDER_EXTERNAL,)) + struct.pack(">I", 0) + vector(b"")
                   + bytes((_CONTENT_PROPOSAL,)) + struct.pack(">H", _PROPOSAL_ADD)
                   + key_package)
        framing = struct.pack(">HH", _MLS10, _PUBLIC_MESSAGE)
        to_sign = vector(b"MLS 1.0 FramedContentTBS") + vector(framing + content)
        signature = self._key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        return framing + content + vector(signature)

    def proposals(self, messages: list[bytes]) -> bytes:
        """Op 27's payload appending *messages*: operation type 0, then the messages
        as one vector."""
        return b"\x00" + vector(b"".join(messages))


def _welcome_ends_at(data: bytes, start: int) -> bool:
    """Whether a ``Welcome`` (cipher suite, ``secrets<V>``, ``encrypted_group_info<V>``)
    starting at *start* ends exactly at the end of *data*."""
    try:
        if struct.unpack_from(">H", data, start)[0] != _CIPHER_SUITE:
            return False
        offset = start + 2
        for _ in range(2):
            length, offset = _read_varint(data, offset)
            offset += length
        return offset == len(data)
    except (IndexError, ValueError, struct.error):
        return False


def _candidates(payload: bytes) -> Iterator[int]:
    for start in range(4, len(payload) - 4):
        if _welcome_ends_at(payload, start):
            yield start


def split_commit_welcome(payload: bytes) -> list[tuple[bytes, bytes | None]]:
    """The ways op 28's *payload* may split into (commit, welcome): a welcome is found
    by parsing from candidate offsets; the caller tries them in order (a false
    candidate fails to process). The last choice is the whole payload as a commit."""
    splits: list[tuple[bytes, bytes | None]] = [
        (payload[:start], payload[start:]) for start in _candidates(payload)]
    splits.append((payload, None))
    return splits
