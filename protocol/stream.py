"""Incremental decoder for the engine's socket byte stream (sans-I/O).

Feed bytes as they arrive with ``receive_data()``, then call ``next_event()``
until it returns ``NEED_DATA``. Any split of the stream yields the same messages.

How the stream is cut (docs/protocol.md):

* a ``\\n`` between messages is skipped;
* ``{`` starts an event line, which ends with ``}\\n``;
* anything else starts an audio packet: a u32 big-endian length, then that many
  bytes (24-byte space-padded session id + payload). Payloads stay below 16 MiB,
  so the first byte of a packet is 0x00.

The Go engine writes event messages without escaping, e.g.
``{"type":"error","session_id":"x","message":"bad "quoted" {brace}<LF>next"}<LF>``.
Such a line is not JSON and holds ``}\\n`` before its real end, so an end is only
accepted where the next byte can start a message (0x00, ``{`` or ``\\n``) or is not
here yet, and where the text up to it parses, first as JSON, else as a Go line
(``{"type":"T","session_id":"ID","message":"anything"}``). One ambiguity remains:
an unescaped message that itself contains ``"}\\n`` followed by a split point may be
cut there; no valid JSON line is ever affected.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from protocol.constants import LENGTH_PREFIX_SIZE, SESSION_ID_FIELD_SIZE
from protocol.errors import InvalidSessionId, LocalProtocolError, RemoteProtocolError
from protocol.messages import AudioPacket, Event, EventType, ExtraValue
from protocol.need_data import NEED_DATA, NeedData
from protocol.session_id import unpad_session_id

__all__ = [
    "DEFAULT_MAX_EVENT_LINE_SIZE",
    "DEFAULT_MAX_PACKET_SIZE",
    "DecodedMessage",
    "Discarded",
    "StreamDecoder",
]

#: Go writes payloads of at most 4096 bytes and ours are a few KB (a 20 ms PCM
#: frame is 3840); 1 MiB leaves room for growth and bounds what a broken peer can
#: make us hold.
DEFAULT_MAX_PACKET_SIZE: Final = 1 << 20
#: Go's error lines carry yt-dlp's stderr; 64 KiB is many times the longest seen.
DEFAULT_MAX_EVENT_LINE_SIZE: Final = 64 * 1024

_LENGTH = struct.Struct(">I")
_HEADER_SIZE = LENGTH_PREFIX_SIZE + SESSION_ID_FIELD_SIZE
_NEWLINE = 0x0A
_OPEN_BRACE = 0x7B
#: Bytes that may follow the end of an event line: a packet's first length byte,
#: the next event line, or a stray newline.
_MESSAGE_STARTS = frozenset({0x00, _OPEN_BRACE, _NEWLINE})
_RESERVED_KEYS = frozenset({"type", "session_id", "message"})
_GO_PREFIX = re.compile(r'\{"type":"[^"]*","session_id":"[^"]*"')
_GO_LINE = re.compile(
    r'\{"type":"(?P<type>[^"]*)","session_id":"(?P<id>[^"]*)"'
    r'(?:,"message":"(?P<message>.*)")?\}',
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Discarded:
    """A complete message that was skipped without losing the stream's framing.

    Examples: an audio packet whose id field is not a valid session id, an event
    line of an unknown type. *size* is the number of stream bytes it occupied.
    """

    reason: str
    size: int


#: What ``StreamDecoder.next_event()`` returns besides ``NEED_DATA``.
DecodedMessage: TypeAlias = AudioPacket | Event | Discarded


class StreamDecoder:
    """Turns the socket byte stream into ``AudioPacket``, ``Event`` and ``Discarded``.

    The decoder holds at most one incomplete message, bounded by the two limits,
    plus whatever was passed to ``receive_data()`` and not yet drained with
    ``next_event()``. A fresh decoder is needed for each connection.

    Args:
        max_packet_size: largest accepted length prefix (24-byte id + payload).
        max_event_line_size: largest accepted event line, newline included.

    Raises (constructor):
        LocalProtocolError: if a limit is out of range.
    """

    def __init__(
        self,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_event_line_size: int = DEFAULT_MAX_EVENT_LINE_SIZE,
    ) -> None:
        if not SESSION_ID_FIELD_SIZE <= max_packet_size < 1 << 24:
            raise LocalProtocolError(
                "max_packet_size must be in [24, 2**24) so packets start with 0x00"
            )
        if max_event_line_size < 32:
            raise LocalProtocolError("max_event_line_size must be at least 32")
        self.max_packet_size = max_packet_size
        self.max_event_line_size = max_event_line_size
        self._buffer = bytearray()
        # Where the search for the end of a pending event line resumes, so that
        # a line arriving one byte at a time is scanned once, not once per byte.
        self._scan_from = 1
        self._error: RemoteProtocolError | None = None

    @property
    def buffered_size(self) -> int:
        """Bytes received and not yet returned as messages."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append received bytes.

        Raises:
            LocalProtocolError: if the decoder already raised ``RemoteProtocolError``.
        """
        self._check_usable()
        self._buffer += data

    def next_event(self) -> DecodedMessage | NeedData:
        """Return the next complete message, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: a length below 24 or above ``max_packet_size``, or
                an event line longer than ``max_event_line_size`` without an end.
                The decoder is unusable afterwards.
            LocalProtocolError: if called after a ``RemoteProtocolError``.
        """
        self._check_usable()
        buffer = self._buffer
        skip = 0
        while skip < len(buffer) and buffer[skip] == _NEWLINE:
            skip += 1
        if skip:
            del buffer[:skip]
            self._scan_from = 1
        if not buffer:
            return NEED_DATA
        if buffer[0] == _OPEN_BRACE:
            return self._next_event_line()
        return self._next_packet()

    def events(self) -> list[DecodedMessage]:
        """Drain every complete message currently buffered (same errors as above)."""
        out: list[DecodedMessage] = []
        while True:
            message = self.next_event()
            if isinstance(message, NeedData):
                return out
            out.append(message)

    def _check_usable(self) -> None:
        if self._error is not None:
            raise LocalProtocolError(
                f"decoder already failed ({self._error}); use a new one"
            )

    def _fail(self, message: str) -> RemoteProtocolError:
        self._error = RemoteProtocolError(message)
        return self._error

    def _next_packet(self) -> DecodedMessage | NeedData:
        buffer = self._buffer
        if len(buffer) < LENGTH_PREFIX_SIZE:
            return NEED_DATA
        (length,) = _LENGTH.unpack_from(buffer)
        if length < SESSION_ID_FIELD_SIZE:
            raise self._fail(
                f"audio packet length {length} is shorter than the "
                f"{SESSION_ID_FIELD_SIZE}-byte session id field"
            )
        if length > self.max_packet_size:
            raise self._fail(
                f"audio packet length {length} exceeds the limit of "
                f"{self.max_packet_size} bytes (first byte 0x{buffer[0]:02x})"
            )
        end = LENGTH_PREFIX_SIZE + length
        if len(buffer) < end:
            return NEED_DATA
        field = bytes(buffer[LENGTH_PREFIX_SIZE:_HEADER_SIZE])
        payload = bytes(buffer[_HEADER_SIZE:end])
        del buffer[:end]
        try:
            session_id = unpad_session_id(field)
        except InvalidSessionId as exc:
            return Discarded(f"audio packet with an invalid session id: {exc}", end)
        return AudioPacket(session_id, payload)

    def _next_event_line(self) -> DecodedMessage | NeedData:
        buffer = self._buffer
        search = self._scan_from
        while True:
            brace = buffer.find(b"}\n", search)
            if brace < 0:
                if len(buffer) > self.max_event_line_size:
                    raise self._fail(self._overlong_message())
                # The last byte may be a '}' whose '\n' has not arrived yet.
                self._scan_from = max(1, len(buffer) - 1)
                return NEED_DATA
            end = brace + 2
            if end > self.max_event_line_size:
                raise self._fail(self._overlong_message())
            if end < len(buffer) and buffer[end] not in _MESSAGE_STARTS:
                search = brace + 1
                continue
            message = _parse_event_line(bytes(buffer[: brace + 1]), end)
            if message is None:
                search = brace + 1
                continue
            del buffer[:end]
            self._scan_from = 1
            return message

    def _overlong_message(self) -> str:
        head = bytes(self._buffer[:60])
        return (
            f"event line longer than {self.max_event_line_size} bytes "
            f"without an end (starts {head!r})"
        )


def _scalar_extras(items: dict[str, Any]) -> dict[str, ExtraValue]:
    extra: dict[str, ExtraValue] = {}
    for key, value in items.items():
        if key in _RESERVED_KEYS or not key:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if isinstance(value, str | int | float | bool | type(None)):
            extra[key] = value
    return extra


def _build_event(
    type_: object, session_id: object, message: object, extra: dict[str, ExtraValue], size: int
) -> Event | Discarded:
    if not isinstance(type_, str) or not isinstance(session_id, str):
        return Discarded("event line without a string type and session_id", size)
    if not isinstance(message, str):
        return Discarded(f"event line for {session_id!r} with a non-string message", size)
    try:
        event_type = EventType(type_)
    except ValueError:
        return Discarded(f"event line of unknown type {type_!r}", size)
    try:
        return Event(event_type, session_id, message, extra)
    except InvalidSessionId as exc:
        return Discarded(f"event line with an invalid session id: {exc}", size)


def _parse_event_line(line: bytes, size: int) -> Event | Discarded | None:
    """Parse one candidate line (without its newline).

    Returns None when the candidate cannot be the end of this line, so the search
    must go on to the next ``}\\n``.
    """
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        return _build_event(
            document.get("type"),
            document.get("session_id"),
            document.get("message", ""),
            _scalar_extras(document),
            size,
        )
    text = line.decode("utf-8", errors="replace")
    if not _GO_PREFIX.match(text):
        # Not JSON and not shaped like a Go line at all: skip it whole rather
        # than search further and lose sync with what follows.
        return Discarded(f"malformed event line {text[:60]!r}", size)
    match = _GO_LINE.fullmatch(text)
    if match is None:
        return None
    return _build_event(
        match["type"], match["id"], match["message"] or "", {}, size
    )
