"""Lavalink v4's REST JSON: tracks, load results, players, sessions, node info, errors.

Each model is one object of Lavalink's documentation (docs/api/rest.md of
lavalink-devs/Lavalink) with its keys spelled and ordered as Lavalink's own protocol
module (``dev.arbjerg.lavalink.protocol.v4``) writes them. Where the documentation and
the node differ, we write what the node writes: its JSON settings leave out a field
that still has its default (``encodeDefaults = false``) unless the field says otherwise,
so ``pluginInfo`` and ``userData`` are always there (``{}`` when empty), an error's
``trace`` and the REST stats' ``frameStats`` only when set, and a nullable field
without a default (``uri``, a player's ``track``) as ``null``.

``PlayerUpdate`` is a request body whose keys may be absent, ``null`` or set, and the
three mean different things (an absent ``track`` leaves the track alone, a ``null``
``encoded`` stops it): ``sent`` tells which keys the client sent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from protocol.lavalink.base import (
    JsonObject,
    LavalinkModel,
    Snowflake,
    StrictBool,
    StrictInt,
    StrictStr,
)
from protocol.lavalink.track import DecodedTrack, encode_track

__all__ = [
    "Cpu",
    "EmptyResult",
    "ErrorResponse",
    "ErrorResult",
    "FrameStats",
    "Git",
    "Info",
    "LoadResult",
    "LoadType",
    "Memory",
    "Player",
    "PlayerState",
    "PlayerUpdate",
    "PlayerUpdateTrack",
    "Playlist",
    "PlaylistInfo",
    "PlaylistResult",
    "Plugin",
    "SearchResult",
    "Session",
    "SessionUpdate",
    "Severity",
    "Stats",
    "Track",
    "TrackException",
    "TrackInfo",
    "TrackResult",
    "Version",
    "VoiceState",
    "parse_load_result",
]


class TrackInfo(LavalinkModel):
    """``info`` of a track: what a client shows about it."""

    identifier: StrictStr
    is_seekable: StrictBool
    author: StrictStr
    length: StrictInt
    is_stream: StrictBool
    position: StrictInt
    title: StrictStr
    uri: StrictStr | None
    source_name: StrictStr
    artwork_url: StrictStr | None
    isrc: StrictStr | None

    @classmethod
    def from_decoded(cls, track: DecodedTrack) -> TrackInfo:
        """The info Lavalink reports for a decoded track."""
        return cls(
            identifier=track.identifier, is_seekable=track.is_seekable, author=track.author,
            length=track.length, is_stream=track.is_stream, position=track.position,
            title=track.title, uri=track.uri, source_name=track.source_name,
            artwork_url=track.artwork_url, isrc=track.isrc,
        )


class Track(LavalinkModel):
    """A track: its encoded string, its info and free-form plugin and user data."""

    encoded: StrictStr
    info: TrackInfo
    plugin_info: JsonObject = Field(default_factory=dict)
    user_data: JsonObject = Field(default_factory=dict)

    @classmethod
    def from_decoded(cls, track: DecodedTrack, *, encoded: str | None = None,
                     user_data: JsonObject | None = None) -> Track:
        """The JSON track of *track*; *encoded* is the client's string when there was
        one (kept as sent), else ours.

        Raises:
            TrackEncodeError: if *track* cannot be encoded.
        """
        return cls(encoded=encoded if encoded is not None else encode_track(track),
                   info=TrackInfo.from_decoded(track), user_data=user_data or {})


class PlaylistInfo(LavalinkModel):
    """``info`` of a playlist; ``selected_track`` is -1 when none is selected."""

    name: StrictStr
    selected_track: StrictInt = -1


class Playlist(LavalinkModel):
    """A playlist's data in a ``playlist`` load result."""

    info: PlaylistInfo
    plugin_info: JsonObject = Field(default_factory=dict)
    tracks: tuple[Track, ...]


class Severity(StrEnum):
    """How much a failure says about the node itself (lavaplayer's ``FriendlyException``)."""

    #: The cause is known and expected (a private video, a 404).
    COMMON = "common"
    #: Probably outside factors (a site answered in an unexpected format).
    SUSPICIOUS = "suspicious"
    #: Likely a fault of ours, or unknown: Lavalink's default.
    FAULT = "fault"


class TrackException(LavalinkModel):
    """Lavalink's exception object (``error`` load results, ``TrackExceptionEvent``)."""

    message: StrictStr | None
    severity: Severity
    cause: StrictStr
    cause_stack_trace: StrictStr = ""


class LoadType(StrEnum):
    """``loadType`` of ``/v4/loadtracks``."""

    TRACK = "track"
    PLAYLIST = "playlist"
    SEARCH = "search"
    EMPTY = "empty"
    ERROR = "error"


class TrackResult(LavalinkModel):
    """One track was loaded."""

    load_type: Literal[LoadType.TRACK] = LoadType.TRACK
    data: Track


class PlaylistResult(LavalinkModel):
    """A playlist was loaded."""

    load_type: Literal[LoadType.PLAYLIST] = LoadType.PLAYLIST
    data: Playlist


class SearchResult(LavalinkModel):
    """A search (``ytsearch:``...) found these tracks (a JSON array as ``data``)."""

    load_type: Literal[LoadType.SEARCH] = LoadType.SEARCH
    data: tuple[Track, ...]


class EmptyResult(LavalinkModel):
    """Nothing matched. Lavalink writes ``"data": null`` (its documentation said ``{}``
    until lavalink-devs/Lavalink#1210 corrected it); both are read."""

    load_type: Literal[LoadType.EMPTY] = LoadType.EMPTY
    data: JsonObject | None = None


class ErrorResult(LavalinkModel):
    """Loading failed."""

    load_type: Literal[LoadType.ERROR] = LoadType.ERROR
    data: TrackException


#: Any answer of ``/v4/loadtracks``, told apart by ``loadType``.
LoadResult = Annotated[
    TrackResult | PlaylistResult | SearchResult | EmptyResult | ErrorResult,
    Field(discriminator="load_type"),
]
_LOAD_RESULT: TypeAdapter[
    TrackResult | PlaylistResult | SearchResult | EmptyResult | ErrorResult
] = TypeAdapter(LoadResult)


def parse_load_result(
    data: object,
) -> TrackResult | PlaylistResult | SearchResult | EmptyResult | ErrorResult:
    """The load result in the JSON value *data* (already parsed from text).

    Raises:
        pydantic.ValidationError: if *data* is not a load result.
    """
    return _LOAD_RESULT.validate_python(data)


class VoiceState(LavalinkModel):
    """The Discord voice credentials of a player.

    ``channel_id`` came with Lavalink 4.1 (DAVE needs it as the MLS group id); older
    clients omit it, which we accept, and a player then joins voice without DAVE.
    """

    token: StrictStr
    endpoint: StrictStr
    session_id: StrictStr
    channel_id: Snowflake | None = None


class PlayerState(LavalinkModel):
    """``state`` of a player: ``time`` is the node's Unix time in ms, ``ping`` is -1
    while not connected to Discord's voice gateway."""

    time: StrictInt
    position: StrictInt
    connected: StrictBool
    ping: StrictInt


class Player(LavalinkModel):
    """A player as ``GET /v4/sessions/{sessionId}/players/{guildId}`` returns it."""

    guild_id: Snowflake
    track: Track | None
    volume: Annotated[StrictInt, Field(ge=0, le=1000)]
    paused: StrictBool
    state: PlayerState
    voice: VoiceState
    filters: JsonObject = Field(default_factory=dict)


class PlayerUpdateTrack(LavalinkModel):
    """``track`` of a player update: ``encoded`` (``null`` stops) or ``identifier``
    (loaded and played), plus ``userData``."""

    encoded: StrictStr | None = None
    identifier: StrictStr | None = None
    user_data: JsonObject | None = None

    @property
    def sent(self) -> frozenset[str]:
        """Attribute names the client sent (``null`` counts as sent)."""
        return frozenset(self.model_fields_set)


class PlayerUpdate(LavalinkModel):
    """Body of ``PATCH /v4/sessions/{sessionId}/players/{guildId}``.

    ``encoded_track`` and ``identifier`` are the deprecated top-level forms of
    ``track.encoded`` and ``track.identifier``; Lavalink refuses a body with both forms.
    """

    encoded_track: StrictStr | None = None
    identifier: StrictStr | None = None
    track: PlayerUpdateTrack | None = None
    position: StrictInt | None = None
    end_time: StrictInt | None = None
    volume: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    paused: StrictBool | None = None
    filters: JsonObject | None = None
    voice: VoiceState | None = None

    @property
    def sent(self) -> frozenset[str]:
        """Attribute names the client sent (``null`` counts as sent)."""
        return frozenset(self.model_fields_set)


class Session(LavalinkModel):
    """A session's resuming settings; ``timeout`` is in seconds."""

    resuming: StrictBool
    timeout: StrictInt


class SessionUpdate(LavalinkModel):
    """Body of ``PATCH /v4/sessions/{sessionId}``; absent keys stay as they are."""

    resuming: StrictBool | None = None
    timeout: Annotated[StrictInt, Field(ge=0)] | None = None


class Version(LavalinkModel):
    """The node's version, semver split up."""

    semver: StrictStr
    major: StrictInt
    minor: StrictInt
    patch: StrictInt
    pre_release: StrictStr | None = None
    #: Documented, but absent from Lavalink's own model: written only when set.
    build: StrictStr | None = Field(default=None, exclude_if=lambda value: value is None)


class Git(LavalinkModel):
    """The node's source revision; ``commit_time`` in Unix ms."""

    branch: StrictStr
    commit: StrictStr
    commit_time: StrictInt


class Plugin(LavalinkModel):
    """A loaded plugin."""

    name: StrictStr
    version: StrictStr


class Info(LavalinkModel):
    """``GET /v4/info``."""

    version: Version
    build_time: StrictInt
    git: Git
    jvm: StrictStr
    lavaplayer: StrictStr
    source_managers: tuple[StrictStr, ...]
    filters: tuple[StrictStr, ...]
    plugins: tuple[Plugin, ...] = ()


class FrameStats(LavalinkModel):
    """Frames of the last minute: ``deficit`` is what fell short of 3000 per player."""

    sent: StrictInt
    nulled: StrictInt
    deficit: StrictInt


class Memory(LavalinkModel):
    """Memory in bytes (the JVM's figures in Lavalink; the process's for us)."""

    free: StrictInt
    used: StrictInt
    allocated: StrictInt
    reservable: StrictInt


class Cpu(LavalinkModel):
    """CPU: loads are fractions of the whole machine (0-1)."""

    cores: StrictInt
    system_load: float
    lavalink_load: float


class Stats(LavalinkModel):
    """``GET /v4/stats``. Lavalink leaves ``frameStats`` out there (its model's default,
    which its JSON settings do not write), so it is written only when set."""

    players: StrictInt
    playing_players: StrictInt
    uptime: StrictInt
    memory: Memory
    cpu: Cpu
    frame_stats: FrameStats | None = Field(default=None, exclude_if=lambda value: value is None)


class ErrorResponse(LavalinkModel):
    """Lavalink's error body: ``timestamp`` in Unix ms, ``error`` the status's reason
    phrase, ``trace`` only when the request asked for it (``?trace=true``)."""

    timestamp: StrictInt
    status: StrictInt
    error: StrictStr
    trace: StrictStr | None = Field(default=None, exclude_if=lambda value: value is None)
    message: StrictStr
    path: StrictStr
