"""Real Lavalink client libraries against the real engine process, driven as a bot drives
them, with the audio checked where Discord would hear it: a Discord voice stand-in per
guild (tests/support/discord_voice.py) that decrypts the RTP, takes part in DAVE with
its own davey listener, decodes the Opus and tells which tone it hears.

- lavalink.py: add a node, load tracks (local file, http link), create players, send
  the voice updates Discord would, play, filters, volume, seek, pause, end time, stop,
  a voice connection Discord closes for good, a worker killed mid-track;
- wavelink, on a real discord.py client logged in to a Discord stand-in whose gateway
  answers a voice join with the voice server: join a channel, search, play with DAVE,
  filters, a client that loses its WebSocket and resumes its session, disconnect;
- lavalink-client (JavaScript, from npm, tests/js/ installed by ``make setup-test``) in a
  Node.js bot script: join, search, play, filters, pause, resume, stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import httpx
import lavalink
import numpy as np
import pytest
import wavelink

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess

from .conftest import TONES
from .support.consumer import SocketConsumer
from .support.discord_api import DiscordWorld, FakeDiscord, Member, discord_gateway
from .support.discord_voice import XCHACHA, DiscordVoiceStandIn
from .support.lavalink import PASSWORD, USER_ID
from .support.waiting import poll_until_async

pytestmark = [pytest.mark.timeout(180), pytest.mark.realtime]

ENGINE_ENV = {"LAVALINK_SERVER_PASSWORD": PASSWORD, "ENGINE_WORKERS": "2",
              "LAVALINK_SERVER_PLAYERUPDATEINTERVAL": "1"}


@pytest.fixture(scope="module")
def node(media_dir: Path) -> Iterator[EngineProcess]:
    with EngineProcess(ENGINE_ENV, media_dir=media_dir, allow_private=True) as process:
        yield process


class Events:
    """lavalink.py's events, as a bot's hooks see them."""

    def __init__(self, client: lavalink.Client[Any]) -> None:
        self.seen: list[Any] = []
        self._changed = asyncio.Event()
        client.add_event_hook(self._hook)

    async def _hook(self, event: Any) -> None:
        self.seen.append(event)
        self._changed.set()

    def of(self, kind: type, guild: int | None = None) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind) and (
            guild is None or getattr(getattr(e, "player", None), "guild_id", None) == guild)]

    async def first(self, kind: type, guild: int, match: Any, *, timeout: float = 15.0
                    ) -> Any:
        """The first event of *kind* for *guild* that *match* accepts."""
        async with asyncio.timeout(timeout):
            while not (found := [e for e in self.of(kind, guild) if match(e)]):
                self._changed.clear()
                await self._changed.wait()
        return found[0]

    async def wait(self, kind: type, guild: int | None = None, *, count: int = 1,
                   timeout: float = 15.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.of(kind, guild)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind, guild)[:count]


@asynccontextmanager
async def lavalink_py(engine: EngineProcess) -> AsyncIterator[tuple[lavalink.Client[Any], Events]]:
    """A lavalink.py client with the engine as its node, once the node is ready."""
    client: lavalink.Client[Any] = lavalink.Client(USER_ID)
    events = Events(client)
    node = client.add_node("127.0.0.1", engine.port, PASSWORD, "eu", "engine")
    try:
        await events.wait(lavalink.NodeReadyEvent)
        assert node.available
        yield client, events
    finally:
        await client.close()


async def join(client: lavalink.Client[Any], standin: DiscordVoiceStandIn) -> Any:
    """Create the guild's player and hand it the two voice events Discord sends a bot
    that joins a channel (the stand-in is that guild's voice server)."""
    guild = standin.server_id
    player = client.player_manager.create(guild)
    await client.voice_update_handler({"t": "VOICE_STATE_UPDATE", "d": {
        "guild_id": str(guild), "user_id": str(USER_ID), "session_id": standin.session_id,
        "channel_id": str(standin.channel_id)}})
    await client.voice_update_handler({"t": "VOICE_SERVER_UPDATE", "d": {
        "guild_id": str(guild), "token": standin.token, "endpoint": standin.endpoint}})
    return player


async def heard(standin: DiscordVoiceStandIn, packets: int = 30) -> float:
    """The tone of the next *packets* packets the stand-in decrypts."""
    standin.packets.clear()
    await asyncio.wait_for(standin.wait_for_packets(packets), 10)
    return standin.dominant_frequency(last=packets - 5)


def level(standin: DiscordVoiceStandIn, last: int = 20) -> float:
    pcm = np.concatenate([p.pcm for p in list(standin.packets)[-last:]]).astype(np.float64)
    return float(np.sqrt(np.mean(pcm ** 2)))


async def falls_silent(standin: DiscordVoiceStandIn, *, quiet: float = 0.5,
                       within: float = 3.0) -> bool:
    """Whether the audio stops: *quiet* seconds without a packet, within *within* (the
    stand-in may still be decrypting and decoding packets that left before the stop,
    on a busy machine; a playing stream sends one every 20 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        before = len(standin.packets)
        await asyncio.sleep(quiet)
        if len(standin.packets) == before:
            return True
    return False


async def test_lavalink_py_plays_each_guild_its_own_tone_on_its_own_connection(
        node: EngineProcess, media_dir: Path, media_server: MediaServer) -> None:
    async with lavalink_py(node) as (client, events), \
            DiscordVoiceStandIn(server_id=71000000000000001, dave=True) as first, \
            DiscordVoiceStandIn(server_id=71000000000000002, modes=(XCHACHA,)) as second, \
            SocketConsumer(node.socket_path) as consumer:
        local = await client.get_tracks(str(media_dir / "a.mp3"))
        remote = await client.get_tracks(media_server.url("c.mp3"))
        assert (local.load_type, remote.load_type) == (lavalink.LoadType.TRACK,) * 2
        assert (local.tracks[0].source_name, remote.tracks[0].source_name) == ("local", "http")
        players = [await join(client, first), await join(client, second)]
        for player, result in zip(players, (local, remote), strict=True):
            player.add(result.tracks[0], requester=USER_ID)
            await player.play()
        assert abs(await heard(first) - TONES["a"]) < 5
        assert abs(await heard(second) - TONES["c"]) < 5
        # Real time, measured over 2 s (a clock that catches up a stalled tick or two
        # sends those frames back to back: a short span would overstate the rate).
        for standin in (first, second):
            standin.packets.clear()
            await asyncio.wait_for(standin.wait_for_packets(100), 10)
            assert 45 <= standin.packets_per_second() <= 55, standin.packets_per_second()
            assert standin.undecryptable == 0
        # DAVE on both sides where the call has it: every frame end-to-end encrypted.
        assert first.e2ee_packets == len(first.packets) and second.e2ee_packets == 0
        assert first.selected[-1]["data"]["mode"] == "aead_aes256_gcm_rtpsize"
        assert second.selected[-1]["data"]["mode"] == XCHACHA
        starts = await events.wait(lavalink.TrackStartEvent, count=2)
        assert {e.player.guild_id for e in starts} == {first.server_id, second.server_id}
        # Once a heartbeat came back, its round trip is the ping.
        update = await events.first(lavalink.PlayerUpdateEvent, first.server_id,
                                    lambda e: e.position > 0 and e.ping >= 0)
        assert update.connected
        # The position lavalink.py shows (ours, carried forward between updates) moves
        # at real time: within 30 % over 2 s (a shared test machine stalls now and then).
        before = players[0].position
        await asyncio.sleep(2.0)
        assert 1400 <= players[0].position - before <= 2600
        # Stopping one guild stops its connection's audio only.
        await players[0].stop()
        end, = await events.wait(lavalink.TrackEndEvent, first.server_id)
        assert end.reason is lavalink.EndReason.STOPPED
        assert await falls_silent(first)
        assert abs(await heard(second) - TONES["c"]) < 5
        for player in players:
            await client.player_manager.destroy(player.guild_id)
        assert await falls_silent(second)
        # Nothing of the players ever reached the Go API's socket consumers.
        guilds = {str(first.server_id), str(second.server_id)}
        assert not [e for e in consumer.events() if e.session_id in guilds]
        assert not [p for g in guilds for p in consumer.packets(g)]


async def test_lavalink_py_filters_volume_seek_pause_and_end_time(
        node: EngineProcess, media_dir: Path) -> None:
    async with lavalink_py(node) as (client, events), \
            DiscordVoiceStandIn(server_id=71000000000000003) as standin:
        guild = standin.server_id
        player = await join(client, standin)
        steps = (await client.get_tracks(str(media_dir / "two_tones.mp3"))).tracks[0]
        await player.play(steps)
        assert abs(await heard(standin) - 440) < 5
        # Lavalink's timescale: pitch 1.5 is heard within a few frames.
        timescale = lavalink.Timescale()
        timescale.update(pitch=1.5)
        await player.set_filter(timescale)
        assert abs(await heard(standin) - 660) < 8
        await player.clear_filters()
        assert abs(await heard(standin) - 440) < 5
        loud = level(standin)
        await player.set_volume(20)
        await heard(standin)
        assert level(standin) < 0.3 * loud
        await player.set_volume(100)
        # The second tone starts at 6 s.
        await player.seek(7000)
        assert abs(await heard(standin) - 880) < 5
        assert 7000 <= player.position < 9000
        await player.set_pause(True)
        assert await falls_silent(standin)
        await player.set_pause(False)
        assert abs(await heard(standin) - 880) < 5
        # A track with an end time ends there, as finished (the queue moves on); the
        # one it replaced ended as replaced.
        earlier = len(events.of(lavalink.TrackEndEvent, guild))
        started = asyncio.get_running_loop().time()
        await player.play(steps, start_time=1000, end_time=2500)
        ends = await events.wait(lavalink.TrackEndEvent, guild, count=earlier + 2, timeout=10)
        assert [e.reason for e in ends[earlier:]] == [lavalink.EndReason.REPLACED,
                                                     lavalink.EndReason.FINISHED]
        assert 1.3 < asyncio.get_running_loop().time() - started < 3.0
        assert await falls_silent(standin)
        await client.player_manager.destroy(guild)


async def test_a_voice_connection_discord_closes_is_a_websocket_closed_event(
        node: EngineProcess, media_dir: Path) -> None:
    async with lavalink_py(node) as (client, events), \
            DiscordVoiceStandIn(server_id=71000000000000004) as standin:
        player = await join(client, standin)
        await player.play((await client.get_tracks(str(media_dir / "b.mp3"))).tracks[0])
        await heard(standin)
        await standin.close_connection(4014, "Disconnected")  # kicked: final
        closed, = await events.wait(lavalink.WebSocketClosedEvent)
        assert (closed.code, closed.reason, closed.by_remote) == (4014, "Disconnected", True)
        update = await _next_update(events, standin.server_id)
        assert update.connected is False and update.ping == -1
        await client.player_manager.destroy(standin.server_id)


async def _next_update(events: Events, guild: int) -> Any:
    count = len(events.of(lavalink.PlayerUpdateEvent, guild))
    return (await events.wait(lavalink.PlayerUpdateEvent, guild, count=count + 1))[-1]


async def test_a_killed_worker_moves_the_player_and_connects_its_voice_again(
        media_dir: Path) -> None:
    with EngineProcess(ENGINE_ENV, media_dir=media_dir, allow_private=True) as engine:
        async with lavalink_py(engine) as (client, events), \
                DiscordVoiceStandIn(server_id=71000000000000005, dave=True) as standin, \
                httpx.AsyncClient(base_url=engine.url) as api:
            player = await join(client, standin)
            await player.play((await client.get_tracks(str(media_dir / "long_b.mp3"))).tracks[0])
            assert abs(await heard(standin) - TONES["b"]) < 5
            view = (await api.get(f"/sessions/{standin.server_id}")).json()
            pids = (await api.get("/health")).json()["worker_pids"]
            before = player.position
            os.kill(pids[view["worker"]], signal.SIGKILL)
            # The session is played again on the other worker, which connects to the
            # voice server again (a new identify) and goes on with the same tone.
            await asyncio.wait_for(standin.wait_until(lambda: len(standin.identifies) == 2),
                                   20)
            assert standin.connections == 2
            assert abs(await heard(standin, 50) - TONES["b"]) < 5
            assert standin.e2ee_packets == len(standin.packets)
            assert events.of(lavalink.TrackEndEvent) == []
            await _next_update(events, standin.server_id)
            assert player.position > before
            moved = (await api.get(f"/sessions/{standin.server_id}")).json()
            assert moved["worker"] != view["worker"]
            await client.player_manager.destroy(standin.server_id)


# -- wavelink on a discord.py client ---------------------------------------------------------


class WavelinkBot(discord.Client):
    """A bot's discord.py client, keeping wavelink's events (dispatched to it)."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.ready_nodes: list[wavelink.NodeReadyEventPayload] = []
        self.track_ends: list[wavelink.TrackEndEventPayload] = []

    async def on_wavelink_node_ready(self, payload: wavelink.NodeReadyEventPayload) -> None:
        self.ready_nodes.append(payload)

    async def on_wavelink_track_end(self, payload: wavelink.TrackEndEventPayload) -> None:
        self.track_ends.append(payload)


@asynccontextmanager
async def discord_client(fake: FakeDiscord) -> AsyncIterator[WavelinkBot]:
    """A real discord.py client logged in to the Discord stand-in's gateway."""
    with discord_gateway(fake.port):
        client = WavelinkBot()
        await client.login("token")
        runner = asyncio.create_task(client.connect(reconnect=False))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 20)
            yield client
        finally:
            await client.close()
            await runner


async def test_wavelink_bot_joins_plays_with_dave_filters_and_resumes(
        node: EngineProcess, media_server: MediaServer) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        async with discord_client(fake) as client:
            guild_id = 71000000000000006
            world = DiscordWorld(client, fake, guild_id)
            world.create_guild([Member(11, "alice")])
            async with DiscordVoiceStandIn(server_id=guild_id, dave=True,
                                           channel_id=world.voice_a) as standin:
                fake.voice_servers[guild_id] = (standin.session_id, standin.token,
                                                standin.endpoint)
                await _wavelink_session(client, world, standin, node, media_server)
    finally:
        await fake.close()


async def _wavelink_session(client: WavelinkBot, world: DiscordWorld,
                            standin: DiscordVoiceStandIn, engine: EngineProcess,
                            media_server: MediaServer) -> None:
    ready, ends = client.ready_nodes, client.track_ends
    node = wavelink.Node(uri=engine.url, password=PASSWORD, resume_timeout=30)
    await wavelink.Pool.connect(nodes=[node], client=client)
    try:
        await poll_until_async(lambda: _is(node.status, wavelink.NodeStatus.CONNECTED),
                               timeout=20, interval=0.05)
        player = await world.voice_channel(world.voice_a).connect(cls=wavelink.Player)
        assert fake_joined(world, standin)
        tracks = await wavelink.Playable.search(media_server.url("d.mp3"))
        assert isinstance(tracks, list) and tracks[0].source == "http"
        await player.play(tracks[0])
        assert abs(await heard(standin) - TONES["d"]) < 5
        await standin.dave_ready.wait()
        assert standin.e2ee_packets == len(standin.packets) > 0  # DAVE, both sides
        filters = wavelink.Filters()
        filters.timescale.set(pitch=2.0)
        await player.set_filters(filters)
        assert abs(await heard(standin) - 2 * TONES["d"]) < 10
        # The bot's WebSocket to the node drops; wavelink reconnects with its session
        # id and the node resumes it: the track never stopped.
        session = node.session_id
        assert node._websocket is not None and node._websocket.socket is not None
        await node._websocket.socket.close()
        await poll_until_async(lambda: _true(len(ready) >= 2), timeout=20, interval=0.05)
        assert ready[-1].resumed is True and ready[-1].session_id == session
        arrivals = [p.arrival for p in standin.packets]
        assert max(np.diff(arrivals)) < 0.25  # no gap in the audio meanwhile
        assert abs(await heard(standin) - 2 * TONES["d"]) < 10
        await player.pause(True)
        assert await falls_silent(standin)
        await player.pause(False)
        await heard(standin)
        await player.disconnect()
        assert await falls_silent(standin)
        assert [p.reason for p in ends] in ([], ["cleanup"])
    finally:
        await wavelink.Pool.close()


def fake_joined(world: DiscordWorld, standin: DiscordVoiceStandIn) -> bool:
    """The bot asked Discord to join the channel, and joined the stand-in's session."""
    return bool(standin.identifies) and standin.identifies[-1]["session_id"] == \
        standin.session_id and str(world.api.voice_state_updates[-1]["channel_id"]) == \
        str(world.voice_a)


async def _true(value: bool) -> bool:
    return value


async def _is(value: object, expected: object) -> bool:
    return value is expected


# -- a JavaScript bot: lavalink-client on Node.js -------------------------------------------

JS_BOT = Path(__file__).parent / "js" / "bot.mjs"


class JsBot:
    """The Node.js bot script: commands in on stdin, events out on stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.messages.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def wait(self, match: Any, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not (found := [m for m in self.messages if match(m)]):
                if self.process.returncode is not None and self._reader.done():
                    raise AssertionError(f"the bot exited: {self.messages}")
                self._changed.clear()
                await self._changed.wait()
        return found[0]

    async def event(self, name: str, **fields: Any) -> dict[str, Any]:
        return await self.wait(lambda m: m.get("event") == name and all(
            m.get(k) == v for k, v in fields.items()))

    async def command(self, command: str) -> None:
        assert self.process.stdin is not None
        done = sum(1 for m in self.messages if m.get("done") == command)
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        await self.wait(lambda m: sum(1 for x in self.messages
                                      if x.get("done") == command) > done)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


async def test_a_javascript_bot_with_lavalink_client(node: EngineProcess,
                                                     media_server: MediaServer) -> None:
    node_js = shutil.which("node")
    assert node_js is not None, "Node.js is needed (Node 18 or newer)"
    assert (JS_BOT.parent / "node_modules" / "lavalink-client").is_dir(), \
        "run make setup-test (npm ci --prefix tests/js)"
    async with DiscordVoiceStandIn(server_id=71000000000000007, dave=True) as standin:
        env = {**os.environ, "ENGINE_HOST": "127.0.0.1", "ENGINE_PORT": str(node.port),
               "PASSWORD": PASSWORD, "USER_ID": str(USER_ID),
               "GUILD": str(standin.server_id), "CHANNEL": str(standin.channel_id),
               "VOICE_SESSION": standin.session_id, "VOICE_TOKEN": standin.token,
               "VOICE_ENDPOINT": standin.endpoint, "TRACK": media_server.url("e.mp3")}
        process = await asyncio.create_subprocess_exec(
            node_js, str(JS_BOT), cwd=JS_BOT.parent, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        bot = JsBot(process)
        try:
            await bot.event("nodeConnect")
            await asyncio.wait_for(standin.wait_until(lambda: bool(standin.selected)), 20)
            await bot.command("play")
            loaded = await bot.event("loaded")
            assert (loaded["loadType"], loaded["source"]) == ("track", "http")
            await bot.event("trackStart", title="e")
            assert abs(await heard(standin) - TONES["e"]) < 5
            await standin.dave_ready.wait()
            assert standin.e2ee_packets == len(standin.packets)
            await bot.command("pitch")
            assert abs(await heard(standin) - 1.5 * TONES["e"]) < 8
            await bot.command("pause")
            assert await falls_silent(standin)
            await bot.command("resume")
            await heard(standin)
            await bot.command("stop")
            # Its queue is empty: lavalink-client reports Lavalink's TrackEndEvent as
            # the end of the queue.
            end = await bot.event("queueEnd")
            assert end["reason"] == "stopped"
            assert await falls_silent(standin)
            await bot.command("exit")
            assert await process.wait() == 0
            assert not [m for m in bot.messages if m.get("event") in ("nodeError",
                                                                       "trackError")]
        finally:
            await bot.close()
