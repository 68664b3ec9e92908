"""The playground's WebSocket protocol: what a page may send, checked.

Every text message is one JSON object with a ``type`` (docs/playground.md). An
invalid one gets an ``error`` reply saying what is wrong and changes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "Add",
    "ClientMessage",
    "Jump",
    "Move",
    "Play",
    "Remove",
    "Search",
    "Seek",
    "Simple",
    "Volume",
    "parse_client_message",
]

#: Largest text message accepted from a page.
MAX_MESSAGE_BYTES = 8 * 1024
#: Deepest nesting of arrays and objects accepted. Every message is one flat
#: object (depth 1); the limit is checked before parsing, since Python's JSON
#: parser recurses once per level and 8 KB of ``[`` would exhaust the stack.
MAX_DEPTH = 4


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Play(_Message):
    """Play *url* now (the current track goes to the history)."""

    type: Literal["play"]
    url: str = Field(min_length=1, max_length=4096)


class Add(_Message):
    """Add *url* to the end of the queue (plays at once if nothing does)."""

    type: Literal["add"]
    url: str = Field(min_length=1, max_length=4096)


class Simple(_Message):
    """Commands without arguments (``pong`` answers a heartbeat)."""

    type: Literal["stop", "pause", "resume", "skip", "previous", "clear", "pong", "state",
                  "focus"]


class Seek(_Message):
    """Jump to *seconds* into the current track."""

    type: Literal["seek"]
    seconds: float = Field(ge=0, le=24 * 3600)


class Volume(_Message):
    """Set the gain: 0 (mute) to 2 (double)."""

    type: Literal["volume"]
    volume: float = Field(ge=0, le=2)


class Remove(_Message):
    """Remove the upcoming track at *position* (1 = next)."""

    type: Literal["remove"]
    position: int = Field(ge=1, le=10_000)


class Jump(_Message):
    """Play the upcoming track at *position* now."""

    type: Literal["jump"]
    position: int = Field(ge=1, le=10_000)


class Move(_Message):
    """Move the upcoming track at *position* to position *to* (both 1 = next)."""

    type: Literal["move"]
    position: int = Field(ge=1, le=10_000)
    to: int = Field(ge=1, le=10_000)


class Search(_Message):
    """Search for *query* (through the engine's yt-dlp)."""

    type: Literal["search"]
    query: str = Field(min_length=1, max_length=200)


ClientMessage: TypeAlias = Annotated[
    Play | Add | Simple | Seek | Volume | Remove | Jump | Move | Search,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_TYPES = ("play", "add", "stop", "pause", "resume", "skip", "previous", "clear", "pong",
          "state", "focus", "seek", "volume", "remove", "jump", "move", "search")


def _too_deep(text: str, limit: int) -> bool:
    """Whether arrays and objects in *text* nest deeper than *limit* (brackets
    inside strings do not count). Linear, no recursion."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_client_message(text: str) -> ClientMessage:
    """Parse one text message from a page.

    Raises:
        ValueError: with a message fit for the page (what is wrong, in words).
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    if _too_deep(text, MAX_DEPTH):
        raise ValueError(f"message is nested too deeply (more than {MAX_DEPTH} levels); "
                         "send one flat JSON object")
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("message is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError("message must be a JSON object")
    kind = document.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise ValueError(f"unknown message type {kind!r}; expected one of {', '.join(_TYPES)}")
    try:
        return _ADAPTER.validate_python(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"][1:]) or "message"
        if error["type"] == "missing":
            raise ValueError(f"{kind} needs '{field}'") from None
        if error["type"] == "extra_forbidden":
            raise ValueError(f"{kind} does not take '{field}'") from None
        raise ValueError(f"{kind}: {field}: {error['msg']}") from None
