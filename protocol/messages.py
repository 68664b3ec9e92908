"""The two kinds of message on the engine's socket, and their exact bytes.

::

    audio packet   u32 big-endian LEN | 24-byte session id, space-padded | payload (LEN-24 bytes)
    event line     {"type":T,"session_id":ID}\\n  or  {"type":T,"session_id":ID,"message":M}\\n

Event lines we write are valid JSON with the keys in exactly that order, no spaces,
and optional flat extra keys after them. Node's consumer finds the end of a line
by counting braces without knowing about strings, so no string value we write may
contain a raw ``{`` or ``}``: they are written as the JSON escapes ``\\u007b`` and
``\\u007d`` (lossless for any JSON reader). Raw newlines are escaped by JSON itself.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias

from protocol.constants import SESSION_ID_FIELD_SIZE
from protocol.errors import LocalProtocolError
from protocol.session_id import pad_session_id, validate_session_id

__all__ = [
    "MAX_PAYLOAD_SIZE",
    "AudioPacket",
    "Event",
    "EventType",
    "ExtraValue",
    "FinishReason",
    "encode_event_line",
    "encode_packet",
]

#: Largest payload the length prefix may describe while keeping the prefix's first
#: byte 0x00, which is what lets a reader tell a packet (0x00) from an event ('{').
MAX_PAYLOAD_SIZE: Final = (1 << 24) - 1 - SESSION_ID_FIELD_SIZE

_LENGTH = struct.Struct(">I")

#: Values an event line may carry in its extra keys (flat JSON scalars).
ExtraValue: TypeAlias = str | int | float | bool | None

#: Keys that an event's own fields occupy; extra keys may not reuse them.
_RESERVED_KEYS = frozenset({"type", "session_id", "message"})


class EventType(StrEnum):
    """The ``type`` of an event line."""

    #: The source opened; audio for this play follows on a later write.
    READY = "ready"
    #: The session failed; no ``finished`` follows.
    ERROR = "error"
    #: The session ended (end of track, stop, or replacement by a new play).
    FINISHED = "finished"


class FinishReason(StrEnum):
    """Why a session ended without an error: the ``reason`` of a ``finished`` event
    (our engine's extra key; a ``finished`` without one comes from a Go engine)."""

    #: The track played to its end.
    END = "end"
    #: Stopped through the API.
    STOPPED = "stopped"
    #: A new play on the same id replaced it.
    REPLACED = "replaced"
    #: The engine is shutting down: not the end of the track.
    SHUTDOWN = "shutdown"
    #: Removed after the idle timeout.
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """One audio packet: a chunk of one session's payload.

    For ``opus``/``web`` sessions the payload is one or more whole Ogg pages; for
    ``pcm`` it is signed 16-bit little-endian stereo at 48 kHz.

    Raises (on construction):
        InvalidSessionId: if *session_id* is not a valid id.
        LocalProtocolError: if *payload* is not bytes or exceeds ``MAX_PAYLOAD_SIZE``.
    """

    session_id: str
    payload: bytes

    def __post_init__(self) -> None:
        validate_session_id(self.session_id)
        if not isinstance(self.payload, bytes):
            raise LocalProtocolError(
                f"payload must be bytes, not {type(self.payload).__name__}"
            )
        if len(self.payload) > MAX_PAYLOAD_SIZE:
            raise LocalProtocolError(
                f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_SIZE}"
            )

    def __bytes__(self) -> bytes:
        """The packet's exact wire bytes."""
        return encode_packet(self.session_id, self.payload)


def encode_packet(session_id: str, payload: bytes) -> bytes:
    """Frame *payload* as one audio packet for *session_id*.

    This is the hot-path form of ``bytes(AudioPacket(...))``: the id is validated
    (cached per id) but no object is built.

    Raises:
        InvalidSessionId: if *session_id* is not valid.
        LocalProtocolError: if *payload* exceeds ``MAX_PAYLOAD_SIZE``.
    """
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise LocalProtocolError(
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_SIZE}"
        )
    return (
        _LENGTH.pack(SESSION_ID_FIELD_SIZE + len(payload))
        + pad_session_id(session_id)
        + payload
    )


def _json_string(text: str) -> str:
    # ensure_ascii keeps every byte of the line ASCII; the brace escapes keep
    # Node's brace counter from ending the line inside a string.
    return json.dumps(text).replace("{", "\\u007b").replace("}", "\\u007d")


def _json_value(value: ExtraValue) -> str:
    if isinstance(value, str):
        return _json_string(value)
    return json.dumps(value, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Event:
    """One event line: something that happened to one session.

    *message* is free text (empty means absent, as Go's ``omitempty``). *extra*
    holds flat keys of ours written after the standard ones, in insertion order.

    Raises (on construction):
        InvalidSessionId: if *session_id* is not a valid id.
        ValueError: if *type* is not an ``EventType`` value.
        LocalProtocolError: if *message* is not a str, or *extra* reuses a standard
            key, has a non-str key, a nested or non-finite value.
    """

    type: EventType
    session_id: str
    message: str = ""
    extra: Mapping[str, ExtraValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", EventType(self.type))
        validate_session_id(self.session_id)
        if not isinstance(self.message, str):
            raise LocalProtocolError(
                f"message must be str, not {type(self.message).__name__}"
            )
        frozen_extra = dict(self.extra)
        for key, value in frozen_extra.items():
            if not isinstance(key, str) or not key:
                raise LocalProtocolError(f"extra key must be a non-empty str: {key!r}")
            if key in _RESERVED_KEYS:
                raise LocalProtocolError(f"extra key {key!r} is reserved")
            if not isinstance(value, str | int | float | bool | type(None)):
                raise LocalProtocolError(
                    f"extra value for {key!r} must be a flat JSON scalar, "
                    f"not {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise LocalProtocolError(f"extra value for {key!r} must be finite")
        object.__setattr__(self, "extra", MappingProxyType(frozen_extra))

    def __bytes__(self) -> bytes:
        """The event's exact wire bytes, ending in ``\\n``."""
        return encode_event_line(self)


def encode_event_line(event: Event) -> bytes:
    """Serialise *event* as one event line (see the module docstring)."""
    parts = [
        '{"type":',
        _json_string(event.type.value),
        ',"session_id":',
        _json_string(event.session_id),
    ]
    if event.message:
        parts += [',"message":', _json_string(event.message)]
    for key, value in event.extra.items():
        parts += [",", _json_string(key), ":", _json_value(value)]
    parts.append("}\n")
    return "".join(parts).encode("ascii")

