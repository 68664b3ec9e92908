"""Tracks that go wrong while they play, as a Lavalink client hears of it (the real engine,
a plain Lavalink WebSocket, a Discord voice stand-in taking the audio): a source that
stalls is a ``TrackStuckEvent``, one that breaks for good after its first audio is a
``TrackExceptionEvent`` then ``TrackEndEvent`` ``finished`` (Lavalink's reason for a
track that failed once it had started)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol.lavalink import DecodedTrack, encode_track, probe_details

from .support.discord_voice import DiscordVoiceStandIn
from .support.lavalink import PASSWORD, LavalinkSocket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(media_dir: Path) -> Iterator[EngineProcess]:
    """Stuck after 1.5 s without audio, no second chance for a broken source."""
    with EngineProcess({"LAVALINK_SERVER_PASSWORD": PASSWORD, "ENGINE_WORKERS": "1",
                        "ENGINE_STUCK_THRESHOLD": "1.5", "ENGINE_READ_TIMEOUT": "30",
                        "ENGINE_SOURCE_RETRIES": "0"},
                       media_dir=media_dir, allow_private=True) as process:
        yield process


def _http_track(url: str, title: str) -> str:
    return encode_track(DecodedTrack(
        title=title, author="tests", length=40_000, identifier=url, is_stream=False, uri=url,
        artwork_url=None, isrc=None, source_name="http", details=probe_details("mp3")))


async def test_a_stalled_track_is_stuck_and_a_broken_one_an_exception(
        node: EngineProcess, media_server: MediaServer, media_dir: Path) -> None:
    size = (media_dir / "long_a.mp3").stat().st_size
    async with LavalinkSocket(node.url) as socket, \
            DiscordVoiceStandIn(server_id=72000000000000001) as standin, \
            httpx.AsyncClient(base_url=node.url, headers={"Authorization": PASSWORD},
                              timeout=30) as api:
        session = (await socket.ready())["sessionId"]
        player = f"/v4/sessions/{session}/players/{standin.server_id}"
        joined = await api.patch(player, json={"voice": {
            "token": standin.token, "endpoint": standin.endpoint,
            "sessionId": standin.session_id}})
        assert joined.json()["state"]["connected"] is True
        stalled = _http_track(media_server.url("long_a.mp3", stall_after=size // 20), "stalls")
        await api.patch(player, json={"track": {"encoded": stalled}})
        stuck, = await socket.event("TrackStuckEvent", timeout=30)
        assert stuck["thresholdMs"] == 1500 and stuck["track"]["info"]["title"] == "stalls"
        end, = await socket.event("TrackEndEvent")
        assert end["reason"] == "stopped"  # ended by the engine: the client moves on once
        assert socket.events("TrackExceptionEvent") == []
        broken = _http_track(media_server.url("long_b.mp3", drop_after=size // 10), "breaks")
        await api.patch(player, json={"track": {"encoded": broken}})
        await asyncio.wait_for(standin.wait_for_packets(25), 15)  # it started
        exception, = await socket.event("TrackExceptionEvent", timeout=30)
        assert exception["track"]["info"]["title"] == "breaks"
        assert exception["exception"]["severity"] == "suspicious"
        ends = await socket.event("TrackEndEvent", count=2)
        assert ends[1]["reason"] == "finished"
        kinds = [m["type"] for m in socket.events()]
        assert kinds == ["TrackStartEvent", "TrackStuckEvent", "TrackEndEvent",
                         "TrackStartEvent", "TrackExceptionEvent", "TrackEndEvent"]
        await api.delete(player)
