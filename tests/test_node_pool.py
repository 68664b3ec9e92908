"""A gateway with a pool of three real engine processes on loopback TCP.

Each session plays its own tone (a 40 s Ogg Opus file per session), so the
spectrum of what a sink hears says whose audio it is. The gateway runs in this
process; the engines are child processes reached over TCP with a token in the
hello, the way nodes on other machines are.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.nodes.pool import NodePool
from gateway.player import Enqueue, Player, PlayerStatus, SetCrossfade, SetFilters, SetVolume, Track
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from loadtest.processes import EngineProcess
from protocol.filters import parse_filters

from .support.gateway_harness import RecordingSink
from .support.hooks import hook_env
from .support.media import decode_opus_packets, dominant_frequency, write_opus_tone
from .support.waiting import poll_until, wait_until

pytestmark = pytest.mark.timeout(240)

TOKEN = "pool-test-token"
SESSIONS = 30
TRACK_SECONDS = 40.0


def frequency(index: int) -> float:
    """Session *index*'s tone: 300 Hz and up, 40 Hz apart (far beyond the
    spectrum's 1 Hz resolution over a second of audio)."""
    return 300.0 + 40.0 * index


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("pool-tones")
    return [write_opus_tone(root / f"tone{i}.ogg", frequency(i), TRACK_SECONDS, serial=i + 1)
            for i in range(SESSIONS)]


def _node(media: Path) -> EngineProcess:
    return EngineProcess(media_dir=media, node_token=TOKEN, log_level="INFO")


@pytest.fixture(scope="module")
def running_engines(tones: list[Path]) -> Iterator[list[EngineProcess]]:
    """The three nodes, started once for the module (side by side: each start is
    seconds of imports). A test that kills one leaves it dead; ``engines`` replaces it."""
    media = tones[0].parent
    started = [_node(media) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(started)) as starting:
            list(starting.map(EngineProcess.start, started))
        yield started
    finally:
        for engine in started:
            if engine.process is not None:
                engine.terminate()


@pytest.fixture
def engines(running_engines: list[EngineProcess], tones: list[Path]
            ) -> Iterator[list[EngineProcess]]:
    """The module's three nodes, each alive and playing nothing when the test starts
    and again when it ends: a node a test killed is replaced by a fresh one, and
    what a test left playing is stopped, so no test sees another's sessions (the
    spread and ``playingPlayers`` checks count them)."""
    for index, engine in enumerate(running_engines):
        if engine.process is None or engine.process.poll() is not None:
            running_engines[index] = _node(tones[0].parent).start()
    yield running_engines
    for engine in running_engines:
        if engine.process is not None and engine.process.poll() is None:
            _stop_every_session(engine)


def _stop_every_session(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.url, timeout=10) as client:
        for session in client.get("/sessions").json()["sessions"]:
            client.post(f"/session/{session['session_id']}/stop")
        poll_until(lambda: client.get("/stats").json()["playingPlayers"] == 0, 10, 0.1)


def nodes_setting(engines: list[EngineProcess], *, token: str = TOKEN) -> str:
    return json.dumps([{"name": name, "api": engine.url,
                        "socket": f"tcp://127.0.0.1:{engine.tcp_port}", "token": token}
                       for name, engine in zip("abc", engines, strict=False)])


@asynccontextmanager
async def pool_gateway(engines: list[EngineProcess], **settings: object
                       ) -> AsyncIterator[Gateway]:
    values: dict[str, object] = {"nodes": nodes_setting(engines), "queue_db": ":memory:",
                                 "port": 0, "engine_check_interval": 0.5}
    values.update(settings)
    gateway = Gateway(GatewaySettings(**values))  # type: ignore[arg-type]
    await gateway.start()
    try:
        assert gateway.pool is not None
        pool = gateway.pool
        await wait_until(lambda: sum(node.up for node in pool.nodes) == len(engines), 30)
        yield gateway
    finally:
        await gateway.stop()


class Heard(RecordingSink):
    """Frames with arrival times, and where each new Ogg stream (a play) began."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_frames: list[int] = []

    def stream_started(self, start: object) -> None:  # type: ignore[override]
        super().stream_started(start)  # type: ignore[arg-type]
        self.stream_frames.append(len(self.frames))


async def tone(frames: list[bytes]) -> float:
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(frames)[0]))


async def start(gateway: Gateway, key: str, path: Path) -> tuple[Player, Heard]:
    sink = Heard()
    gateway.router.register_sink(key, sink)
    player = gateway.players.get(key)
    await player.apply(Enqueue(Track(str(path), title=key, duration=TRACK_SECONDS)))
    return player, sink


def spread(pool: NodePool) -> dict[str, int]:
    return {node.name: len(pool.sessions_on(node)) for node in pool.nodes}


async def test_thirty_sessions_spread_and_a_killed_node_fails_over(
        engines: list[EngineProcess], tones: list[Path]) -> None:
    async with pool_gateway(engines) as gateway:
        pool = gateway.pool
        assert pool is not None
        keys = [f"pool-{i}" for i in range(SESSIONS)]
        started = [await start(gateway, key, tones[i]) for i, key in enumerate(keys)]
        players = {key: p for key, (p, _) in zip(keys, started, strict=True)}
        sinks = {key: s for key, (_, s) in zip(keys, started, strict=True)}
        await wait_until(lambda: all(p.view().status is PlayerStatus.PLAYING
                                     and len(sinks[k].frames) >= 100
                                     for k, p in players.items()), 60)

        # Spread by load: equal engines, so about a third each.
        counts = spread(pool)
        assert sum(counts.values()) == SESSIONS
        assert all(7 <= count <= 13 for count in counts.values()), \
            (counts, [(n.name, n.stats, n.placed, n.refusals) for n in pool.nodes])
        async with httpx.AsyncClient(timeout=10) as client:
            for node, engine in zip(pool.nodes, engines, strict=True):
                stats = (await client.get(f"{engine.url}/stats")).json()
                assert stats["playingPlayers"] == counts[node.name]
        for key in keys[:5]:
            assert abs(await tone(sinks[key].frames[-50:]) - frequency(keys.index(key))) < 5

        # Kill node b in the middle of play.
        victim = pool.nodes[1]
        moved = list(pool.sessions_on(victim))
        others = [k for k in keys if k not in moved]
        # What a player replays on its new node: volume, filters, crossfade, queue.
        turned = moved[:2]
        async with httpx.AsyncClient(timeout=10) as client:
            for key in turned:
                await players[key].apply(SetVolume(0.5))
                await players[key].apply(SetFilters(
                    parse_filters({"equalizer": [{"band": 0, "gain": 0.2}]}), "custom"))
                await players[key].apply(SetCrossfade(2.0))
                await players[key].apply(Enqueue(Track(
                    str(tones[keys.index(key)]), title=f"{key}-next", duration=TRACK_SECONDS)))

            async def volumes_applied() -> bool:
                for key in turned:
                    info = (await client.get(f"{engines[1].url}/sessions/{key}")).json()
                    if (info.get("volume") != 0.5 or info.get("crossfade") != 2.0
                            or "equalizer" not in info.get("filters", [])):
                        return False
                return True

            async with asyncio.timeout(15):
                while not await volumes_applied():
                    await asyncio.sleep(0.1)
        positions = {k: players[k].view().position for k in moved}
        frames_before = {k: len(sinks[k].frames) for k in keys}
        killed_at = time.monotonic()
        await asyncio.to_thread(engines[1].kill)

        # Each of its sessions plays on elsewhere within 3 s, its own tone, from
        # about where it was.
        await wait_until(lambda: all(len(sinks[k].stream_frames) >= 2
                                     and len(sinks[k].frames) >= sinks[k].stream_frames[1] + 50
                                     for k in moved), 15)
        for key in moved:
            sink = sinks[key]
            resumed_at = sink.times[sink.stream_frames[1]]
            assert resumed_at - killed_at < 3.0, (key, resumed_at - killed_at)
            new_node = pool.owner(key)
            assert new_node is not None and new_node is not victim
            assert abs(await tone(sink.frames[sink.stream_frames[1]:sink.stream_frames[1] + 50])
                       - frequency(keys.index(key))) < 5
            assert players[key].view().status is PlayerStatus.PLAYING
        async with httpx.AsyncClient(timeout=10) as client:
            for key in moved:
                node = pool.owner(key)
                assert node is not None
                engine = engines[pool.nodes.index(node)]
                info = (await client.get(f"{engine.url}/sessions/{key}")).json()
                elapsed = time.monotonic() - killed_at
                # Played again from the position reached (not from the start).
                assert positions[key] - 0.5 <= info["position"] <= positions[key] + elapsed + 1, \
                    (key, positions[key], info["position"])
                if key in turned:
                    assert info["volume"] == 0.5 and info["crossfade"] == 2.0, (key, info)
                    assert "equalizer" in info["filters"], (key, info)
                    assert [t.title for t in players[key].view().upcoming] == [f"{key}-next"]

        # The other nodes' sessions never stopped: no new stream, no gap.
        for key in others:
            sink = sinks[key]
            assert len(sink.stream_frames) == 1, key
            window = sink.times[frames_before[key] - 50:]
            gaps = [b - a for a, b in itertools.pairwise(window)]
            assert max(gaps) < 0.5, (key, max(gaps))
        assert victim.failovers == len(moved)
        assert gateway.readiness() == []


async def test_a_drained_node_gets_no_new_sessions_and_moves_its_own(
        engines: list[EngineProcess], tones: list[Path]) -> None:
    async with pool_gateway(engines, admin_token="admin-secret",
                            drain_nodes="c") as gateway:
        pool = gateway.pool
        assert pool is not None
        first = [await start(gateway, f"drain-{i}", tones[i]) for i in range(6)]
        await wait_until(lambda: all(p.view().status is PlayerStatus.PLAYING
                                     for p, _ in first), 30)
        assert spread(pool)["c"] == 0  # drained from the start
        app = create_app(gateway)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway") as admin:
            assert (await admin.post("/admin/nodes/a/drain")).status_code == 401
            headers = {"Authorization": "Bearer admin-secret"}
            assert (await admin.post("/admin/nodes/zz/drain", headers=headers)).status_code == 404
            assert (await admin.post("/admin/nodes/c/undrain", headers=headers)).status_code == 200
            reply = await admin.post("/admin/nodes/a/drain", headers=headers)
            assert reply.status_code == 200 and reply.json()["node"]["draining"] is True
            on_a = list(pool.sessions_on(pool.nodes[0]))
            assert on_a
            # New sessions avoid a.
            later = [await start(gateway, f"drain-{i}", tones[i]) for i in range(6, 12)]
            await wait_until(lambda: all(p.view().status is PlayerStatus.PLAYING
                                         for p, _ in later), 30)
            assert all(pool.owner(f"drain-{i}") is not pool.nodes[0] for i in range(6, 12))
            assert set(pool.sessions_on(pool.nodes[0])) == set(on_a)  # still playing there
            # Move now: a's sessions go on elsewhere, each with its own tone.
            sinks = {f"drain-{i}": s for i, (_, s) in enumerate(first + later)}
            reply = await admin.post("/admin/nodes/a/drain", headers=headers,
                                     json={"move": "now"})
            assert reply.json()["moved_now"] == len(on_a)
            await wait_until(lambda: all(len(sinks[k].stream_frames) >= 2
                                         and len(sinks[k].frames)
                                         >= sinks[k].stream_frames[1] + 50 for k in on_a), 15)
            for key in on_a:
                sink = sinks[key]
                assert pool.owner(key) not in (None, pool.nodes[0])
                index = int(key.split("-")[1])
                assert abs(await tone(sink.frames[sink.stream_frames[1]:]) - frequency(index)) < 5
            nodes = (await admin.get("/admin/nodes", headers=headers)).json()["nodes"]
            assert [n["sessions"] for n in nodes if n["name"] == "a"] == [0]
            # The engine behind a no longer plays them either.
            async with httpx.AsyncClient(timeout=10) as client:
                await wait_until_async_empty(client, engines[0].url)


async def wait_until_async_empty(client: httpx.AsyncClient, url: str) -> None:
    async with asyncio.timeout(10):
        while True:
            sessions = (await client.get(f"{url}/sessions")).json()["sessions"]
            if not [s for s in sessions if s["status"] in ("streaming", "extracting")]:
                return
            await asyncio.sleep(0.1)


async def test_plays_a_node_refuses_go_to_another_node(
        engines: list[EngineProcess], tones: list[Path]) -> None:
    """Node x takes two sessions at most (its count ceiling): placement, which
    sees x as good as y, sends x a third, x refuses it and the play goes to y at
    once. Every play is taken."""
    media = tones[0].parent
    with EngineProcess({"ENGINE_MAX_SESSIONS": "2"}, media_dir=media, node_token=TOKEN,
                       log_level="INFO") as small:
        async with pool_gateway([small, engines[0]]) as gateway:
            pool = gateway.pool
            assert pool is not None
            started = [await start(gateway, f"full-{i}", tones[i]) for i in range(8)]
            await wait_until(lambda: all(p.view().status is PlayerStatus.PLAYING
                                         for p, _ in started), 30)
            assert len(pool.sessions_on(pool.nodes[0])) == 2
            assert pool.nodes[0].refusals >= 1
            assert all(p.view().error == "" for p, _ in started)


async def test_a_node_that_admits_no_more_load_is_left_alone(
        engines: list[EngineProcess], tones: list[Path]) -> None:
    """Node x is full after two sessions by load (a faked cost of 0.35 of its one core
    per transcoding session, at most 75 %: a third would be 0.85 even at complexity
    5): it never gets more than it admits, and what it plays, it plays."""
    media = tones[0].parent
    full_env = {"ENGINE_CPU_BUDGET": "1", "ENGINE_MAX_LOAD": "0.75",
                **hook_env(session_cpu=0.35)}
    with EngineProcess(full_env, media_dir=media, node_token=TOKEN,
                       log_level="INFO") as small:
        async with pool_gateway([small, engines[0]]) as gateway:
            pool = gateway.pool
            assert pool is not None
            started = [await start(gateway, f"load-{i}", tones[i]) for i in range(8)]
            await wait_until(lambda: all(p.view().status is PlayerStatus.PLAYING
                                         for p, _ in started), 30)
            on_x = len(pool.sessions_on(pool.nodes[0]))
            assert 1 <= on_x <= 2
            async with httpx.AsyncClient(timeout=10) as client:
                stats = (await client.get(f"{small.url}/stats")).json()
            assert stats["playingPlayers"] == on_x


async def test_a_node_with_the_wrong_token_never_gets_a_session(
        engines: list[EngineProcess], tones: list[Path]) -> None:
    nodes = nodes_setting(engines[:1]).replace(TOKEN, "wrong")
    good = nodes_setting(engines[1:2])[1:-1].replace('"name": "a"', '"name": "b"')
    settings = GatewaySettings(nodes=f"{nodes[:-1]}, {good}]", queue_db=":memory:", port=0,
                               engine_check_interval=0.5)
    gateway = Gateway(settings)
    await gateway.start()
    try:
        pool = gateway.pool
        assert pool is not None
        await wait_until(lambda: pool.nodes[1].up, 30)
        player, sink = await start(gateway, "token-0", tones[0])
        await wait_until(lambda: len(sink.frames) >= 50, 30)
        assert not pool.nodes[0].up and pool.owner("token-0") is pool.nodes[1]
        assert player.view().status is PlayerStatus.PLAYING
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = (await client.get(f"{engines[0].url}/metrics")).text
        assert 'audiogate_engine_consumer_disconnects_total{reason="unauthorized"}' in metrics
    finally:
        await gateway.stop()
