"""The playground's WebSocket protocol: what a page may send, checked.

Every text message is one JSON object with a ``type`` (docs/playground.md). An
invalid one gets an ``error`` reply saying what is wrong and changes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from protocol.filter_presets import EQUALIZER_GAIN_MAX, EQUALIZER_GAIN_MIN, Preset

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "Add",
    "ClientMessage",
    "Crossfade",
    "FilterSet",
    "Filters",
    "Jump",
    "Loop",
    "LyricsRequest",
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

    type: Literal["stop", "pause", "resume", "skip", "previous", "clear", "undo_clear",
                  "shuffle", "pong", "state", "focus"]


class Loop(_Message):
    """What happens when a track ends: ``off`` (on to the next), ``track`` (the same
    again), ``queue`` (every ended track back to the end of the queue)."""

    type: Literal["loop"]
    mode: Literal["off", "track", "queue"]


class Seek(_Message):
    """Jump to *seconds* into the current track."""

    type: Literal["seek"]
    seconds: float = Field(ge=0, le=24 * 3600)


class Volume(_Message):
    """Set the gain: 0 (mute) to 2 (double)."""

    type: Literal["volume"]
    volume: float = Field(ge=0, le=2)


class EqualizerBand(_Message):
    """One of Lavalink's 15 bands (0 = 25 Hz ... 14 = 16 kHz): -0.25 mutes it, 0
    leaves it, 1.0 is the most boost."""

    band: int = Field(ge=0, le=14)
    gain: float = Field(ge=EQUALIZER_GAIN_MIN, le=EQUALIZER_GAIN_MAX)


class Timescale(_Message):
    """Lavalink's timescale: speed (tempo), pitch, rate (both), 1 = unchanged."""

    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    pitch: float = Field(default=1.0, ge=0.25, le=4.0)
    rate: float = Field(default=1.0, ge=0.25, le=4.0)


#: A filter the page may pass on as it is (the engine checks its values).
_Passed = dict[str, float | list[float]] | None


class FilterSet(_Message):
    """Lavalink v4's ``filters`` object. The keys the panel sets (``equalizer``,
    ``timescale``) are checked here; the others are passed on and the engine checks
    them (its refusal comes back in the ``state``'s ``error``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    volume: float | None = Field(default=None, ge=0.0, le=5.0)
    equalizer: list[EqualizerBand] | None = Field(default=None, max_length=15)
    timescale: Timescale | None = None
    karaoke: _Passed = None
    tremolo: _Passed = None
    vibrato: _Passed = None
    rotation: _Passed = None
    distortion: _Passed = None
    channel_mix: _Passed = Field(default=None, alias="channelMix")
    low_pass: _Passed = Field(default=None, alias="lowPass")

    def lavalink(self) -> dict[str, Any]:
        """The object to send to the engine (filters left out are off)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Filters(_Message):
    """Change how the music sounds: a named ``preset`` (``reset``: none), or a
    ``filters`` object of the user's own (the panel's equalizer, speed and pitch)."""

    type: Literal["filters"]
    preset: Preset | None = None
    filters: FilterSet | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Filters:
        if (self.preset is None) == (self.filters is None):
            raise ValueError("give either a preset or a filters object")
        return self


class Crossfade(_Message):
    """Fade each next track in over the last *seconds* of the one before (0: gapless)."""

    type: Literal["crossfade"]
    seconds: float = Field(ge=0, le=12)


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


class LyricsRequest(_Message):
    """The current track's lyrics (LRCLIB, through the gateway); answered by ``lyrics``."""

    type: Literal["lyrics"]


ClientMessage: TypeAlias = Annotated[
    Play | Add | Simple | Seek | Volume | Remove | Jump | Move | Search | Filters | Crossfade
    | Loop | LyricsRequest,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_TYPES = ("play", "add", "stop", "pause", "resume", "skip", "previous", "clear",
          "undo_clear", "shuffle", "loop", "pong", "state", "focus", "seek", "volume", "remove",
          "jump", "move", "search", "filters", "crossfade", "lyrics")


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
    except ValueError as exc:
        raise ValueError("message is not valid JSON") from exc
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
            raise ValueError(f"{kind} needs '{field}'") from exc
        if error["type"] == "extra_forbidden":
            raise ValueError(f"{kind} does not take '{field}'") from exc
        if error["type"] == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{kind}: {message}") from exc
        raise ValueError(f"{kind}: {field}: {error['msg']}") from exc
