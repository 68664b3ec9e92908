"""The consumer hello line (protocol/hello.py): bytes, parsing, the incremental reader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    MAX_HELLO_LINE_SIZE,
    NEED_DATA,
    ConsumerOrder,
    Hello,
    HelloReader,
    LocalProtocolError,
    RemoteProtocolError,
    encode_hello,
    parse_hello,
)

GATEWAY_HELLO = b'{"type":"hello","client":"audiogate-gateway","order":"any"}\n'


def test_the_gateway_hello_has_exact_bytes() -> None:
    hello = Hello("audiogate-gateway", ConsumerOrder.ANY)
    assert bytes(hello) == GATEWAY_HELLO
    assert encode_hello(hello) == GATEWAY_HELLO
    assert hello.any_order


def test_extra_keys_follow_in_order() -> None:
    hello = Hello("node-7", ConsumerOrder.ANY, {"token": "s3cret", "v": 2})
    assert bytes(hello) == (
        b'{"type":"hello","client":"node-7","order":"any","token":"s3cret","v":2}\n'
    )
    assert parse_hello(bytes(hello)) == hello


@pytest.mark.parametrize(
    ("line", "order"),
    [
        (b'{"type":"hello","client":"x","order":"any"}', ConsumerOrder.ANY),
        (b'{"type":"hello","client":"x","order":"go"}', ConsumerOrder.GO),
        (b'{"type":"hello","client":"x","order":"strict-later"}', ConsumerOrder.GO),
        (b'{"type":"hello","client":"x"}', ConsumerOrder.GO),
        (b'{"client":"x","order":"any","type":"hello"}\r', ConsumerOrder.ANY),
    ],
)
def test_only_order_any_relaxes_the_timing(line: bytes, order: ConsumerOrder) -> None:
    assert parse_hello(line).order is order


def test_nested_extra_values_are_dropped() -> None:
    hello = parse_hello(b'{"type":"hello","client":"x","order":"any","caps":["a"],"n":1}')
    assert dict(hello.extra) == {"n": 1}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json", "hello line is not valid JSON"),
        (b'["hello"]', "hello line is not a JSON object"),
        (b'{"type":"ready","session_id":"x"}',
         'first line is not a hello (its type is not "hello")'),
        (b'{"type":"hello"}', "hello has no client name"),
        (b'{"type":"hello","client":""}', "hello client must be a non-empty str"),
        (b'{"type":"hello","client":"' + b"x" * 65 + b'"}',
         "hello client is longer than 64 characters"),
        (b'{"type":"hello","client":"caf\\u00e9"}', "hello client must be printable ASCII"),
        (b'{"type":"hello","client":"x","n":NaN}', "hello line is not valid JSON"),
    ],
)
def test_bad_hello_lines_say_what_is_wrong(line: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as error:
        parse_hello(line)
    assert str(error.value) == why


def test_building_a_bad_hello_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Hello("x", ConsumerOrder.ANY, {"type": "other"})
    with pytest.raises(LocalProtocolError):
        Hello("x", ConsumerOrder.ANY, {"k": float("inf")})
    with pytest.raises(ValueError):
        Hello("x", "sometimes")  # type: ignore[arg-type]


def test_reader_whole_and_byte_by_byte_with_trailing_bytes() -> None:
    data = GATEWAY_HELLO + b"anything after the hello is ignored\n{"
    whole = HelloReader()
    whole.receive_data(data)
    assert whole.next_event() == parse_hello(GATEWAY_HELLO)
    assert whole.next_event() is None
    split = HelloReader()
    results = []
    for index in range(len(data)):
        split.receive_data(data[index:index + 1])
        results.append(split.next_event())
    hello_at = len(GATEWAY_HELLO) - 1
    assert all(r is NEED_DATA for r in results[:hello_at])
    assert results[hello_at] == parse_hello(GATEWAY_HELLO)
    assert all(r is None for r in results[hello_at + 1:])


def test_reader_refuses_an_endless_first_line_once() -> None:
    reader = HelloReader()
    reader.receive_data(b"x" * MAX_HELLO_LINE_SIZE)
    assert reader.next_event() is NEED_DATA
    reader.receive_data(b"y" * 10)
    with pytest.raises(RemoteProtocolError, match="longer than 4096 bytes"):
        reader.next_event()
    reader.receive_data(GATEWAY_HELLO)
    assert reader.next_event() is None


def test_reader_refuses_a_bad_first_line_then_ignores_the_rest() -> None:
    reader = HelloReader()
    reader.receive_data(b"\x00\x00\x00\x1c garbage\n" + GATEWAY_HELLO)
    with pytest.raises(RemoteProtocolError):
        reader.next_event()
    assert reader.next_event() is None


@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20))
def test_any_bytes_give_a_hello_need_data_none_or_a_remote_error(data: bytes,
                                                                 cuts: list[int]) -> None:
    reader = HelloReader(max_line_size=256)
    position = 0
    for size in [*cuts, len(data)]:
        reader.receive_data(data[position:position + size])
        position += size
        try:
            result = reader.next_event()
        except RemoteProtocolError:
            assert reader.next_event() is None
            return
        assert result is NEED_DATA or result is None or isinstance(result, Hello)
