"""Lavalink v4's WebSocket messages (docs/api/websocket.md of lavalink-devs/Lavalink).

The node only ever sends; each message is a JSON object whose ``op`` says what it is:
``ready`` once per connection, ``playerUpdate`` every few seconds per player, ``stats``
every minute and ``event`` for track and voice events (``type`` says which). Keys are
spelled and ordered as Lavalink's protocol module writes them.

``parse_message`` reads a message back (what a client does, and what our tests do with
the engine's output); ``TrackEndReason.may_start_next`` is Lavalink's hint to clients.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from protocol.lavalink.base import LavalinkModel, Snowflake, StrictBool, StrictInt, StrictStr
from protocol.lavalink.rest import Cpu, FrameStats, Memory, PlayerState, Track, TrackException

__all__ = [
    "EventType",
    "Message",
    "Op",
    "PlayerUpdateMessage",
    "ReadyMessage",
    "StatsMessage",
    "TrackEndEvent",
    "TrackEndReason",
    "TrackExceptionEvent",
    "TrackStartEvent",
    "TrackStuckEvent",
    "WebSocketClosedEvent",
    "parse_message",
]


class Op(StrEnum):
    """``op`` of a message."""

    READY = "ready"
    PLAYER_UPDATE = "playerUpdate"
    STATS = "stats"
    EVENT = "event"


class EventType(StrEnum):
    """``type`` of an ``event`` message."""

    TRACK_START = "TrackStartEvent"
    TRACK_END = "TrackEndEvent"
    TRACK_EXCEPTION = "TrackExceptionEvent"
    TRACK_STUCK = "TrackStuckEvent"
    WEBSOCKET_CLOSED = "WebSocketClosedEvent"


class TrackEndReason(StrEnum):
    """Why a track ended (lavaplayer's ``AudioTrackEndReason``)."""

    #: The track reached its end (or ended on an error after it had started).
    FINISHED = "finished"
    #: It failed before producing any audio.
    LOAD_FAILED = "loadFailed"
    #: The player was stopped (a ``null`` track, or the player destroyed).
    STOPPED = "stopped"
    #: Another track started in its place.
    REPLACED = "replaced"
    #: The player was left unused past the node's cleanup threshold.
    CLEANUP = "cleanup"

    @property
    def may_start_next(self) -> bool:
        """Whether a client should start its next track (``finished``, ``loadFailed``)."""
        return self in (TrackEndReason.FINISHED, TrackEndReason.LOAD_FAILED)


class ReadyMessage(LavalinkModel):
    """First message of a connection: the Lavalink session id (not Discord's)."""

    op: Literal[Op.READY] = Op.READY
    resumed: StrictBool
    session_id: StrictStr


class PlayerUpdateMessage(LavalinkModel):
    """A player's position and voice connection state."""

    op: Literal[Op.PLAYER_UPDATE] = Op.PLAYER_UPDATE
    state: PlayerState
    guild_id: Snowflake


class StatsMessage(LavalinkModel):
    """The node's figures; ``frame_stats`` is null while it has no players."""

    op: Literal[Op.STATS] = Op.STATS
    frame_stats: FrameStats | None = None
    players: StrictInt
    playing_players: StrictInt
    uptime: StrictInt
    memory: Memory
    cpu: Cpu


class TrackStartEvent(LavalinkModel):
    """A track started playing."""

    op: Literal[Op.EVENT] = Op.EVENT
    type: Literal[EventType.TRACK_START] = EventType.TRACK_START
    guild_id: Snowflake
    track: Track


class TrackEndEvent(LavalinkModel):
    """A track ended."""

    op: Literal[Op.EVENT] = Op.EVENT
    type: Literal[EventType.TRACK_END] = EventType.TRACK_END
    guild_id: Snowflake
    track: Track
    reason: TrackEndReason


class TrackExceptionEvent(LavalinkModel):
    """A track failed while loading or playing."""

    op: Literal[Op.EVENT] = Op.EVENT
    type: Literal[EventType.TRACK_EXCEPTION] = EventType.TRACK_EXCEPTION
    guild_id: Snowflake
    track: Track
    exception: TrackException


class TrackStuckEvent(LavalinkModel):
    """A track gave no audio for longer than ``threshold_ms``."""

    op: Literal[Op.EVENT] = Op.EVENT
    type: Literal[EventType.TRACK_STUCK] = EventType.TRACK_STUCK
    guild_id: Snowflake
    track: Track
    threshold_ms: StrictInt


class WebSocketClosedEvent(LavalinkModel):
    """The node's voice WebSocket to Discord closed for good (Discord's close code,
    its reason, and whether Discord closed it rather than the node)."""

    op: Literal[Op.EVENT] = Op.EVENT
    type: Literal[EventType.WEBSOCKET_CLOSED] = EventType.WEBSOCKET_CLOSED
    guild_id: Snowflake
    code: StrictInt
    reason: StrictStr
    by_remote: StrictBool


_Event = Annotated[
    TrackStartEvent | TrackEndEvent | TrackExceptionEvent | TrackStuckEvent
    | WebSocketClosedEvent,
    Field(discriminator="type"),
]
#: Any message a Lavalink node sends.
Message = (
    ReadyMessage | PlayerUpdateMessage | StatsMessage | TrackStartEvent | TrackEndEvent
    | TrackExceptionEvent | TrackStuckEvent | WebSocketClosedEvent
)
_NON_EVENT: TypeAdapter[ReadyMessage | PlayerUpdateMessage | StatsMessage] = TypeAdapter(
    Annotated[ReadyMessage | PlayerUpdateMessage | StatsMessage, Field(discriminator="op")])
_EVENT: TypeAdapter[
    TrackStartEvent | TrackEndEvent | TrackExceptionEvent | TrackStuckEvent
    | WebSocketClosedEvent
] = TypeAdapter(_Event)


def parse_message(data: object) -> Message:
    """The message in the JSON value *data* (already parsed from text).

    Raises:
        pydantic.ValidationError: if *data* is not a Lavalink v4 message.
    """
    if isinstance(data, dict) and data.get("op") == Op.EVENT:
        return _EVENT.validate_python(data)
    return _NON_EVENT.validate_python(data)
