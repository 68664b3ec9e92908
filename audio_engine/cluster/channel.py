"""The byte protocol between the engine's front process and its workers (sans-I/O).

One stream socket (a ``socketpair``) per worker carries length-prefixed messages both
ways::

    u32 big-endian LEN | u8 KIND | body (LEN - 1 bytes)

Kinds:

- ``CALL`` (either way): a request that gets one ``RESULT``: pickled
  ``(call_id, method, args)``;
- ``RESULT``: pickled ``(call_id, error, value)``; ``error`` is None or a ``Failure``;
- ``CAST`` (either way): a notice that gets no answer: pickled ``(method, args)``;
- ``BATCH`` (worker to front): one tick's bytes for the consumers, already in the
  socket framing of docs/protocol.md, with what the front must know about them
  (``Batch``);
- ``EVENTS`` (worker to front): event lines to write now, outside a tick.

Both ends are our own code of the same version, started together: pickle is the
cheapest faithful encoding of the few control values (play requests with their
filters), and nothing else ever reads this socket.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from protocol import NEED_DATA, NeedData

__all__ = [
    "MAX_MESSAGE",
    "Batch",
    "ChannelError",
    "ChannelReader",
    "Failure",
    "Kind",
    "Message",
    "encode_batch",
    "encode_call",
    "encode_cast",
    "encode_events",
    "encode_result",
]

#: Largest message: a tick of a few thousand passthrough sessions is about a
#: megabyte, and a clock catching up sends at most five ticks in one batch.
MAX_MESSAGE: Final = 64 * 1024 * 1024

_HEAD = struct.Struct(">IB")
_BATCH_HEAD = struct.Struct(">III")


class Kind(IntEnum):
    """What a message is (its ``KIND`` byte)."""

    CALL = 1
    RESULT = 2
    CAST = 3
    BATCH = 4
    EVENTS = 5


class ChannelError(Exception):
    """The peer broke the framing: the channel cannot be used any more."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a call failed: *kind* names the error for the caller to map
    (``"not_found"``, ``"not_playable"``, ``"too_many"``, ``"internal"``, ...),
    *message* is for users."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """One worker tick for the consumers.

    Args:
        data: every message of the tick in order (events and audio packets).
        events: the tick's event lines alone, for a consumer whose audio is dropped.
        audio_packets: audio packets in *data* (for the drop counter).
        announced: session ids whose ``ready`` is in *data* and whose first audio
            waits for the front's word that it wrote them (``ready_written``).
        headers: ``(session id, header packet)`` of sessions whose Ogg header pages
            are in *data* for the first time, for consumers that connect later.
    """

    data: bytes
    events: bytes = b""
    audio_packets: int = 0
    announced: tuple[str, ...] = ()
    headers: tuple[tuple[str, bytes], ...] = field(default=())


#: What ``ChannelReader.next_message`` returns: the kind and its decoded body
#: (a tuple for CALL/RESULT/CAST, a ``Batch``, or the raw lines of EVENTS).
Message = tuple[Kind, Any]


def _frame(kind: Kind, body: bytes) -> bytes:
    if len(body) + 1 > MAX_MESSAGE:
        raise ValueError(f"message of {len(body)} bytes is over the channel's limit")
    return _HEAD.pack(len(body) + 1, kind) + body


def encode_call(call_id: int, method: str, args: tuple[Any, ...]) -> bytes:
    """A request that expects a ``RESULT`` with the same *call_id*."""
    return _frame(Kind.CALL, pickle.dumps((call_id, method, args), pickle.HIGHEST_PROTOCOL))


def encode_result(call_id: int, error: Failure | None, value: Any = None) -> bytes:
    """The answer to call *call_id*: *error* or *value*."""
    return _frame(Kind.RESULT, pickle.dumps((call_id, error, value), pickle.HIGHEST_PROTOCOL))


def encode_cast(method: str, args: tuple[Any, ...]) -> bytes:
    """A notice without an answer."""
    return _frame(Kind.CAST, pickle.dumps((method, args), pickle.HIGHEST_PROTOCOL))


def encode_events(lines: bytes) -> bytes:
    """Event lines to write at once."""
    return _frame(Kind.EVENTS, lines)


def encode_batch(batch: Batch) -> bytes:
    """One tick's bytes with what the front must know about them."""
    meta = (pickle.dumps((batch.announced, batch.headers), pickle.HIGHEST_PROTOCOL)
            if batch.announced or batch.headers else b"")
    head = _BATCH_HEAD.pack(batch.audio_packets, len(batch.events), len(meta))
    body_length = len(head) + len(meta) + len(batch.events) + len(batch.data)
    if body_length + 1 > MAX_MESSAGE:
        raise ValueError(f"batch of {body_length} bytes is over the channel's limit")
    return b"".join((_HEAD.pack(body_length + 1, Kind.BATCH), head, meta, batch.events,
                     batch.data))


def _decode_batch(body: bytes) -> Batch:
    if len(body) < _BATCH_HEAD.size:
        raise ChannelError("batch shorter than its header")
    audio_packets, events_length, meta_length = _BATCH_HEAD.unpack_from(body)
    start = _BATCH_HEAD.size
    if start + meta_length + events_length > len(body):
        raise ChannelError("batch sections longer than the batch")
    announced: tuple[str, ...] = ()
    headers: tuple[tuple[str, bytes], ...] = ()
    if meta_length:
        announced, headers = pickle.loads(body[start:start + meta_length])
    start += meta_length
    events = body[start:start + events_length]
    return Batch(body[start + events_length:], events, audio_packets, announced, headers)


class ChannelReader:
    """Splits the byte stream into messages (h11 style: ``receive_data`` then
    ``next_message`` until it returns ``NEED_DATA``).

    Raises ``ChannelError`` for a message over ``MAX_MESSAGE``, an unknown kind or a
    body that does not decode; after one, the channel must be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0
        self._broken = False

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the socket."""
        if self._start:
            del self._buffer[:self._start]
            self._start = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buffer) - self._start

    def next_message(self) -> Message | NeedData:
        """The next whole message, or ``NEED_DATA``."""
        if self._broken:
            raise ChannelError("the channel is broken")
        buffer, start = self._buffer, self._start
        if len(buffer) - start < _HEAD.size:
            return NEED_DATA
        length, kind_byte = _HEAD.unpack_from(buffer, start)
        if not 1 <= length <= MAX_MESSAGE:
            self._broken = True
            raise ChannelError(f"message length {length} out of range")
        end = start + 4 + length
        if len(buffer) < end:
            return NEED_DATA
        body = bytes(buffer[start + _HEAD.size:end])
        self._start = end
        try:
            kind = Kind(kind_byte)
            match kind:
                case Kind.BATCH:
                    return kind, _decode_batch(body)
                case Kind.EVENTS:
                    return kind, body
                case Kind.CALL | Kind.RESULT | Kind.CAST:
                    return kind, pickle.loads(body)
        except ChannelError:
            self._broken = True
            raise
        except Exception as exc:  # an unknown kind, or a body that does not unpickle
            self._broken = True
            raise ChannelError(f"undecodable message (kind {kind_byte}): {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover
