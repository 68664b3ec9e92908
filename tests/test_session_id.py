from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    SESSION_ID_FIELD_SIZE,
    InvalidSessionId,
    LocalProtocolError,
    pad_session_id,
    unpad_session_id,
    validate_session_id,
)

valid_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24
)


@pytest.mark.parametrize(
    "value", ["1", "111111111111111111", "user-333", "x" * 24, "{weird}\"\\id~"]
)
def test_valid_ids_are_returned_unchanged(value: str) -> None:
    assert validate_session_id(value) == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "must not be empty"),
        ("x" * 25, "at most 24 bytes (got 25)"),
        ("a b", "must not contain spaces (position 1)"),
        ("tab\there", "byte 0x09 at position 3"),
        ("caf\u00e9", "non-ASCII"),
        ("del\x7f", "byte 0x7f"),
    ],
)
def test_invalid_ids_say_why(value: str, words: str) -> None:
    with pytest.raises(InvalidSessionId, match=words.replace("(", r"\(").replace(")", r"\)")):
        validate_session_id(value)


def test_invalid_id_is_both_a_local_error_and_a_value_error() -> None:
    with pytest.raises(LocalProtocolError):
        validate_session_id("")
    with pytest.raises(ValueError):
        validate_session_id("")


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        validate_session_id(123)  # type: ignore[arg-type]


def test_padding_is_spaces_to_24_bytes() -> None:
    assert pad_session_id("444") == b"444" + b" " * 21
    assert pad_session_id("x" * 24) == b"x" * 24


@given(valid_ids)
def test_pad_then_unpad_is_identity(session_id: str) -> None:
    field = pad_session_id(session_id)
    assert len(field) == SESSION_ID_FIELD_SIZE
    assert unpad_session_id(field) == session_id


@pytest.mark.parametrize(
    "field",
    [b" " * 24, b"ab cd" + b" " * 19, b"\xff" + b" " * 23, b"short", b"\x00" * 24],
)
def test_unpad_rejects_fields_without_a_valid_id(field: bytes) -> None:
    with pytest.raises(InvalidSessionId):
        unpad_session_id(field)
