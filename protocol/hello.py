"""The consumer hello: the one line a consumer may write to the engine socket.

The socket carries data from the engine to its consumers only; a Go-era consumer
(the Node front) never writes to it. A consumer of ours writes, right after it
connects, one line::

    {"type":"hello","client":"<name>","order":"any"}\\n

saying who it is and which timing it needs. ``"order":"any"`` means it copes with
any order of a play's HTTP reply, its ``ready`` and its first audio (it routes
audio by session id from the start), so the engine may send a play's first audio
as soon as it exists. A consumer that sends no hello, or a hello without
``"order":"any"``, gets the Node-safe timing (docs/protocol.md, "Timing"). More flat
keys may follow (a ``token`` for network consumers, for example); readers ignore
the ones they do not know.

Writing the hello to a Go engine is harmless: it never reads its socket.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import ExtraValue
from protocol.need_data import NEED_DATA, NeedData

__all__ = [
    "MAX_HELLO_LINE_SIZE",
    "ConsumerOrder",
    "Hello",
    "HelloReader",
    "encode_hello",
    "parse_hello",
]

#: Longest hello line accepted, newline included. A hello is a few dozen bytes; 4 KiB
#: leaves room for a token and later keys while bounding what a peer that writes
#: garbage can make the engine buffer.
MAX_HELLO_LINE_SIZE: Final = 4096
#: Longest client name: it appears in logs, so it stays short.
_MAX_CLIENT_LENGTH: Final = 64
_OWN_KEYS = frozenset({"type", "client", "order"})


class ConsumerOrder(StrEnum):
    """The timing a consumer asks for."""

    #: Any order of reply, ``ready`` and first audio is fine: no wall-clock margin.
    ANY = "any"
    #: The Node front's needs: events after HTTP replies, a margin before first audio.
    #: Also what an unknown ``order`` value or a missing hello means.
    GO = "go"


@dataclass(frozen=True, slots=True)
class Hello:
    """A consumer's hello line.

    Raises (on construction):
        LocalProtocolError: if *client* is empty, longer than 64 characters or not
            printable ASCII, or *extra* reuses a standard key or holds a value that
            is not a flat JSON scalar.
    """

    client: str
    order: ConsumerOrder = ConsumerOrder.GO
    extra: Mapping[str, ExtraValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", ConsumerOrder(self.order))
        if not isinstance(self.client, str) or not self.client:
            raise LocalProtocolError("hello client must be a non-empty str")
        if len(self.client) > _MAX_CLIENT_LENGTH:
            raise LocalProtocolError(
                f"hello client is longer than {_MAX_CLIENT_LENGTH} characters"
            )
        if not all(0x20 <= ord(c) < 0x7F for c in self.client):
            raise LocalProtocolError("hello client must be printable ASCII")
        frozen = dict(self.extra)
        for key, value in frozen.items():
            if not isinstance(key, str) or not key or key in _OWN_KEYS:
                raise LocalProtocolError(f"hello extra key {key!r} is empty or reserved")
            if not isinstance(value, str | int | float | bool | type(None)):
                raise LocalProtocolError(
                    f"hello extra value for {key!r} must be a flat JSON scalar"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise LocalProtocolError(f"hello extra value for {key!r} must be finite")
        object.__setattr__(self, "extra", MappingProxyType(frozen))

    @property
    def any_order(self) -> bool:
        """True when the consumer needs no Node-safe timing."""
        return self.order is ConsumerOrder.ANY

    def __bytes__(self) -> bytes:
        """The hello's exact wire bytes, ending in ``\\n``."""
        return encode_hello(self)


def encode_hello(hello: Hello) -> bytes:
    """Serialise *hello* as one compact JSON line (``type`` first, then ``client``,
    ``order`` and the extra keys in order)."""
    document: dict[str, Any] = {"type": "hello", "client": hello.client,
                                "order": hello.order.value, **hello.extra}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_hello(line: bytes) -> Hello:
    """Parse one hello line (with or without its trailing newline).

    An ``order`` other than ``"any"`` is read as ``ConsumerOrder.GO`` (the safe
    timing), so later order values do not break older engines. Extra keys with
    nested values are dropped; only flat scalars are kept.

    Raises:
        RemoteProtocolError: if the line is not a JSON object with ``"type":"hello"``
            and a valid ``client``; the text says what is wrong.
    """
    if len(line) > MAX_HELLO_LINE_SIZE:
        raise RemoteProtocolError(f"hello line is longer than {MAX_HELLO_LINE_SIZE} bytes")
    try:
        document = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError("hello line is not valid JSON") from exc
    if not isinstance(document, dict):
        raise RemoteProtocolError("hello line is not a JSON object")
    if document.get("type") != "hello":
        raise RemoteProtocolError("first line is not a hello (its type is not \"hello\")")
    client = document.get("client")
    if not isinstance(client, str):
        raise RemoteProtocolError("hello has no client name")
    order = ConsumerOrder.ANY if document.get("order") == "any" else ConsumerOrder.GO
    extra = {
        key: value for key, value in document.items()
        if key not in _OWN_KEYS and isinstance(value, str | int | float | bool | type(None))
    }
    try:
        return Hello(client, order, extra)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(str(exc)) from exc


class HelloReader:
    """Reads a consumer's optional hello from the start of what it writes.

    Feed every chunk the consumer writes to ``receive_data``; ``next_event``
    returns the ``Hello`` once its line is complete, ``NEED_DATA`` before that, and
    ``None`` once the hello has been returned (anything written after it is
    ignored, and so is everything from a consumer whose hello was refused).

    Raises (from ``next_event``):
        RemoteProtocolError: the first line is not a valid hello, or grows past
            ``MAX_HELLO_LINE_SIZE`` without a newline. Later calls return ``None``.
    """

    def __init__(self, max_line_size: int = MAX_HELLO_LINE_SIZE) -> None:
        self._max = max_line_size
        self._buffer = bytearray()
        self._done = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer *data* (only what the hello line can still need is kept)."""
        if not self._done:
            room = self._max + 1 - len(self._buffer)
            self._buffer += bytes(data[:room])

    def next_event(self) -> Hello | NeedData | None:
        """The hello, ``NEED_DATA``, or ``None`` when the reader is done."""
        if self._done:
            return None
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self._max:
                self._finish()
                raise RemoteProtocolError(
                    f"hello line is longer than {self._max} bytes"
                )
            return NEED_DATA
        line = bytes(self._buffer[:end])
        self._finish()
        return parse_hello(line)

    def _finish(self) -> None:
        self._done = True
        self._buffer = bytearray()
