"""The Lavalink v4 face of the real engine process, spoken to as Lavalink's documentation
and its node say (plain HTTP and a plain WebSocket; the client libraries are in
test_lavalink_clients.py): the password check, info/version/stats, every load type,
track decoding, Lavalink's error body and statuses, sessions and players, the route
planner without one, load failures as events, resuming, and "a guild is either a
Lavalink player or a Go session, never both"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import lavalink
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol.lavalink import (
    DecodedTrack,
    Info,
    Stats,
    encode_track,
    parse_load_result,
    probe_details,
)

from .support.lavalink import PASSWORD, USER_ID, LavalinkSocket
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(120)

AUTH = {"Authorization": PASSWORD}
ERROR_KEYS = ["timestamp", "status", "error", "message", "path"]


@pytest.fixture(scope="module")
def node(media_dir: Path) -> Iterator[EngineProcess]:
    """An engine with its Lavalink face on (two workers, a playerUpdate a second)."""
    with EngineProcess({"LAVALINK_SERVER_PASSWORD": PASSWORD, "ENGINE_WORKERS": "2",
                        "LAVALINK_SERVER_PLAYERUPDATEINTERVAL": "1"},
                       media_dir=media_dir, allow_private=True) as process:
        yield process


@pytest.fixture
async def api(node: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, headers=AUTH, timeout=30) as client:
        yield client


def _error(response: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ERROR_KEYS
    assert body["status"] == status and body["path"] == response.request.url.path
    if message is not None:
        assert body["message"] == message
    return body


async def test_the_password_is_checked_as_lavalink_does(node: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=node.url) as plain:
        for path in ("/version", "/v4/info", "/v4/stats", "/v4/loadtracks?identifier=x",
                     "/v4/sessions/x/players"):
            missing = await plain.get(path)
            wrong = await plain.get(path, headers={"Authorization": "wrong"})
            # Lavalink's filter: no header 401, a wrong one 403, and nothing else.
            assert (missing.status_code, missing.content) == (401, b""), path
            assert (wrong.status_code, wrong.content) == (403, b""), path
        # The Go API stays as it was: no token is set, so it needs none.
        assert (await plain.get("/health")).status_code == 200
        assert (await plain.get("/sessions")).status_code == 200
    for headers in ({"User-Id": str(USER_ID)},
                    {"Authorization": "wrong", "User-Id": str(USER_ID)}):
        with pytest.raises(Exception, match="HTTP 401"):
            async with LavalinkSocket(node.url, password=headers.get("Authorization", "")):
                pass
    with pytest.raises(Exception, match="HTTP 400"):
        async with LavalinkSocket(node.url, user_id=0):
            pass


async def test_version_info_and_stats(api: httpx.AsyncClient) -> None:
    version = await api.get("/version")
    assert version.text == "4.0.0" and version.headers["lavalink-api-version"] == "4"
    assert version.headers["content-type"].startswith("text/plain")
    info = Info.model_validate((await api.get("/v4/info")).json())
    assert info.version.major == 4 and info.plugins == ()
    assert {"http", "local"} <= set(info.source_managers)
    assert {"volume", "equalizer", "timescale", "lowPass"} <= set(info.filters)
    stats = (await api.get("/v4/stats")).json()
    Stats.model_validate(stats)
    assert "frameStats" not in stats  # the node leaves it out on REST
    assert stats["cpu"]["cores"] >= 1 and stats["memory"]["used"] > 0


async def test_every_load_type(api: httpx.AsyncClient, media_dir: Path,
                               media_server: MediaServer, tmp_path: Path) -> None:
    # A local file under ENGINE_MEDIA_DIR: a "local" track; an http link: "http".
    local = (await api.get("/v4/loadtracks", params={"identifier": str(media_dir / "a.mp3")}
                           )).json()
    result = parse_load_result(local)
    assert local["loadType"] == "track"
    info = local["data"]["info"]
    assert (info["sourceName"], info["title"], info["isStream"]) == ("local", "a", False)
    assert abs(info["length"] - 12_000) < 100 and info["uri"] == str(media_dir / "a.mp3")
    # lavalink.py's own decoder reads our track as Lavalink wrote it.
    decoded = lavalink.decode_track(local["data"]["encoded"])
    assert (decoded.title, decoded.source_name, decoded.identifier) == (
        "a", "local", str(media_dir / "a.mp3"))
    assert result.load_type == "track"
    remote = (await api.get("/v4/loadtracks", params={"identifier": media_server.url("b.mp3")}
                            )).json()
    assert remote["loadType"] == "track" and remote["data"]["info"]["sourceName"] == "http"
    assert remote["data"]["pluginInfo"] == {} and remote["data"]["userData"] == {}
    # A podcast feed (yt-dlp reads it): a playlist of http tracks.
    feed = media_dir / "feed.xml"
    items = "".join(
        f"<item><title>{name} tone</title><enclosure url=\"{media_server.url(name + '.mp3')}\" "
        f"type=\"audio/mpeg\" length=\"1\"/></item>" for name in ("c", "d"))
    feed.write_text(f"<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Tones"
                    f"</title><link>{media_server.url('')}</link><description>t</description>"
                    f"{items}</channel></rss>")
    playlist = (await api.get("/v4/loadtracks",
                              params={"identifier": media_server.url("feed.xml")})).json()
    parse_load_result(playlist)
    assert playlist["loadType"] == "playlist", playlist
    assert playlist["data"]["info"] == {"name": "Tones", "selectedTrack": -1}
    assert [t["info"]["title"] for t in playlist["data"]["tracks"]] == ["c tone", "d tone"]
    assert {t["info"]["sourceName"] for t in playlist["data"]["tracks"]} == {"http"}
    # A search: yt-dlp's YouTube search (offline here: an error result in Lavalink's
    # shape; online: YouTube tracks).
    search = (await api.get("/v4/loadtracks", params={"identifier": "ytsearch:a tone"})).json()
    parse_load_result(search)
    if search["loadType"] == "search":
        assert search["data"] and search["data"][0]["info"]["sourceName"] == "youtube"
    else:
        assert search["loadType"] == "error"
        assert search["data"]["severity"] == "suspicious" and search["data"]["message"]
    # Nothing matches a bare word (no default search), a missing file is an error, a
    # file outside the media directory too (named without the server's paths).
    assert (await api.get("/v4/loadtracks", params={"identifier": "hello"})).json() == {
        "loadType": "empty", "data": None}
    missing = (await api.get("/v4/loadtracks",
                             params={"identifier": str(media_dir / "nope.mp3")})).json()
    assert missing["loadType"] == "error" and missing["data"]["severity"] == "common"
    assert "nope.mp3" in missing["data"]["message"]
    outside = (await api.get("/v4/loadtracks", params={"identifier": "/etc/passwd"})).json()
    assert outside["loadType"] == "error" and "/etc" not in outside["data"]["message"]
    _error(await api.get("/v4/loadtracks"), 400)


async def test_decoding_tracks(api: httpx.AsyncClient, media_dir: Path) -> None:
    track = DecodedTrack(title="Ünïcode 🎵", author="someone", length=61_000,
                         identifier="https://example.com/x.mp3", is_stream=False,
                         uri="https://example.com/x.mp3", artwork_url=None, isrc=None,
                         source_name="http", position=1500, details=probe_details("mp3"))
    encoded = encode_track(track)
    one = await api.get("/v4/decodetrack", params={"encodedTrack": encoded})
    assert one.status_code == 200
    body = one.json()
    assert body["encoded"] == encoded
    assert body["info"]["title"] == "Ünïcode 🎵" and body["info"]["position"] == 1500
    also = await api.get("/v4/decodetrack", params={"track": encoded})
    assert also.json() == body
    # A track lavalink.py encoded decodes too.
    version, theirs = lavalink.encode_track({
        "title": "t", "author": "a", "length": 1000, "identifier": "id1", "isStream": False,
        "uri": None, "artworkUrl": None, "isrc": None, "sourceName": "youtube",
        "position": 0})
    assert version == 3
    many = await api.post("/v4/decodetracks", json=[encoded, theirs])
    assert many.status_code == 200
    assert [t["info"]["identifier"] for t in many.json()] == ["https://example.com/x.mp3",
                                                             "id1"]
    _error(await api.get("/v4/decodetrack", params={"encodedTrack": "QAAA"}), 400)
    _error(await api.get("/v4/decodetrack"), 400, "No track to decode provided")
    _error(await api.post("/v4/decodetracks", json=[]), 400, "No tracks to decode provided")
    _error(await api.post("/v4/decodetracks", content=b"{"), 400)


async def test_errors_have_lavalinks_body_and_statuses(api: httpx.AsyncClient) -> None:
    body = _error(await api.get("/v4/sessions/nosuchsession/players"), 404, "Session not found")
    assert "trace" not in body
    traced = (await api.get("/v4/sessions/nosuchsession/players",
                            params={"trace": "true"})).json()
    assert list(traced) == ["timestamp", "status", "error", "trace", "message", "path"]
    _error(await api.get("/v4/nosuchpath"), 404)
    # No route planner is configured: status is 204, freeing is Lavalink's 500.
    status = await api.get("/v4/routeplanner/status")
    assert (status.status_code, status.content) == (204, b"")
    _error(await api.post("/v4/routeplanner/free/all"), 500,
           "Can't access disabled route planner")
    _error(await api.post("/v4/routeplanner/free/address", json={"address": "1.0.0.1"}), 500,
           "Can't access disabled route planner")


async def test_sessions_and_bad_player_updates(node: EngineProcess, api: httpx.AsyncClient
                                               ) -> None:
    async with LavalinkSocket(node.url) as socket:
        ready = await socket.ready()
        assert ready["resumed"] is False and len(ready["sessionId"]) == 16
        assert socket.response_headers["session-resumed"] == "false"
        session = ready["sessionId"]
        await socket.wait_for(lambda m: m["op"] == "stats")  # at once, then every minute
        patched = await api.patch(f"/v4/sessions/{session}",
                                  json={"resuming": True, "timeout": 30})
        assert patched.json() == {"resuming": True, "timeout": 30}
        assert (await api.get(f"/v4/sessions/{session}/players")).json() == []
        players = f"/v4/sessions/{session}/players"
        _error(await api.get(f"{players}/123"), 404, "Player not found")
        _error(await api.get(f"{players}/not-a-guild"), 400)
        _error(await api.patch(f"{players}/123", json={"encodedTrack": "x",
                                                       "identifier": "y"}), 400)
        _error(await api.patch(f"{players}/123", json={"track": {"encoded": None},
                                                       "encodedTrack": None}), 400)
        _error(await api.patch(f"{players}/123", json={"endTime": 0}), 400,
               "End time must be greater than 0")
        _error(await api.patch(f"{players}/123", json={"voice": {
            "token": "", "endpoint": "x", "sessionId": "s"}}), 400)
        _error(await api.patch(f"{players}/123", json={"volume": 1001}), 400)
        _error(await api.patch(f"{players}/123", json={"filters": {"timescale": {
            "speed": -1}}}), 400)
        _error(await api.patch(f"{players}/123", json={"track": {"encoded": "garbage"}}), 400)
        # None of those made a player.
        assert (await api.get(players)).json() == []
        # Settings without a track make one, and it says so.
        made = await api.patch(f"{players}/123", json={"volume": 50, "paused": True,
                                                       "filters": {"volume": 0.5}})
        assert made.status_code == 200
        player = made.json()
        assert (player["guildId"], player["track"], player["volume"], player["paused"]) == (
            "123", None, 50, True)
        assert player["filters"] == {"volume": 0.5}
        assert player["voice"] == {"token": "", "endpoint": "", "sessionId": "",
                                   "channelId": None}
        assert player["state"]["connected"] is False and player["state"]["ping"] == -1
        deleted = await api.delete(f"{players}/123")
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert (await api.get(players)).json() == []


async def test_a_load_failure_is_an_exception_then_load_failed(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    gone = DecodedTrack(title="gone", author="x", length=5000,
                        identifier=str(media_dir / "gone.mp3"), is_stream=False,
                        uri=str(media_dir / "gone.mp3"), artwork_url=None, isrc=None,
                        source_name="local", details=probe_details("mp3"))
    async with LavalinkSocket(node.url) as socket:
        session = (await socket.ready())["sessionId"]
        answer = await api.patch(f"/v4/sessions/{session}/players/424242",
                                 json={"track": {"encoded": encode_track(gone),
                                                 "userData": {"requester": 7}}})
        assert answer.status_code == 200
        assert answer.json()["track"]["userData"] == {"requester": 7}
        start, = await socket.event("TrackStartEvent")
        exception, = await socket.event("TrackExceptionEvent")
        end, = await socket.event("TrackEndEvent")
        assert start["track"]["info"]["title"] == "gone"
        assert exception["exception"]["severity"] == "common"
        assert "gone.mp3" in exception["exception"]["message"]
        assert end["reason"] == "loadFailed" and end["track"]["userData"] == {"requester": 7}
        order = [m["type"] for m in socket.events()]
        assert order == ["TrackStartEvent", "TrackExceptionEvent", "TrackEndEvent"]
        player = (await api.get(f"/v4/sessions/{session}/players/424242")).json()
        assert player["track"] is None
        # An identifier that loads nothing is refused at once, as Lavalink does.
        _error(await api.patch(f"/v4/sessions/{session}/players/424242",
                               json={"identifier": "hello"}), 400,
               "No matches found for identifier")
        _error(await api.patch(f"/v4/sessions/{session}/players/424242",
                               json={"identifier": str(media_dir / "gone.mp3")}), 500)


async def test_stop_no_replace_and_destroy_end_tracks_as_lavalink_says(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    tracks = {name: (await api.get("/v4/loadtracks", params={
        "identifier": str(media_dir / f"{name}.mp3")})).json()["data"]["encoded"]
        for name in ("a", "b")}
    async with LavalinkSocket(node.url) as socket:
        session = (await socket.ready())["sessionId"]
        player = f"/v4/sessions/{session}/players/777005"
        # No voice connection: the tracks wait for one, so they never end by themselves.
        await api.patch(player, json={"track": {"encoded": tracks["a"]}})
        kept = await api.patch(player, params={"noReplace": "true"},
                               json={"track": {"encoded": tracks["b"]}})
        assert kept.json()["track"]["info"]["title"] == "a"
        replaced = await api.patch(player, json={"track": {"encoded": tracks["b"]}})
        assert replaced.json()["track"]["info"]["title"] == "b"
        stopped = await api.patch(player, json={"track": {"encoded": None}})
        assert stopped.json()["track"] is None
        await api.patch(player, json={"encodedTrack": tracks["a"], "position": 3000,
                                      "endTime": 9000})
        state = (await api.get(player)).json()
        assert state["track"]["info"]["position"] == 3000
        deleted = await api.delete(player)
        assert deleted.status_code == 204
        ends = await socket.event("TrackEndEvent", count=3)
        assert [(e["track"]["info"]["title"], e["reason"]) for e in ends] == [
            ("a", "replaced"), ("b", "stopped"), ("a", "cleanup")]
        starts = socket.events("TrackStartEvent")
        assert [e["track"]["info"]["title"] for e in starts] == ["a", "b", "a"]
        await asyncio.sleep(0.3)  # the engine's own word on these plays is not repeated
        assert len(socket.events("TrackEndEvent")) == 3


async def test_a_guild_is_a_lavalink_player_or_a_go_session(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    async with httpx.AsyncClient(base_url=node.url) as go, LavalinkSocket(node.url) as socket:
        session = (await socket.ready())["sessionId"]
        players = f"/v4/sessions/{session}/players"
        assert (await api.patch(f"{players}/5550001", json={"volume": 80})).status_code == 200
        for call, body in (("play", {"url": str(media_dir / "a.mp3")}), ("stop", None),
                           ("pause", None), ("volume", {"volume": 0.5})):
            refused = await go.post(f"/session/5550001/{call}", json=body)
            assert refused.status_code == 409, call
            assert refused.json()["status"] == "error"
            assert "Lavalink player" in refused.json()["message"]
        # The other way round: a live Go session's guild cannot become a player.
        played = await go.post("/session/5550002/play", json={"url": str(media_dir / "b.mp3"),
                                                              "format": "opus"})
        assert played.status_code == 200
        body = _error(await api.patch(f"{players}/5550002", json={"volume": 80}), 409)
        assert "Go session" in body["message"]
        await go.post("/session/5550002/stop")
        # Once the player is gone, its guild may be a Go session again.
        await api.delete(f"{players}/5550001")
        again = await go.post("/session/5550001/play", json={"url": str(media_dir / "a.mp3")})
        assert again.status_code == 200
        await go.post("/session/5550001/stop")


async def test_a_resumed_session_keeps_its_players(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    short = (await api.get("/v4/loadtracks",
                           params={"identifier": str(media_dir / "short_c.mp3")})).json()
    async with LavalinkSocket(node.url) as first:
        session = (await first.ready())["sessionId"]
        await api.patch(f"/v4/sessions/{session}", json={"resuming": True, "timeout": 20})
        # No voice connection yet: the track waits for one, as Lavalink's player does.
        await api.patch(f"/v4/sessions/{session}/players/777001",
                        json={"volume": 70, "track": {"encoded": short["data"]["encoded"]}})
        await first.event("TrackStartEvent")
    # Away (once the node saw the socket close): Lavalink answers 404 for the session
    # until it is resumed.
    async def away() -> bool:
        return (await api.get(f"/v4/sessions/{session}/players")).status_code == 404

    await poll_until_async(away, timeout=10)
    _error(await api.get(f"/v4/sessions/{session}/players"), 404, "Session not found")
    async with LavalinkSocket(node.url, session_id=session) as second:
        ready = await second.ready()
        assert ready == {"op": "ready", "resumed": True, "sessionId": session}
        assert second.response_headers["session-resumed"] == "true"
        update, = await second.wait_for(lambda m: m["op"] == "playerUpdate")
        assert update["guildId"] == "777001" and update["state"]["connected"] is False
        players = (await api.get(f"/v4/sessions/{session}/players")).json()
        assert [(p["guildId"], p["volume"]) for p in players] == [("777001", 70)]
        assert players[0]["track"]["info"]["title"] == "short_c"
        await api.patch(f"/v4/sessions/{session}", json={"resuming": False})
    # Not resumable any more: the session ended with its socket, its player with it
    # (the guild is free for a Go session again).
    async with LavalinkSocket(node.url, session_id=session) as third:
        fresh = await third.ready()
        assert fresh["resumed"] is False and fresh["sessionId"] != session
    async with httpx.AsyncClient(base_url=node.url) as go:
        played = await go.post("/session/777001/play", json={"url": str(media_dir / "a.mp3")})
        assert played.status_code == 200
        await go.post("/session/777001/stop")


async def test_a_resume_takes_the_session_from_a_socket_not_yet_closed(
        node: EngineProcess, api: httpx.AsyncClient) -> None:
    # A client whose connection dropped reconnects before its old socket's close
    # reached the node: the new socket takes the session, the old one is closed.
    async with LavalinkSocket(node.url) as first:
        session = (await first.ready())["sessionId"]
        await api.patch(f"/v4/sessions/{session}", json={"resuming": True, "timeout": 20})
        await api.patch(f"/v4/sessions/{session}/players/777004", json={"volume": 30})
        async with LavalinkSocket(node.url, session_id=session) as second:
            assert (await second.ready())["resumed"] is True
            await asyncio.wait_for(first.closed_by_node.wait(), 10)
            players = (await api.get(f"/v4/sessions/{session}/players")).json()
            assert [p["guildId"] for p in players] == ["777004"]
            await api.delete(f"/v4/sessions/{session}/players/777004")
        # Another client (another bot user) cannot take a session over.
    async with LavalinkSocket(node.url, session_id=session, user_id=USER_ID + 1) as other:
        assert (await other.ready())["resumed"] is False


async def test_a_session_not_resumed_in_time_ends_with_its_players(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    async with LavalinkSocket(node.url) as first:
        session = (await first.ready())["sessionId"]
        await api.patch(f"/v4/sessions/{session}", json={"resuming": True, "timeout": 1})
        await api.patch(f"/v4/sessions/{session}/players/777003", json={"volume": 10})
    async with httpx.AsyncClient(base_url=node.url) as go:
        refused = await go.post("/session/777003/play", json={"url": str(media_dir / "a.mp3")})
        assert refused.status_code == 409  # still the player's, while it may resume
        await asyncio.sleep(1.5)
        played = await go.post("/session/777003/play", json={"url": str(media_dir / "a.mp3")})
        assert played.status_code == 200
        await go.post("/session/777003/stop")
    async with LavalinkSocket(node.url, session_id=session) as late:
        assert (await late.ready())["resumed"] is False
