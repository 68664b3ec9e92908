"""Ogg pages (RFC 3533): building them, checking them, and cutting a byte stream into them.

A page is a 27-byte header, a segment table of lacing values, and a body::

    "OggS" | version=0 | flags | granule i64 | serial u32 | sequence u32 | crc u32
           | n u8 | lacing[n] | body

all little-endian. A packet is a run of lacing values ending in one below 255; a
page whose table ends in 255 leaves its last packet to be continued on the next
page (flag 0x01). The CRC is CRC-32 with polynomial 0x04C11DB7, no reflection, zero
initial value and no final xor, computed over the page with the CRC field zeroed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import anycrc  # type: ignore[import-untyped]  # a C extension without type information

from protocol.errors import LocalProtocolError
from protocol.need_data import NEED_DATA, NeedData

__all__ = [
    "FLAG_BOS",
    "FLAG_CONTINUED",
    "FLAG_EOS",
    "MAX_PAGE_BODY_SIZE",
    "MAX_PAGE_SIZE",
    "OggPage",
    "OggPageReader",
    "RawPage",
    "build_page",
    "ogg_crc",
    "single_packet_page",
]

#: Header flag: the page's first packet continues one from the previous page.
FLAG_CONTINUED: Final = 0x01
#: Header flag: first page of a logical stream.
FLAG_BOS: Final = 0x02
#: Header flag: last page of a logical stream.
FLAG_EOS: Final = 0x04

_CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIIIB")
_CRC_FIELD = struct.Struct("<I")
_SINGLE_BYTES = tuple(bytes((value,)) for value in range(256))
_HEADER_SIZE = _HEADER.size  # 27
_CRC_OFFSET = 22
_MAX_SEGMENTS = 255
#: Largest body one page can carry: 255 lacing values of 255.
MAX_PAGE_BODY_SIZE: Final = _MAX_SEGMENTS * 255
#: Largest possible page, header and segment table included (65 307 bytes).
MAX_PAGE_SIZE: Final = _HEADER_SIZE + _MAX_SEGMENTS + MAX_PAGE_BODY_SIZE


#: Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, no reflection, zero initial
#: value, no final xor. anycrc computes any such CRC in C (about 0.5 µs for a page):
#: every 20 ms page of every session goes through it.
_OGG_CRC: Final = anycrc.CRC(width=32, poly=0x04C11DB7, init=0, refin=False, refout=False,
                              xorout=0)


def ogg_crc(data: bytes | bytearray | memoryview) -> int:
    """Ogg's page checksum of *data* (computed with the CRC field zeroed)."""
    return int(_OGG_CRC.calc(bytes(data) if isinstance(data, memoryview) else data))


def _lacing(packet_sizes: list[int] | tuple[int, ...], continues: bool) -> bytes:
    values = bytearray()
    for index, size in enumerate(packet_sizes):
        full, rest = divmod(size, 255)
        values += b"\xff" * full
        last = index == len(packet_sizes) - 1
        if not (last and continues):
            values.append(rest)
        elif rest:
            raise LocalProtocolError(
                "a continued packet must fill its page's last segment"
            )
    return bytes(values)


def build_page(
    packets: list[bytes] | tuple[bytes, ...],
    *,
    granule_position: int,
    serial: int,
    sequence: int,
    flags: int = 0,
) -> bytes:
    """Build one complete page holding whole *packets*, with its CRC.

    Raises:
        LocalProtocolError: if the packets need more than 255 lacing values, or a
            number is out of its field's range.
    """
    lacing = _lacing([len(p) for p in packets], continues=False)
    if len(lacing) > _MAX_SEGMENTS:
        raise LocalProtocolError(
            f"packets of {sum(map(len, packets))} bytes need {len(lacing)} "
            f"lacing values; a page holds {_MAX_SEGMENTS}"
        )
    try:
        header = _HEADER.pack(
            _CAPTURE, 0, flags, granule_position, serial, sequence, 0, len(lacing)
        )
    except struct.error as exc:
        raise LocalProtocolError(f"page field out of range: {exc}") from exc
    page = bytearray(header)
    page += lacing
    for packet in packets:
        page += packet
    struct.pack_into("<I", page, _CRC_OFFSET, ogg_crc(page))
    return bytes(page)


def single_packet_page(
    packet: bytes, *, granule_position: int, serial: int, sequence: int, flags: int = 0
) -> bytes:
    """``build_page`` for exactly one packet, on the hot path of every session (same
    bytes).

    Raises:
        LocalProtocolError: if *packet* does not fit in one page.
    """
    full, rest = divmod(len(packet), 255)
    if full >= _MAX_SEGMENTS:
        raise LocalProtocolError(f"packet of {len(packet)} bytes exceeds one page")
    try:
        page = bytearray(_HEADER.pack(_CAPTURE, 0, flags, granule_position, serial, sequence,
                                      0, full + 1))
    except struct.error as exc:
        raise LocalProtocolError(f"page field out of range: {exc}") from exc
    if full:
        page += b"\xff" * full
    page += _SINGLE_BYTES[rest]
    page += packet
    _CRC_FIELD.pack_into(page, _CRC_OFFSET, _OGG_CRC.calc(page))
    return bytes(page)


@dataclass(frozen=True, slots=True)
class OggPage:
    """One parsed page.

    *segments* is the lacing table; ``packets()`` cuts the body along it.
    """

    flags: int
    granule_position: int
    serial: int
    sequence: int
    segments: bytes
    body: bytes

    @property
    def continued(self) -> bool:
        """The first packet on this page continues one from the previous page."""
        return bool(self.flags & FLAG_CONTINUED)

    @property
    def bos(self) -> bool:
        """First page of a logical stream."""
        return bool(self.flags & FLAG_BOS)

    @property
    def eos(self) -> bool:
        """Last page of a logical stream."""
        return bool(self.flags & FLAG_EOS)

    @property
    def ends_open(self) -> bool:
        """The last packet on this page continues on the next page."""
        return bool(self.segments) and self.segments[-1] == 255

    def packets(self) -> list[bytes]:
        """The body cut along the lacing table; the last piece is partial if
        ``ends_open``."""
        pieces: list[bytes] = []
        offset = 0
        start = 0
        for value in self.segments:
            offset += value
            if value < 255:
                pieces.append(self.body[start:offset])
                start = offset
        if start < offset:
            pieces.append(self.body[start:offset])
        return pieces

    def __bytes__(self) -> bytes:
        """The page's wire bytes, CRC recomputed."""
        header = _HEADER.pack(
            _CAPTURE,
            0,
            self.flags,
            self.granule_position,
            self.serial,
            self.sequence,
            0,
            len(self.segments),
        )
        page = bytearray(header)
        page += self.segments
        page += self.body
        struct.pack_into("<I", page, _CRC_OFFSET, ogg_crc(page))
        return bytes(page)


#: A page as ``OggPageReader.receive_pages`` returns it: (flags, granule, serial,
#: sequence, lacing table, body). A plain tuple: this is every sink's hot path.
RawPage = tuple[int, int, int, int, bytes, bytes]

_FIELDS = struct.Struct("<BBqIIIB")
_ZERO_FIELD = b"\0\0\0\0"


def _page_crc(source: bytes | bytearray, start: int, end: int) -> int:
    """Ogg CRC of ``source[start:end]`` with its CRC field taken as zero."""
    crc = _OGG_CRC.calc(source[start : start + _CRC_OFFSET])
    crc = _OGG_CRC.calc(_ZERO_FIELD, crc)
    return int(_OGG_CRC.calc(source[start + _CRC_OFFSET + 4 : end], crc))


class OggPageReader:
    """Cuts an Ogg byte stream, split anywhere, into verified pages.

    Bytes before a capture pattern and pages failing their CRC are skipped (and
    counted in ``skipped_bytes`` / ``crc_failures``); the reader resynchronises on
    the next ``OggS``. It holds at most one incomplete page (``MAX_PAGE_SIZE``)
    beyond what was fed and not drained.

    Two ways to read: ``receive_data`` + ``next_page`` (one ``OggPage`` at a time),
    or ``receive_pages`` (every complete page of the data at once, as ``RawPage``
    tuples, without copying whole chunks when they hold whole pages).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ready: list[RawPage] = []
        #: Bytes dropped while looking for a page start.
        self.skipped_bytes = 0
        #: Pages dropped because their CRC did not match.
        self.crc_failures = 0
        #: Pages returned.
        self.pages = 0

    def receive_data(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def reset(self) -> None:
        """Forget any buffered bytes (counters are kept)."""
        self._buffer.clear()
        self._ready.clear()

    def next_page(self) -> OggPage | NeedData:
        """Return the next verified page, or ``NEED_DATA``. Never raises."""
        if not self._ready:
            self._ready = self._scan_buffer()
            self._ready.reverse()
            if not self._ready:
                return NEED_DATA
        flags, granule, serial, sequence, segments, body = self._ready.pop()
        return OggPage(flags, granule, serial, sequence, segments, body)

    def receive_pages(self, data: bytes) -> list[RawPage]:
        """Feed *data* and return every page it completes, in order. Never raises.

        Must not be mixed with pages still pending from ``next_page``.
        """
        if self._buffer:
            self._buffer += data
            return self._scan_buffer()
        pages, consumed = self._scan(data)
        if consumed < len(data):
            self._buffer += data[consumed:]
        return pages

    def _scan_buffer(self) -> list[RawPage]:
        pages, consumed = self._scan(self._buffer)
        if consumed:
            del self._buffer[:consumed]
        return pages

    def _scan(self, source: bytes | bytearray) -> tuple[list[RawPage], int]:
        """Complete pages of *source*, and how many bytes they (and skipped
        garbage) took."""
        pages: list[RawPage] = []
        size = len(source)
        position = 0
        while True:
            if not source.startswith(_CAPTURE, position):
                found = source.find(_CAPTURE, position)
                if found < 0:
                    # Keep a tail that may be the beginning of "OggS".
                    keep = min(3, size - position)
                    self.skipped_bytes += size - keep - position
                    position = size - keep
                    break
                self.skipped_bytes += found - position
                position = found
            if size - position < _HEADER_SIZE:
                break
            version, flags, granule, serial, sequence, crc, count = _FIELDS.unpack_from(
                source, position + 4
            )
            table_end = position + _HEADER_SIZE + count
            if size < table_end:
                break
            segments = bytes(source[position + _HEADER_SIZE : table_end])
            end = table_end + sum(segments)
            if size < end:
                break
            if version != 0 or _page_crc(source, position, end) != crc:
                self.crc_failures += 1
                self.skipped_bytes += 1
                position += 1
                continue
            pages.append((flags, granule, serial, sequence, segments,
                          bytes(source[table_end:end])))
            position = end
        self.pages += len(pages)
        return pages, position
