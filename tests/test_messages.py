from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    AudioPacket,
    Event,
    EventType,
    InvalidSessionId,
    LocalProtocolError,
    StreamDecoder,
    encode_packet,
)

from .test_session_id import valid_ids


def test_audio_packet_bytes_are_exact() -> None:
    packet = AudioPacket("444", b"\x01\x02\x03")
    assert bytes(packet) == b"\x00\x00\x00\x1b" + b"444" + b" " * 21 + b"\x01\x02\x03"
    assert encode_packet("444", b"\x01\x02\x03") == bytes(packet)


def test_empty_payload_is_a_24_byte_packet() -> None:
    assert bytes(AudioPacket("a", b""))[:4] == b"\x00\x00\x00\x18"


def test_audio_packet_refuses_bad_ids_and_payloads() -> None:
    with pytest.raises(InvalidSessionId):
        AudioPacket("has space", b"")
    with pytest.raises(LocalProtocolError):
        AudioPacket("a", "text")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_packet("a", bytes(1 << 24))


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (Event(EventType.READY, "111111111111111111"),
         b'{"type":"ready","session_id":"111111111111111111"}\n'),
        (Event("finished", "444"), b'{"type":"finished","session_id":"444"}\n'),
        (Event(EventType.ERROR, "u", "source failed"),
         b'{"type":"error","session_id":"u","message":"source failed"}\n'),
        (Event(EventType.READY, "u", extra={"duration": 120, "title": "x", "live": False}),
         b'{"type":"ready","session_id":"u","duration":120,"title":"x","live":false}\n'),
    ],
)
def test_event_lines_are_byte_exact(event: Event, line: bytes) -> None:
    assert bytes(event) == line


def test_event_strings_never_carry_raw_braces_or_newlines() -> None:
    event = Event(EventType.ERROR, "{id}", 'bad "quoted" {brace}\nsecond line')
    line = bytes(event)
    body = line[1:-2]  # between the line's own braces
    assert b"{" not in body and b"}" not in body
    assert line.count(b"\n") == 1 and line.endswith(b"}\n")
    parsed = json.loads(line)
    assert list(parsed) == ["type", "session_id", "message"]
    assert parsed["message"] == event.message
    assert parsed["session_id"] == "{id}"


def test_non_ascii_message_is_escaped_to_ascii() -> None:
    line = bytes(Event(EventType.ERROR, "u", "caf\u00e9 \u2603"))
    assert line.isascii()
    assert json.loads(line)["message"] == "caf\u00e9 \u2603"


@pytest.mark.parametrize(
    "extra",
    [{"type": "x"}, {"message": "x"}, {"nested": {"a": 1}}, {"list": [1]},
     {"nan": math.nan}, {"": 1}, {1: 2}],
)
def test_event_extra_keys_must_be_flat_and_new(extra: dict[object, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Event(EventType.READY, "u", extra=extra)  # type: ignore[arg-type]


def test_event_type_must_be_known() -> None:
    with pytest.raises(ValueError):
        Event("progress", "u")  # type: ignore[arg-type]


def test_events_are_frozen() -> None:
    event = Event(EventType.READY, "u")
    with pytest.raises(AttributeError):
        event.session_id = "v"  # type: ignore[misc]


scalars = st.one_of(
    st.text(max_size=20), st.integers(-(2**53), 2**53), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
events = st.builds(
    Event,
    st.sampled_from(list(EventType)),
    valid_ids,
    st.text(max_size=80),
    st.dictionaries(
        st.text(min_size=1, max_size=10).filter(
            lambda k: k not in {"type", "session_id", "message"}
        ),
        scalars,
        max_size=3,
    ),
)
packets = st.builds(AudioPacket, valid_ids, st.binary(max_size=600))


@given(st.lists(st.one_of(events, packets), max_size=12))
def test_encode_then_decode_is_identity(messages: list[AudioPacket | Event]) -> None:
    decoder = StreamDecoder()
    decoder.receive_data(b"".join(bytes(m) for m in messages))
    assert decoder.events() == messages
    assert decoder.buffered_size == 0
