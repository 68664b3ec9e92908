"""Lavalink's REST and WebSocket JSON, checked against the client libraries' own code.

Two checks per object: the keys wavelink and mafic declare for it (their TypedDicts,
read recursively: every key they require is present, every ``Literal`` value is one they
know), and their parsers (``wavelink.Playable``, ``mafic.Track``, lavalink.py's
``LoadResult.from_dict``) reading what we write. The libraries' TypedDicts say ``str``
where Lavalink sends ``null`` (``uri``, ``isrc``), so plain value types are not compared.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import lavalink
import mafic
import mafic.typings
import pytest
import typing_extensions
import wavelink
import wavelink.types
from pydantic import ValidationError

from protocol.lavalink import (
    Cpu,
    DecodedTrack,
    EmptyResult,
    ErrorResponse,
    ErrorResult,
    FrameStats,
    Git,
    Info,
    Memory,
    Player,
    PlayerState,
    PlayerUpdate,
    PlayerUpdateMessage,
    Playlist,
    PlaylistInfo,
    PlaylistResult,
    Plugin,
    ReadyMessage,
    SearchResult,
    Session,
    Severity,
    Stats,
    StatsMessage,
    Track,
    TrackEndEvent,
    TrackEndReason,
    TrackException,
    TrackExceptionEvent,
    TrackResult,
    TrackStartEvent,
    TrackStuckEvent,
    Version,
    VoiceState,
    WebSocketClosedEvent,
    decode_track,
    parse_load_result,
    parse_message,
)

GUILD = "817327181659111454"
DECODED = DecodedTrack(
    title="Tone", author="audiogate", length=12_000, identifier="https://media.test/a.mp3",
    is_stream=False, uri="https://media.test/a.mp3", artwork_url=None, isrc=None,
    source_name="http", position=0, details=b"\x00\x03mp3")
TRACK = Track.from_decoded(DECODED, user_data={"requester": 42})
EXCEPTION = TrackException(message="Something went wrong", severity=Severity.FAULT,
                           cause="java.lang.Exception: boom", cause_stack_trace="at ...")
STATE = PlayerState(time=1_700_000_000_000, position=6_000, connected=True, ping=12)
VOICE = VoiceState(token="tok", endpoint="voice.test:443", session_id="abc",
                   channel_id="927310423890473011")
STATS = dict(players=2, playing_players=1, uptime=60_000,
             memory=Memory(free=1, used=2, allocated=3, reservable=4),
             cpu=Cpu(cores=2, system_load=0.5, lavalink_load=0.1))


# -- the libraries' declared shapes --------------------------------------------------------


def _namespace(package: types.ModuleType) -> dict[str, Any]:
    """Every name of *package*'s modules, plus the ones they import only for type
    checkers (``NotRequired``, ``Literal``), to resolve their string annotations."""
    names: dict[str, Any] = {"NotRequired": typing_extensions.NotRequired,
                             "Literal": Literal, "Never": typing_extensions.Never}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        names |= {k: v for k, v in vars(module).items() if not k.startswith("__")}
    return names


PACKAGES = {"wavelink": wavelink.types, "mafic": mafic.typings}


@pytest.fixture
def library_types(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """The libraries' TypedDicts by name, their annotations made resolvable: a
    TypedDict's string annotations resolve in its own module, so the names imported
    there only under ``TYPE_CHECKING`` are set on each module for this test."""
    namespaces = {}
    for library, package in PACKAGES.items():
        namespace = _namespace(package)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, value in namespace.items():
                if not hasattr(module, name):
                    monkeypatch.setattr(module, name, value, raising=False)
        namespaces[library] = namespace
    return namespaces


def _problems(value: Any, hint: Any, path: str, namespace: dict[str, Any]) -> list[str]:
    origin = get_origin(hint)
    if origin in (typing_extensions.NotRequired, typing.NotRequired):
        return _problems(value, get_args(hint)[0], path, namespace)
    if typing_extensions.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        found = []
        hints = typing.get_type_hints(hint, globalns=namespace, include_extras=True)
        for key, sub in hints.items():
            optional = (get_origin(sub) in (typing_extensions.NotRequired, typing.NotRequired)
                        or not hint.__total__)
            if key in value:
                found += _problems(value[key], sub, f"{path}.{key}", namespace)
            elif not optional:
                found.append(f"{path}.{key}: missing")
        return found
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{path}: {value!r} not in {get_args(hint)}"]
    if origin is list and isinstance(value, list):
        return [p for i, item in enumerate(value)
                for p in _problems(item, get_args(hint)[0], f"{path}[{i}]", namespace)]
    if origin in (Union, types.UnionType):
        if value is None:
            return []
        options = [_problems(value, arg, path, namespace) for arg in get_args(hint)
                   if arg is not type(None)]
        return [] if any(not found for found in options) else min(options, key=len)
    return []


def test_the_checker_notices_a_misspelt_key(library_types: dict[str, dict[str, Any]]) -> None:
    wrong = TRACK.dump() | {"info": {**TRACK.dump()["info"], "sourcename": "http"}}
    del wrong["info"]["sourceName"]
    namespace = library_types["wavelink"]
    assert _problems(wrong, namespace["TrackPayload"], "t", namespace) == [
        "t.info.sourceName: missing"]


@pytest.mark.parametrize(("model", "library", "type_name"), [
    (TRACK, "wavelink", "TrackPayload"),
    (TRACK, "mafic", "TrackWithInfo"),
    (TrackResult(data=TRACK), "wavelink", "TrackLoadedResponse"),
    (PlaylistResult(data=Playlist(info=PlaylistInfo(name="Mix", selected_track=0),
                                  tracks=(TRACK, TRACK))), "wavelink", "PlaylistLoadedResponse"),
    (SearchResult(data=(TRACK,)), "wavelink", "SearchLoadedResponse"),
    (EmptyResult(), "wavelink", "EmptyLoadedResponse"),
    (ErrorResult(data=EXCEPTION), "wavelink", "ErrorLoadedResponse"),
    (ErrorResponse(timestamp=1667857581613, status=404, error="Not Found",
                   message="Session not found", path="/v4/sessions/x/players/1"),
     "wavelink", "ErrorResponse"),
    (Player(guild_id=GUILD, track=TRACK, volume=100, paused=False, state=STATE,
            voice=VOICE, filters={}), "wavelink", "PlayerResponse"),
    (VOICE, "mafic", "VoiceStateRequest"),
    (Session(resuming=True, timeout=60), "wavelink", "UpdateResponse"),
    (Info(version=Version(semver="4.1.1", major=4, minor=1, patch=1),
          build_time=0, git=Git(branch="main", commit="abc", commit_time=0),
          jvm="none", lavaplayer="none", source_managers=("http", "local"),
          filters=("volume",), plugins=(Plugin(name="x", version="1"),)),
     "wavelink", "InfoResponse"),
    (Stats(**STATS), "wavelink", "StatsResponse"),
    (StatsMessage(**STATS, frame_stats=FrameStats(sent=3000, nulled=0, deficit=0)),
     "wavelink", "StatsOP"),
    (ReadyMessage(resumed=False, session_id="s1"), "wavelink", "ReadyOP"),
    (ReadyMessage(resumed=True, session_id="s1"), "mafic", "ReadyPayload"),
    (PlayerUpdateMessage(guild_id=GUILD, state=STATE), "wavelink", "PlayerUpdateOP"),
    (PlayerUpdateMessage(guild_id=GUILD, state=STATE), "mafic", "PlayerUpdatePayload"),
    (TrackStartEvent(guild_id=GUILD, track=TRACK), "wavelink", "TrackStartEvent"),
    (TrackStartEvent(guild_id=GUILD, track=TRACK), "mafic", "TrackStartEvent"),
    (TrackEndEvent(guild_id=GUILD, track=TRACK, reason=TrackEndReason.LOAD_FAILED),
     "wavelink", "TrackEndEvent"),
    (TrackEndEvent(guild_id=GUILD, track=TRACK, reason=TrackEndReason.CLEANUP),
     "mafic", "TrackEndEvent"),
    (TrackExceptionEvent(guild_id=GUILD, track=TRACK, exception=EXCEPTION),
     "wavelink", "TrackExceptionEvent"),
    (TrackExceptionEvent(guild_id=GUILD, track=TRACK, exception=EXCEPTION),
     "mafic", "TrackExceptionEvent"),
    (TrackStuckEvent(guild_id=GUILD, track=TRACK, threshold_ms=10_000),
     "wavelink", "TrackStuckEvent"),
    (TrackStuckEvent(guild_id=GUILD, track=TRACK, threshold_ms=10_000),
     "mafic", "TrackStuckEvent"),
    (WebSocketClosedEvent(guild_id=GUILD, code=4014, reason="Disconnected", by_remote=True),
     "wavelink", "WebsocketClosedEvent"),
    (WebSocketClosedEvent(guild_id=GUILD, code=4006, reason="", by_remote=True),
     "mafic", "WebSocketClosedEvent"),
], ids=lambda value: value if isinstance(value, str) else type(value).__name__)
def test_what_we_write_has_every_key_the_client_libraries_declare(
        model: Any, library: str, type_name: str,
        library_types: dict[str, dict[str, Any]]) -> None:
    namespace = library_types[library]
    value = json.loads(model.dump_json())
    assert not _problems(value, namespace[type_name], type_name, namespace)


# -- the libraries' parsers ----------------------------------------------------------------


def test_wavelink_mafic_and_lavalink_py_read_our_track() -> None:
    data = json.loads(TRACK.dump_json())
    playable = wavelink.Playable(data)
    assert (playable.encoded, playable.title, playable.length, playable.source,
            playable.uri, playable.is_seekable) == (
        TRACK.encoded, "Tone", 12_000, "http", "https://media.test/a.mp3", True)
    track = mafic.Track.from_data_with_info(data)
    assert (track.id, track.title, track.length, track.source, track.seekable) == (
        TRACK.encoded, "Tone", 12_000, "http", True)
    audio = lavalink.AudioTrack(data, 0)
    assert (audio.track, audio.title, audio.user_data) == (TRACK.encoded, "Tone",
                                                             {"requester": 42})
    assert decode_track(playable.encoded) == DECODED


def test_lavalink_py_reads_every_load_result_type() -> None:
    playlist = PlaylistResult(data=Playlist(info=PlaylistInfo(name="Mix", selected_track=1),
                                            tracks=(TRACK, TRACK)))
    cases = [
        (TrackResult(data=TRACK), lavalink.LoadType.TRACK, 1),
        (playlist, lavalink.LoadType.PLAYLIST, 2),
        (SearchResult(data=(TRACK, TRACK, TRACK)), lavalink.LoadType.SEARCH, 3),
        (EmptyResult(), lavalink.LoadType.EMPTY, 0),
        (ErrorResult(data=EXCEPTION), lavalink.LoadType.ERROR, 0),
    ]
    for model, load_type, count in cases:
        result = lavalink.LoadResult.from_dict(json.loads(model.dump_json()))
        assert (result.load_type, len(result.tracks)) == (load_type, count)
    result = lavalink.LoadResult.from_dict(playlist.dump())
    assert (result.playlist_info.name, result.selected_track.title) == ("Mix", "Tone")
    error = lavalink.LoadResult.from_dict(ErrorResult(data=EXCEPTION).dump()).error
    assert (error.message, error.severity) == ("Something went wrong",
                                               lavalink.Severity.FAULT)


def test_wavelink_and_mafic_read_our_playlist() -> None:
    data = Playlist(info=PlaylistInfo(name="Mix", selected_track=0),
                    tracks=(TRACK,)).dump()
    assert (wavelink.Playlist(data).name, len(wavelink.Playlist(data).tracks)) == ("Mix", 1)
    playlist = mafic.Playlist(info=data["info"], tracks=data["tracks"],
                              plugin_info=data["pluginInfo"])
    assert (playlist.name, playlist.selected_track, len(playlist.tracks)) == ("Mix", 0, 1)


def test_our_enums_spell_values_as_lavalink_py_does() -> None:
    assert {r.value for r in TrackEndReason} == {r.value for r in lavalink.EndReason}
    assert {s.value for s in Severity} == {s.value for s in lavalink.Severity}
    assert [r for r in TrackEndReason if r.may_start_next] == [
        TrackEndReason.FINISHED, TrackEndReason.LOAD_FAILED]


# -- exact JSON ------------------------------------------------------------------------------


def test_a_track_writes_lavalinks_keys_in_lavalinks_order() -> None:
    assert list(TRACK.dump()) == ["encoded", "info", "pluginInfo", "userData"]
    assert list(TRACK.dump()["info"]) == [
        "identifier", "isSeekable", "author", "length", "isStream", "position", "title",
        "uri", "sourceName", "artworkUrl", "isrc"]


def test_the_error_body_has_trace_only_when_asked() -> None:
    body = ErrorResponse(timestamp=1, status=400, error="Bad Request", message="m", path="/p")
    assert body.dump() == {"timestamp": 1, "status": 400, "error": "Bad Request",
                           "message": "m", "path": "/p"}
    traced = ErrorResponse(timestamp=1, status=400, error="Bad Request", message="m",
                           path="/p", trace="stack")
    assert list(traced.dump()) == ["timestamp", "status", "error", "trace", "message", "path"]


def test_every_message_reads_back_as_itself() -> None:
    messages = [
        ReadyMessage(resumed=False, session_id="s"),
        PlayerUpdateMessage(guild_id=GUILD, state=STATE),
        StatsMessage(**STATS),
        TrackStartEvent(guild_id=GUILD, track=TRACK),
        TrackEndEvent(guild_id=GUILD, track=TRACK, reason=TrackEndReason.REPLACED),
        TrackExceptionEvent(guild_id=GUILD, track=TRACK, exception=EXCEPTION),
        TrackStuckEvent(guild_id=GUILD, track=TRACK, threshold_ms=5),
        WebSocketClosedEvent(guild_id=GUILD, code=4014, reason="gone", by_remote=True),
    ]
    for message in messages:
        assert parse_message(json.loads(message.dump_json())) == message
    assert StatsMessage(**STATS).dump()["frameStats"] is None
    assert "frameStats" not in Stats(**STATS).dump()
    assert EmptyResult().dump() == {"loadType": "empty", "data": None}
    assert parse_load_result({"loadType": "empty", "data": {}}) == EmptyResult(data={})
    for result in (TrackResult(data=TRACK), EmptyResult(), ErrorResult(data=EXCEPTION)):
        assert parse_load_result(json.loads(result.dump_json())) == result


def test_a_player_update_tells_absent_from_null() -> None:
    stop = PlayerUpdate.model_validate({"track": {"encoded": None}})
    assert stop.track is not None and stop.track.sent == {"encoded"}
    assert stop.track.encoded is None and stop.sent == {"track"}
    pause = PlayerUpdate.model_validate({"paused": True, "position": 30_000})
    assert pause.sent == {"paused", "position"} and pause.track is None
    voice = PlayerUpdate.model_validate(
        {"voice": {"token": "t", "endpoint": "e", "sessionId": "s", "channelId": "1"}})
    assert voice.voice == VoiceState(token="t", endpoint="e", session_id="s", channel_id="1")
    old_client = PlayerUpdate.model_validate(
        {"voice": {"token": "t", "endpoint": "e", "sessionId": "s"}, "unknownKey": 1})
    assert old_client.voice is not None and old_client.voice.channel_id is None


@pytest.mark.parametrize("body", [
    {"volume": "100"}, {"volume": 1001}, {"volume": -1}, {"paused": "yes"},
    {"position": 1.5}, {"voice": {"token": "t", "endpoint": "e"}},
    {"voice": {"token": "t", "endpoint": "e", "sessionId": "s", "channelId": "abc"}},
])
def test_a_player_update_of_the_wrong_types_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PlayerUpdate.model_validate(body)


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        TRACK.encoded = "x"  # type: ignore[misc]
