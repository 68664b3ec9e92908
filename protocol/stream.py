"""Incremental decoder for the engine's socket byte stream (sans-I/O).

Feed bytes as they arrive with ``receive_data()``, then call ``next_event()``
until it returns ``NEED_DATA``. Any split of the stream yields the same messages.
When the connection closes, ``receive_eof()`` says so: the messages complete by then
are still returned, and a message cut off half-way raises ``TruncatedStream`` (a
``RemoteProtocolError``) instead of vanishing unnoticed.

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
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from protocol.constants import LENGTH_PREFIX_SIZE, SESSION_ID_FIELD_SIZE
from protocol.errors import (
    InvalidSessionId,
    LocalProtocolError,
    RemoteProtocolError,
    TruncatedStream,
)
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
#: Distinct id fields remembered; cleared when full (far more than live sessions).
_ID_CACHE_SIZE = 8192
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

_new_packet = object.__new__
_set = object.__setattr__


def _trusted_packet(session_id: str, payload: bytes) -> AudioPacket:
    """An ``AudioPacket`` whose id the decoder already validated (once per id):
    the decoder's hot path skips the constructor's checks."""
    packet: AudioPacket = _new_packet(AudioPacket)
    _set(packet, "session_id", session_id)
    _set(packet, "payload", payload)
    return packet


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
        self._ready: deque[DecodedMessage] = deque()
        # Session ids by their 24-byte field: ids repeat on every packet.
        self._ids: dict[bytes, str] = {}
        # Where the search for the end of a pending event line resumes, so that
        # a line arriving one byte at a time is scanned once, not once per byte.
        self._scan_from = 1
        self._error: RemoteProtocolError | None = None
        self._eof = False

    @property
    def buffered_size(self) -> int:
        """Bytes received and not yet decoded (messages decoded but not yet
        taken are not counted)."""
        return len(self._buffer)

    @property
    def eof(self) -> bool:
        """``receive_eof()`` was called: no more bytes will come."""
        return self._eof

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes (any bytes-like object; it is copied).

        Raises:
            LocalProtocolError: if the decoder already raised ``RemoteProtocolError``,
                or after ``receive_eof()``.
        """
        self._check_usable()
        if self._eof:
            raise LocalProtocolError("receive_data() after receive_eof()")
        self._buffer += data

    def receive_eof(self) -> None:
        """The stream ended (the connection closed). Messages complete by now are
        still returned; then, if part of a message is left, ``next_event()`` and
        ``events()`` raise ``TruncatedStream``. Idempotent.

        Raises:
            LocalProtocolError: if the decoder already raised ``RemoteProtocolError``.
        """
        self._check_usable()
        self._eof = True

    def next_event(self) -> DecodedMessage | NeedData:
        """Return the next complete message, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: a length below 24 or above ``max_packet_size``, or
                an event line longer than ``max_event_line_size`` without an end.
                The decoder is unusable afterwards.
            TruncatedStream: after ``receive_eof()``, once the complete messages are
                taken, when part of a message is left.
            LocalProtocolError: if called after a ``RemoteProtocolError``.
        """
        self._check_usable()
        if not self._ready:
            self._drain()
            if not self._ready:
                self._check_complete()
                return NEED_DATA
        return self._ready.popleft()

    def events(self) -> list[DecodedMessage]:
        """Every complete message currently buffered, in order (same errors as
        ``next_event``; faster than calling it in a loop)."""
        self._check_usable()
        self._drain()
        out = list(self._ready)
        self._ready.clear()
        if not out:
            self._check_complete()
        return out

    def _check_complete(self) -> None:
        """After EOF with nothing left to return: a remainder is a cut message."""
        if self._eof and self._buffer.strip(b"\n"):
            left = len(self._buffer.lstrip(b"\n"))
            what = "an event line" if self._buffer.lstrip(b"\n")[:1] == b"{" else "a packet"
            self._error = TruncatedStream(
                f"the stream ended in the middle of {what} ({left} bytes of it arrived)",
                left)
            raise self._error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise LocalProtocolError(
                f"decoder already failed ({self._error}); use a new one"
            )

    def _fail(self, message: str) -> RemoteProtocolError:
        self._error = RemoteProtocolError(message)
        return self._error

    def _drain(self) -> None:
        """Decode every complete message into ``_ready``. Packets are cut at an
        offset and the consumed bytes removed once at the end (the hot path)."""
        buffer = self._buffer
        ready = self._ready
        ids = self._ids
        size = len(buffer)
        position = 0
        try:
            while position < size:
                first = buffer[position]
                if first == _NEWLINE:
                    position += 1
                    self._scan_from = 1
                    continue
                if first == _OPEN_BRACE:
                    del buffer[:position]
                    position = 0
                    message = self._next_event_line()
                    if isinstance(message, NeedData):
                        return
                    ready.append(message)
                    size = len(buffer)
                    continue
                if size - position < LENGTH_PREFIX_SIZE:
                    return
                (length,) = _LENGTH.unpack_from(buffer, position)
                if length < SESSION_ID_FIELD_SIZE or length > self.max_packet_size:
                    raise self._fail(self._bad_length(length, first))
                end = position + LENGTH_PREFIX_SIZE + length
                if end > size:
                    return
                field = bytes(buffer[position + LENGTH_PREFIX_SIZE : position + _HEADER_SIZE])
                session_id = ids.get(field)
                if session_id is None:
                    try:
                        session_id = unpad_session_id(field)
                    except InvalidSessionId as exc:
                        ready.append(Discarded(
                            f"audio packet with an invalid session id: {exc}", end - position
                        ))
                        position = end
                        continue
                    if len(ids) >= _ID_CACHE_SIZE:
                        ids.clear()
                    ids[field] = session_id
                ready.append(_trusted_packet(
                    session_id, bytes(buffer[position + _HEADER_SIZE : end])
                ))
                position = end
        finally:
            if position:
                del buffer[:position]

    def _bad_length(self, length: int, first: int) -> str:
        if length < SESSION_ID_FIELD_SIZE:
            return (f"audio packet length {length} is shorter than the "
                    f"{SESSION_ID_FIELD_SIZE}-byte session id field")
        return (f"audio packet length {length} exceeds the limit of "
                f"{self.max_packet_size} bytes (first byte 0x{first:02x})")

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
