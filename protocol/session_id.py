"""Session ids: what a valid one is, and how it sits in the 24-byte packet field.

A session id is 1-24 bytes of printable ASCII (0x21-0x7E) with no spaces. Discord
snowflakes (at most 20 digits) and the playground's user ids fit. On the wire the
id fills a fixed 24-byte field, right-padded with spaces (0x20); since a valid id
holds no space, unpadding is exact.

The Go engine silently truncated longer ids, so two long ids could collide;
we refuse them instead, with a message that says why.
"""

from __future__ import annotations

from functools import lru_cache

from protocol.constants import SESSION_ID_FIELD_SIZE
from protocol.errors import InvalidSessionId

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "pad_session_id",
    "unpad_session_id",
    "validate_session_id",
]

#: Longest valid session id, in bytes (= characters, since ids are ASCII).
MAX_SESSION_ID_LENGTH = SESSION_ID_FIELD_SIZE

_PRINTABLE_LOW = 0x21
_PRINTABLE_HIGH = 0x7E


def _describe_problem(value: str) -> str | None:
    if not value:
        return "session id must not be empty"
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return "session id must be printable ASCII (found a non-ASCII character)"
    if len(raw) > MAX_SESSION_ID_LENGTH:
        return (
            f"session id must be at most {MAX_SESSION_ID_LENGTH} bytes "
            f"(got {len(raw)})"
        )
    for index, byte in enumerate(raw):
        if byte == 0x20:
            return f"session id must not contain spaces (position {index})"
        if not _PRINTABLE_LOW <= byte <= _PRINTABLE_HIGH:
            return (
                "session id must be printable ASCII "
                f"(byte 0x{byte:02x} at position {index})"
            )
    return None


# Ids repeat on every packet of a session; caching keeps validation off the
# per-packet cost. 4096 entries is far more live sessions than one engine holds.
@lru_cache(maxsize=4096)
def validate_session_id(value: str) -> str:
    """Return *value* unchanged if it is a valid session id.

    Raises:
        InvalidSessionId: with a message naming the first problem found.
        TypeError: if *value* is not a ``str``.
    """
    if not isinstance(value, str):
        raise TypeError(f"session id must be str, not {type(value).__name__}")
    problem = _describe_problem(value)
    if problem is not None:
        raise InvalidSessionId(problem)
    return value


@lru_cache(maxsize=4096)
def pad_session_id(session_id: str) -> bytes:
    """Encode a session id into the 24-byte packet field, right-padded with spaces.

    Raises:
        InvalidSessionId: if *session_id* is not valid.
    """
    return validate_session_id(session_id).encode("ascii").ljust(
        SESSION_ID_FIELD_SIZE, b" "
    )


@lru_cache(maxsize=4096)
def unpad_session_id(field: bytes) -> str:
    """Decode the 24-byte packet field back into a session id.

    Trailing spaces are padding and are removed.

    Raises:
        InvalidSessionId: if the field is not 24 bytes or does not hold a valid id
            (all spaces, a space inside the id, or non-printable bytes).
    """
    if len(field) != SESSION_ID_FIELD_SIZE:
        raise InvalidSessionId(
            f"session id field must be {SESSION_ID_FIELD_SIZE} bytes (got {len(field)})"
        )
    raw = field.rstrip(b" ")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidSessionId(
            "session id field holds non-ASCII bytes: " + repr(raw)
        ) from exc
    return validate_session_id(text)
