from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    NEED_DATA,
    AudioPacket,
    DecodedMessage,
    Discarded,
    Event,
    EventType,
    LocalProtocolError,
    RemoteProtocolError,
    StreamDecoder,
    TruncatedStream,
)

from .capture import (
    EXPECTED_ERROR_MESSAGE,
    EXPECTED_EVENTS,
    EXPECTED_PACKETS,
    EXPECTED_PAYLOAD_BYTES,
    OGG_SESSIONS,
    capture_bytes,
)


def decode_in_chunks(data: bytes, sizes: list[int]) -> list[DecodedMessage]:
    decoder = StreamDecoder()
    out: list[DecodedMessage] = []
    offset = 0
    for size in sizes:
        decoder.receive_data(data[offset : offset + size])
        offset += size
        out += decoder.events()
    decoder.receive_data(data[offset:])
    out += decoder.events()
    assert decoder.buffered_size == 0
    return out


def check_capture(messages: list[DecodedMessage]) -> None:
    events = [m for m in messages if isinstance(m, Event)]
    assert [(e.type, e.session_id) for e in events] == EXPECTED_EVENTS
    assert events[2].message == EXPECTED_ERROR_MESSAGE
    assert not [m for m in messages if isinstance(m, Discarded)]
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for m in messages:
        if isinstance(m, AudioPacket):
            counts[m.session_id] += 1
            sizes[m.session_id] += len(m.payload)
            if m.session_id in OGG_SESSIONS:
                assert m.payload.startswith(b"OggS")
    assert counts == EXPECTED_PACKETS
    assert sizes == EXPECTED_PAYLOAD_BYTES


def test_capture_fed_whole() -> None:
    check_capture(decode_in_chunks(capture_bytes(), []))


def test_capture_fed_one_byte_at_a_time() -> None:
    data = capture_bytes()
    check_capture(decode_in_chunks(data, [1] * len(data)))


@pytest.mark.parametrize("seed", range(8))
def test_capture_fed_in_random_splits(seed: int) -> None:
    data = capture_bytes()
    rng = random.Random(seed)
    sizes = []
    total = 0
    while total < len(data):
        size = rng.choice([1, 2, 3, 7, 28, 100, 1000, 4096, 70000])
        sizes.append(size)
        total += size
    check_capture(decode_in_chunks(data, sizes))


def test_capture_with_trailing_partial_message_waits_for_more() -> None:
    data = capture_bytes() + bytes(AudioPacket("444", b"abc"))[:-1]
    decoder = StreamDecoder()
    decoder.receive_data(data)
    check_capture(decoder.events())
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered_size == 30


def test_event_order_relative_to_audio_is_preserved() -> None:
    messages = decode_in_chunks(capture_bytes(), [])
    kinds = [
        (type(m).__name__, m.session_id) for m in messages if not isinstance(m, Discarded)
    ]
    first_audio_111 = kinds.index(("AudioPacket", "111111111111111111"))
    assert kinds.index(("Event", "111111111111111111")) < first_audio_111


def test_stray_newlines_are_skipped() -> None:
    line = b'{"type":"ready","session_id":"a"}\n'
    packet = bytes(AudioPacket("a", b"xyz"))
    decoder = StreamDecoder()
    decoder.receive_data(b"\n\n" + line + b"\n" + packet + b"\n\n")
    assert decoder.events() == [Event(EventType.READY, "a"), AudioPacket("a", b"xyz")]
    assert decoder.buffered_size == 0


def test_unescaped_go_line_split_right_after_an_inner_brace() -> None:
    line = (
        b'{"type":"error","session_id":"x","message":"a {b}\n'
        b'c"}\n'
    )
    decoder = StreamDecoder()
    decoder.receive_data(line[: line.index(b"}\n") + 2])
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(line[line.index(b"}\n") + 2 :])
    assert decoder.events() == [Event(EventType.ERROR, "x", "a {b}\nc")]


def test_event_at_the_end_of_the_buffer_is_delivered_without_waiting() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(b'{"type":"finished","session_id":"a"}\n')
    assert decoder.next_event() == Event(EventType.FINISHED, "a")


def test_go_line_with_message_is_recovered_at_the_end_of_the_buffer() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(b'{"type":"error","session_id":"a","message":"no "json" here"}\n')
    assert decoder.next_event() == Event(EventType.ERROR, "a", 'no "json" here')


def test_our_extra_keys_are_decoded() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(bytes(Event(EventType.READY, "a", extra={"duration": 12.5})))
    event = decoder.next_event()
    assert isinstance(event, Event) and event.extra == {"duration": 12.5}


def test_nested_extra_values_are_dropped_but_the_event_kept() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(b'{"type":"ready","session_id":"a","info":{"x":1},"n":2}\n')
    assert decoder.next_event() == Event(EventType.READY, "a", extra={"n": 2})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type":"progress","session_id":"a"}\n', "unknown type 'progress'"),
        (b'{"type":"ready","session_id":"a b"}\n', "invalid session id"),
        (b'{"type":"ready"}\n', "without a string type and session_id"),
        (b'{"type":"ready","session_id":"a","message":5}\n', "non-string message"),
        (b"{garbage}\n", "malformed event line"),
        (struct.pack(">I", 27) + b" " * 24 + b"abc", "invalid session id"),
        (struct.pack(">I", 24) + b"\xff" * 24, "invalid session id"),
    ],
)
def test_well_framed_unusable_messages_are_discarded_and_sync_is_kept(
    data: bytes, reason: str
) -> None:
    decoder = StreamDecoder()
    decoder.receive_data(data + bytes(AudioPacket("ok", b"next")))
    first = decoder.next_event()
    assert isinstance(first, Discarded)
    assert reason in first.reason
    assert first.size == len(data)
    assert decoder.next_event() == AudioPacket("ok", b"next")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (struct.pack(">I", 23) + b"x" * 23, "shorter than the 24-byte"),
        (struct.pack(">I", 0), "shorter than the 24-byte"),
        (b"\x00\x20\x00\x00", "exceeds the limit"),
        (b"OggS", "exceeds the limit"),
    ],
)
def test_bad_lengths_are_remote_protocol_errors(data: bytes, words: str) -> None:
    decoder = StreamDecoder()
    decoder.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=words):
        decoder.next_event()
    with pytest.raises(LocalProtocolError):
        decoder.next_event()
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"more")


def test_overlong_event_line_is_a_remote_protocol_error() -> None:
    decoder = StreamDecoder(max_event_line_size=64)
    decoder.receive_data(b'{"type":"error","session_id":"a","message":"' + b"x" * 100)
    with pytest.raises(RemoteProtocolError, match="longer than 64 bytes"):
        decoder.next_event()


def test_overlong_event_line_is_caught_when_its_end_arrives_late() -> None:
    decoder = StreamDecoder(max_event_line_size=64)
    decoder.receive_data(b'{"type":"error","session_id":"a","message":"' + b"x" * 10)
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"y" * 40 + b'"}\n')
    with pytest.raises(RemoteProtocolError, match="longer than 64 bytes"):
        decoder.next_event()


def test_packet_size_limit_is_configurable() -> None:
    decoder = StreamDecoder(max_packet_size=100)
    decoder.receive_data(bytes(AudioPacket("a", bytes(77))))
    with pytest.raises(RemoteProtocolError):
        decoder.next_event()
    with pytest.raises(LocalProtocolError):
        StreamDecoder(max_packet_size=1 << 24)
    with pytest.raises(LocalProtocolError):
        StreamDecoder(max_packet_size=10)


def test_pending_event_line_is_scanned_once_not_per_byte() -> None:
    # A long line arriving byte by byte must not cost O(n^2): the scan resumes.
    decoder = StreamDecoder()
    line = b'{"type":"error","session_id":"a","message":"' + b"x" * 20000 + b'"}\n'
    for index in range(len(line) - 1):
        decoder.receive_data(line[index : index + 1])
        assert decoder.next_event() is NEED_DATA
    assert decoder._scan_from >= len(line) - 3
    decoder.receive_data(line[-1:])
    assert decoder.next_event() == Event(EventType.ERROR, "a", "x" * 20000)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_messages_or_a_documented_error(data: bytes) -> None:
    decoder = StreamDecoder(max_packet_size=4096, max_event_line_size=512)
    decoder.receive_data(data)
    try:
        for message in decoder.events():
            assert isinstance(message, AudioPacket | Event | Discarded)
    except RemoteProtocolError:
        pass


fragments = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"{", b"}\n", b'"}\n', b"\n", b'{"type":"error","session_id":"a","message":"',
         b'{"type":"ready","session_id":"b"}\n', b"\x00\x00\x00\x1c" + b"c" + b" " * 23]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(fragments, max_size=30), st.data())
def test_structured_noise_gives_messages_or_a_documented_error_in_any_split(
    parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = StreamDecoder(max_packet_size=4096, max_event_line_size=512)
    previous = 0
    try:
        for cut in [*cuts, len(stream)]:
            decoder.receive_data(stream[previous:cut])
            previous = cut
            for message in decoder.events():
                assert isinstance(message, AudioPacket | Event | Discarded)
    except RemoteProtocolError:
        pass


# -- end of stream ----------------------------------------------------------------------


def _packet(session_id: str, payload: bytes) -> bytes:
    return bytes(AudioPacket(session_id, payload))


def test_end_of_stream_after_whole_messages_is_clean() -> None:
    decoder = StreamDecoder()
    decoder.receive_data(_packet("s1", b"abc") + b'{"type":"ready","session_id":"s1"}\n\n')
    decoder.receive_eof()
    assert decoder.eof
    assert [type(m) for m in decoder.events()] == [AudioPacket, Event]
    assert decoder.events() == [] and decoder.next_event() is NEED_DATA
    decoder.receive_eof()  # idempotent
    with pytest.raises(LocalProtocolError, match="after receive_eof"):
        decoder.receive_data(b"\n")


@pytest.mark.parametrize(("tail", "what", "size"), [
    (b"\x00\x00", "a packet", 2),
    (b"\x00\x00\x00\x20" + b"s2".ljust(24) + b"half", "a packet", 32),
    (b'{"type":"finished","session_id":"s1"}', "an event line", 37),
    (b'\n{"type":"fin', "an event line", 12),
])
def test_a_stream_that_ends_mid_message_raises_after_the_whole_ones(
        tail: bytes, what: str, size: int) -> None:
    for whole in (True, False):
        decoder = StreamDecoder()
        data = _packet("s1", b"abc") + tail
        if whole:
            decoder.receive_data(data)
        else:
            for byte in data:
                decoder.receive_data(bytes([byte]))
        decoder.receive_eof()
        first = decoder.next_event()
        assert isinstance(first, AudioPacket) and first.payload == b"abc"
        with pytest.raises(TruncatedStream, match=f"middle of {what}") as caught:
            decoder.next_event()
        assert isinstance(caught.value, RemoteProtocolError) and caught.value.size == size
        with pytest.raises(LocalProtocolError, match="already failed"):
            decoder.events()


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=1, max_value=199))
@settings(max_examples=200)
def test_any_input_then_eof_gives_messages_or_a_documented_error(data: bytes, cut: int
                                                                ) -> None:
    decoder = StreamDecoder()
    try:
        decoder.receive_data(data[:cut])
        decoder.events()
        decoder.receive_eof()
        while decoder.events():
            pass
    except RemoteProtocolError:
        pass
