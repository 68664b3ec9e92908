from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    ENCODER_PRE_SKIP,
    FLAG_BOS,
    FLAG_EOS,
    NEED_DATA,
    AudioPacket,
    LocalProtocolError,
    OggOpusReader,
    OggOpusWriter,
    OggPage,
    OggPageReader,
    OpusHead,
    OpusPacket,
    OpusStreamStart,
    OpusTags,
    RemoteProtocolError,
    StreamDecoder,
    build_page,
    ogg_crc,
    opus_packet_samples,
    single_packet_page,
)

from .capture import OGG_SESSIONS, capture_bytes


def reference_crc(data: bytes) -> int:
    """Bit-by-bit CRC straight from RFC 3533's description."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


@pytest.mark.parametrize("size", [0, 1, 3, 27, 255, 1000])
def test_crc_matches_the_reference(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert ogg_crc(data) == reference_crc(data)


def test_crc_of_a_known_page_from_the_go_capture() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(capture_bytes())
    packet = next(m for m in decoder.events() if isinstance(m, AudioPacket))
    page = packet.payload[:47]
    zeroed = page[:22] + b"\0\0\0\0" + page[26:]
    assert ogg_crc(zeroed) == struct.unpack_from("<I", page, 22)[0]


def read_all(reader: OggPageReader) -> list[OggPage]:
    pages = []
    while (page := reader.next_page()) is not NEED_DATA:
        assert isinstance(page, OggPage)
        pages.append(page)
    return pages


def test_build_and_parse_a_page() -> None:
    raw = build_page([b"a" * 300, b"", b"b" * 255], granule_position=960, serial=7,
                     sequence=3, flags=FLAG_EOS)
    reader = OggPageReader()
    reader.receive_data(raw)
    (page,) = read_all(reader)
    assert page.segments == bytes([255, 45, 0, 255, 0])
    assert page.packets() == [b"a" * 300, b"", b"b" * 255]
    assert (page.granule_position, page.serial, page.sequence) == (960, 7, 3)
    assert page.eos and not page.bos and not page.continued and not page.ends_open
    assert bytes(page) == raw


def test_page_with_too_many_segments_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="lacing values"):
        build_page([b"x" * 255 * 255], granule_position=0, serial=1, sequence=0)


def test_reader_resyncs_after_garbage_and_a_corrupt_page() -> None:
    good = build_page([b"hello"], granule_position=1, serial=1, sequence=0)
    bad = bytearray(build_page([b"world"], granule_position=2, serial=1, sequence=1))
    bad[-1] ^= 0xFF
    reader = OggPageReader()
    reader.receive_data(b"junkOg" + good + bytes(bad) + b"Og" + good)
    pages = read_all(reader)
    assert [p.packets() for p in pages] == [[b"hello"], [b"hello"]]
    assert reader.crc_failures == 1
    assert reader.skipped_bytes == 6 + len(bad) + 2


def test_reader_keeps_a_possible_capture_prefix() -> None:
    page = build_page([b"x"], granule_position=0, serial=1, sequence=0)
    reader = OggPageReader()
    reader.receive_data(b"garbageOg")
    assert reader.next_page() is NEED_DATA
    reader.receive_data(page[2:])
    assert [p.packets() for p in read_all(reader)] == [[b"x"]]


def opus_frame(index: int) -> bytes:
    # TOC 0xFC: CELT fullband 20 ms, stereo, one frame; then filler bytes.
    return bytes([0xFC]) + bytes([index % 256]) * (50 + index % 200)


def drain(reader: OggOpusReader) -> list[OpusStreamStart | OpusPacket]:
    out = []
    while (event := reader.next_event()) is not NEED_DATA:
        assert isinstance(event, OpusStreamStart | OpusPacket)
        out.append(event)
    return out


def test_writer_stream_layout() -> None:
    writer = OggOpusWriter(0x1234)
    data = writer.header_pages + writer.audio_page(opus_frame(0)) + writer.audio_page(
        opus_frame(1), eos=True
    )
    reader = OggPageReader()
    reader.receive_data(data)
    pages = read_all(reader)
    assert [p.flags for p in pages] == [FLAG_BOS, 0, 0, FLAG_EOS]
    assert [p.sequence for p in pages] == [0, 1, 2, 3]
    assert [p.granule_position for p in pages] == [0, 0, 960, 1920]
    assert {p.serial for p in pages} == {0x1234}
    assert OpusHead.parse(pages[0].packets()[0]) == OpusHead(pre_skip=ENCODER_PRE_SKIP)
    assert OpusTags.parse(pages[1].packets()[0]).vendor
    with pytest.raises(LocalProtocolError):
        writer.audio_page(opus_frame(2))


def test_opus_reader_yields_audio_packets_only() -> None:
    writer = OggOpusWriter(5)
    frames = [opus_frame(i) for i in range(20)]
    data = writer.header_pages + b"".join(writer.audio_page(f) for f in frames)
    reader = OggOpusReader()
    reader.receive_data(data)
    events = drain(reader)
    assert events[0] == OpusStreamStart(5, OpusHead(pre_skip=ENCODER_PRE_SKIP))
    assert [e.data for e in events[1:] if isinstance(e, OpusPacket)] == frames
    assert [e.granule_position for e in events[1:]] == [960 * (i + 1) for i in range(20)]


def test_opus_reader_follows_a_new_logical_stream_mid_session() -> None:
    first, second = OggOpusWriter(1), OggOpusWriter(2)
    data = (
        first.header_pages
        + first.audio_page(opus_frame(1))
        + second.header_pages
        + second.audio_page(opus_frame(2))
    )
    reader = OggOpusReader()
    reader.receive_data(data)
    events = drain(reader)
    assert [type(e).__name__ for e in events] == [
        "OpusStreamStart", "OpusPacket", "OpusStreamStart", "OpusPacket"
    ]
    assert [e.serial for e in events] == [1, 1, 2, 2]
    assert reader.streams == 2


def test_opus_reader_joins_a_stream_in_progress() -> None:
    writer = OggOpusWriter(9)
    writer.audio_page(opus_frame(0))  # sent before we joined
    reader = OggOpusReader()
    reader.receive_data(writer.audio_page(opus_frame(1)))
    assert drain(reader) == [OpusStreamStart(9, None), OpusPacket(opus_frame(1), 9, 1920)]


def test_opus_reader_reassembles_packets_spanning_pages() -> None:
    big = bytes([0xFC]) + os.urandom(700)
    # Split the packet by hand across three pages: 255+255 | 191 (end).
    p1 = OggPage(0, -1, 3, 2, bytes([255, 255]), big[:510])
    p2 = OggPage(1, -1, 3, 3, bytes([191]), big[510:])
    writer = OggOpusWriter(3)
    reader = OggOpusReader()
    reader.receive_data(writer.header_pages + bytes(p1) + bytes(p2))
    events = drain(reader)
    assert events[1] == OpusPacket(big, 3, -1)


def test_opus_reader_drops_a_continuation_without_its_start() -> None:
    tail = OggPage(1, 960, 3, 3, bytes([10, 20]), b"t" * 10 + bytes([0xFC]) * 20)
    reader = OggOpusReader()
    reader.receive_data(bytes(tail))
    events = drain(reader)
    assert events == [OpusStreamStart(3, None), OpusPacket(bytes([0xFC]) * 20, 3, 960)]
    assert reader.dropped_pieces == 1


def test_opus_reader_skips_streams_that_are_not_opus() -> None:
    vorbis = build_page([b"\x01vorbis" + bytes(23)], granule_position=0, serial=4,
                        sequence=0, flags=FLAG_BOS)
    audio = build_page([b"\x00abc"], granule_position=0, serial=4, sequence=1)
    reader = OggOpusReader()
    reader.receive_data(vorbis + audio)
    assert drain(reader) == []
    assert reader.foreign_streams == 1


def test_opus_reader_on_the_go_capture_follows_the_second_stream() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(capture_bytes())
    readers = {sid: OggOpusReader() for sid in OGG_SESSIONS}
    for message in decoder.events():
        if isinstance(message, AudioPacket) and message.session_id in readers:
            readers[message.session_id].receive_data(message.payload)
    starts = {}
    for sid, reader in readers.items():
        events = drain(reader)
        starts[sid] = [e for e in events if isinstance(e, OpusStreamStart)]
        packets = [e for e in events if isinstance(e, OpusPacket)]
        assert all(opus_packet_samples(p.data) == 960 for p in packets)
        assert reader.crc_failures == 0 and reader.skipped_bytes == 0
    assert len(starts["111111111111111111"]) == 1
    assert len(starts["222222222222222222"]) == 2
    assert starts["222222222222222222"][0].serial != starts["222222222222222222"][1].serial


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=1500), min_size=1, max_size=15), st.data())
def test_written_stream_reads_back_in_any_split(frames: list[bytes], data: st.DataObject) -> None:
    writer = OggOpusWriter(42)
    stream = writer.header_pages + b"".join(writer.audio_page(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = OggOpusReader()
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        reader.receive_data(stream[previous:cut])
        previous = cut
        out += [e.data for e in drain(reader) if isinstance(e, OpusPacket)]
    assert out == frames


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_opus_reader_never_raises_on_garbage(data: bytes) -> None:
    reader = OggOpusReader()
    reader.receive_data(data)
    drain(reader)


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (b"\xfc\x00", 960),  # CELT FB 20 ms, 1 frame
        (b"\xf8\xff\xfe", 960),  # the silence frame
        (b"\xe0", 120),  # CELT NB 2.5 ms
        (b"\x18", 2880),  # SILK NB 60 ms (config 3)
        (b"\xfd", 1920),  # two 20 ms frames (code 1)
        (b"\xff\x03", 2880),  # code 3, three 20 ms frames
        (b"\x60", 480),  # hybrid SWB 10 ms (config 12)
    ],
)
def test_opus_packet_samples(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples


@pytest.mark.parametrize("packet", [b"", b"\xff", b"\xff\x00", b"\x1b\x03"])
def test_invalid_opus_packets_are_remote_errors(packet: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        opus_packet_samples(packet)


def test_opus_head_round_trip_and_errors() -> None:
    head = OpusHead(channels=1, pre_skip=3840, input_sample_rate=44100, output_gain=-256)
    assert OpusHead.parse(bytes(head)) == head
    assert len(bytes(head)) == 19
    with pytest.raises(RemoteProtocolError):
        OpusHead.parse(b"OpusTags" + bytes(11))
    with pytest.raises(RemoteProtocolError):
        OpusHead.parse(b"OpusHead\x01\x03" + bytes(9))  # 3 channels with family 0


def test_opus_tags_round_trip_and_truncation() -> None:
    tags = OpusTags("vendor", ("TITLE=x", "ARTIST=y"))
    assert OpusTags.parse(bytes(tags)) == tags
    with pytest.raises(RemoteProtocolError):
        OpusTags.parse(bytes(tags)[:-3])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 2**63 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 2**32 - 1), st.sampled_from([0, FLAG_BOS, FLAG_EOS]))
def test_single_packet_page_is_build_page(packet: bytes, granule: int, serial: int,
                                          sequence: int, flags: int) -> None:
    assert single_packet_page(
        packet, granule_position=granule, serial=serial, sequence=sequence, flags=flags
    ) == build_page([packet], granule_position=granule, serial=serial, sequence=sequence,
                    flags=flags)
