"""Ogg Opus streams: writing one 20 ms frame per page, and reading packets back.

The writer produces exactly what the socket carries for ``opus``/``web`` sessions:
a BOS page holding OpusHead, a page holding OpusTags, then one page per Opus
packet whose granule position grows by the packet's samples (960 per 20 ms).

The reader is what a sink needs: feed it payload bytes cut anywhere, get Opus
packets out. It follows a new logical stream appearing mid-session (the Go engine
starts one on every retry), joins a stream already in progress, and skips the
header packets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

from protocol.constants import SAMPLES_PER_FRAME
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.need_data import NEED_DATA, NeedData
from protocol.ogg import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    MAX_PAGE_BODY_SIZE,
    OggPageReader,
    RawPage,
    build_page,
    single_packet_page,
)
from protocol.opus import ENCODER_PRE_SKIP, OpusHead, OpusTags

__all__ = [
    "MAX_OPUS_PACKET_SIZE",
    "OggOpusReader",
    "OggOpusWriter",
    "OpusPacket",
    "OpusStreamStart",
]

#: A packet spread over more pages than this is dropped. Opus packets are at most
#: a few KB (120 ms at 510 kb/s is under 8 KB); this bounds a reader fed garbage.
MAX_OPUS_PACKET_SIZE: Final = 64 * 1024


class OggOpusWriter:
    """Writes one Ogg Opus logical stream, one packet per page.

    Args:
        serial: the stream's serial number (choose it at random per stream).
        head: the identification header; by default stereo 48 kHz with libopus'
            312-sample pre-skip.
        tags: the comment header.

    The header pages are built once and can be sent again (``header_pages``) to a
    consumer that joins mid-stream. Audio pages continue from sequence 2.
    """

    def __init__(
        self,
        serial: int,
        *,
        head: OpusHead | None = None,
        tags: OpusTags | None = None,
    ) -> None:
        if not 0 <= serial <= 0xFFFFFFFF:
            raise LocalProtocolError(f"serial {serial} out of range")
        self.serial = serial
        self.head = head if head is not None else OpusHead(pre_skip=ENCODER_PRE_SKIP)
        self.tags = tags if tags is not None else OpusTags()
        self.header_pages = build_page(
            [bytes(self.head)], granule_position=0, serial=serial, sequence=0, flags=FLAG_BOS
        ) + build_page([bytes(self.tags)], granule_position=0, serial=serial, sequence=1)
        #: Granule position of the last audio page written (48 kHz samples).
        self.granule_position = 0
        #: Sequence number the next page will carry.
        self.next_sequence = 2
        #: True once a page with the EOS flag was written.
        self.ended = False

    def audio_page(
        self, packet: bytes, samples: int = SAMPLES_PER_FRAME, *, eos: bool = False
    ) -> bytes:
        """Return the page carrying *packet*, advancing the granule by *samples*.

        Raises:
            LocalProtocolError: after the EOS page, or if *packet* does not fit in
                one page (more than 65 024 bytes).
        """
        if self.ended:
            raise LocalProtocolError("stream already ended with an EOS page")
        if len(packet) >= MAX_PAGE_BODY_SIZE:
            raise LocalProtocolError(f"Opus packet of {len(packet)} bytes exceeds one page")
        self.granule_position += samples
        page = single_packet_page(
            packet,
            granule_position=self.granule_position,
            serial=self.serial,
            sequence=self.next_sequence,
            flags=FLAG_EOS if eos else 0,
        )
        self.next_sequence += 1
        self.ended = eos
        return page

    def rewind(self, granule_position: int, next_sequence: int) -> None:
        """Continue the stream from an earlier point: pages built after it were
        never sent (a seek discarded them), so numbering resumes where the last
        page actually sent left off, and a discarded EOS no longer counts.

        Raises:
            LocalProtocolError: if the point lies before the header pages.
        """
        if next_sequence < 2 or granule_position < 0:
            raise LocalProtocolError("cannot rewind into the header pages")
        self.granule_position = granule_position
        self.next_sequence = next_sequence
        self.ended = False

    def end_page(self) -> bytes:
        """Return an empty EOS page, ending the stream without another packet.

        Raises:
            LocalProtocolError: if the stream already ended.
        """
        if self.ended:
            raise LocalProtocolError("stream already ended with an EOS page")
        page = build_page(
            (),
            granule_position=self.granule_position,
            serial=self.serial,
            sequence=self.next_sequence,
            flags=FLAG_EOS,
        )
        self.next_sequence += 1
        self.ended = True
        return page


@dataclass(frozen=True, slots=True)
class OpusStreamStart:
    """A new Ogg Opus logical stream begins.

    *head* is None when the reader joined the stream after its header pages; the
    stream is then assumed to be 48 kHz stereo Opus.
    """

    serial: int
    head: OpusHead | None


@dataclass(frozen=True, slots=True)
class OpusPacket:
    """One Opus packet. *granule_position* is the page's when the packet is the last
    one completed on that page, else -1."""

    data: bytes
    serial: int
    granule_position: int = -1


class OggOpusReader:
    """Incremental reader of Ogg Opus payload bytes (sans-I/O).

    Never raises on bad input: damaged pages, packets cut by a lost page and
    streams that are not Opus are skipped and counted.

    Two ways to read: ``receive_data`` + ``next_event`` (typed values), or
    ``receive_packets`` (everything the data completes at once, audio packets as
    plain ``bytes``: the form every sink uses on its hot path).
    """

    def __init__(self) -> None:
        self._pages = OggPageReader()
        self._pending: deque[OpusStreamStart | OpusPacket] = deque()
        self._serial: int | None = None
        self._partial: bytearray | None = None
        self._expect_head = False
        self._expect_tags = False
        self._foreign = False
        #: Opus streams started (including joins without headers).
        self.streams = 0
        #: Audio packets returned.
        self.packets = 0
        #: Packet pieces dropped: a continuation without its start, or an oversize packet.
        self.dropped_pieces = 0
        #: Logical streams skipped because they are not Opus.
        self.foreign_streams = 0

    @property
    def skipped_bytes(self) -> int:
        """Bytes skipped while resynchronising on page boundaries."""
        return self._pages.skipped_bytes

    @property
    def crc_failures(self) -> int:
        """Pages dropped for a bad CRC."""
        return self._pages.crc_failures

    def receive_data(self, data: bytes) -> None:
        """Append payload bytes, cut anywhere (then call ``next_event``)."""
        for page in self._pages.receive_pages(data):
            self._consume(page, self._pending, typed=True)

    def receive_packets(self, data: bytes) -> list[bytes | OpusStreamStart]:
        """Feed payload bytes and return, in order, every audio packet (as
        ``bytes``) and stream start they complete. Must not be mixed with events
        still pending from ``receive_data``."""
        out: list[bytes | OpusStreamStart] = []
        for page in self._pages.receive_pages(data):
            self._consume(page, out, typed=False)
        return out

    def reset(self) -> None:
        """Forget buffered bytes and the current stream (e.g. after a reconnect)."""
        self._pages.reset()
        self._pending.clear()
        self._serial = None
        self._partial = None
        self._expect_head = self._expect_tags = self._foreign = False

    def next_event(self) -> OpusStreamStart | OpusPacket | NeedData:
        """Return the next stream start or audio packet, or ``NEED_DATA``."""
        return self._pending.popleft() if self._pending else NEED_DATA

    def _start_stream(self, serial: int, bos: bool, out: _Sink) -> None:
        self._serial = serial
        self._partial = None
        self._foreign = False
        self._expect_tags = False
        self._expect_head = bos
        if not bos:
            # Joined mid-stream (or lost the BOS page): assume 48 kHz stereo Opus.
            self.streams += 1
            out.append(OpusStreamStart(serial, None))

    def _consume(self, page: RawPage, out: _Sink, *, typed: bool) -> None:
        flags, granule, serial, _, segments, body = page
        bos = bool(flags & FLAG_BOS)
        if serial != self._serial or bos:
            self._start_stream(serial, bos, out)
        count = len(segments)
        ends_open = count > 0 and segments[-1] == 255
        continued = bool(flags & FLAG_CONTINUED)
        if (count and not continued and not ends_open and self._partial is None
                and segments.count(255) == count - 1):
            # The common page: exactly one whole packet.
            self._packet(body, serial, granule, out, typed)
            return
        pieces = _cut(segments, body)
        if continued and pieces:
            if self._partial is None:
                pieces.pop(0)
                self.dropped_pieces += 1
            else:
                self._partial += pieces[0]
                pieces[0] = bytes(self._partial)
                self._partial = None
        elif self._partial is not None:
            # The page that should have continued this packet was lost.
            self._partial = None
            self.dropped_pieces += 1
        if ends_open and pieces:
            tail = pieces.pop()
            if len(tail) <= MAX_OPUS_PACKET_SIZE:
                self._partial = bytearray(tail)
            else:
                self.dropped_pieces += 1
        last_index = len(pieces) - 1
        for index, piece in enumerate(pieces):
            last = index == last_index and not ends_open
            self._packet(piece, serial, granule if last else -1, out, typed)

    def _packet(self, data: bytes, serial: int, granule: int, out: _Sink, typed: bool) -> None:
        if self._foreign:
            return
        if self._expect_head:
            self._expect_head = False
            try:
                head = OpusHead.parse(data)
            except RemoteProtocolError:
                self._foreign = True
                self.foreign_streams += 1
                return
            self.streams += 1
            self._expect_tags = True
            out.append(OpusStreamStart(serial, head))
            return
        if self._expect_tags:
            self._expect_tags = False
            if data.startswith(b"OpusTags"):
                return
        if not data:
            return
        self.packets += 1
        out.append(OpusPacket(data, serial, granule) if typed else data)


class _Sink(Protocol):
    """Where ``_consume`` puts what it reads: the typed ``deque`` of ``next_event``
    (``OpusStreamStart | OpusPacket``) or the raw list of ``receive_packets``
    (``OpusStreamStart | bytes``); *typed* tells ``_packet`` which one it feeds."""

    def append(self, item: Any, /) -> None:
        """Add one item."""


def _cut(segments: bytes, body: bytes) -> list[bytes]:
    """The body cut along the lacing table; the last piece is partial when the
    table ends in 255."""
    pieces: list[bytes] = []
    offset = 0
    start = 0
    for value in segments:
        offset += value
        if value < 255:
            pieces.append(body[start:offset])
            start = offset
    if start < offset:
        pieces.append(body[start:offset])
    return pieces
