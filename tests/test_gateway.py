"""The gateway against the real engine process, and against the Go engine's bytes."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.player import (
    Enqueue,
    PlayerCore,
    PlayerStatus,
    PlayNow,
    QueueStore,
    SetVolume,
    Skip,
    Stop,
    Track,
)
from gateway.router import Router
from gateway.sinks import OpusSink
from gateway.socket_client import SocketClient
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import Event

from .capture import EXPECTED_ERROR_MESSAGE, EXPECTED_EVENTS, capture_bytes
from .conftest import TONES
from .support.gateway_harness import RecordingSink, running_gateway, settings_for
from .support.media import decode_opus_packets, dominant_frequency
from .support.starvation import HostCanary, assert_no_gap_of_its_own

pytestmark = pytest.mark.timeout(120)


async def tone_of(frames: list[bytes], last: int = 50) -> float:
    """Dominant frequency of the last frames, computed off the loop (the gateway
    under test runs on it and must keep routing)."""
    assert len(frames) >= 20, f"only {len(frames)} frames"
    chosen = frames[-last:]
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(chosen)[0]))


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


# -- against the Go engine's bytes ----------------------------------------------------


class CaptureServer:
    """Replays the Go engine capture over a Unix socket, in random chunk sizes.

    Connection *n* is served by ``plan[n]``: "whole" sends everything then keeps the
    connection open; "cut" sends a random prefix ending mid-packet, then closes.
    """

    def __init__(self, path: Path, plan: list[str], seed: int = 1) -> None:
        self.path = path
        self.plan = plan
        self.rng = random.Random(seed)
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> CaptureServer:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.plan[min(self.connections, len(self.plan) - 1)]
        self.connections += 1
        data = capture_bytes()
        end = len(data) if mode == "whole" else self.rng.randrange(5000, len(data) // 2)
        offset = 0
        while offset < end:
            size = min(end - offset, self.rng.choice([1, 7, 100, 1000, 4096, 20000]))
            writer.write(data[offset : offset + size])
            offset += size
            await writer.drain()
            if self.rng.random() < 0.05:
                await asyncio.sleep(0.001)
        if mode == "whole":
            await asyncio.sleep(3600)
        writer.transport.abort()


def capture_sinks(router: Router) -> dict[str, OpusSink]:
    sinks = {sid: OpusSink(capacity=100_000) for sid in ("111111111111111111",
                                                         "222222222222222222")}
    for sid, sink in sinks.items():
        router.register_sink(sid, sink)
    return sinks


async def test_the_go_capture_is_routed_frame_by_frame() -> None:
    path = Path(tempfile.mkdtemp(prefix="ag-")) / "go.sock"
    router = Router()
    sinks = capture_sinks(router)
    events: list[Event] = []
    router.add_global_listener(events.append)
    per_id: Counter[str] = Counter()
    for sid in ("111111111111111111", "222222222222222222", "user-333", "444"):
        router.add_listener(sid, lambda e, sid=sid: per_id.update([sid]))
    async with CaptureServer(path, ["whole"]):
        client = SocketClient(path, router)
        task = asyncio.create_task(client.run())
        try:
            await wait_until(lambda: len(events) == 7 and router.packets == 415)
        finally:
            task.cancel()
    assert [(e.type, e.session_id) for e in events] == EXPECTED_EVENTS
    assert events[2].message == EXPECTED_ERROR_MESSAGE
    assert sinks["111111111111111111"].received == 95
    assert sinks["111111111111111111"].streams == 1
    # The replaced session's second Ogg stream is followed, not dropped.
    assert sinks["222222222222222222"].received == 251
    assert sinks["222222222222222222"].streams == 2
    assert router.unknown_packets == 88  # session 444 (pcm) has no sink here
    assert per_id == {"111111111111111111": 2, "222222222222222222": 3, "user-333": 1, "444": 1}
    for sink in sinks.values():
        assert sink.dropped == 0


async def test_a_connection_cut_mid_packet_reconnects_with_a_fresh_parser() -> None:
    path = Path(tempfile.mkdtemp(prefix="ag-")) / "go.sock"
    router = Router()
    first = capture_sinks(router)
    second: dict[str, OpusSink] = {}

    def on_state(connected: bool) -> None:
        if connected and client.connections == 2:
            second.update(capture_sinks(router))

    events: list[Event] = []
    router.add_global_listener(events.append)
    async with CaptureServer(path, ["cut", "whole"], seed=5) as server:
        client = SocketClient(path, router, backoff_initial=0.01, on_state=on_state)
        task = asyncio.create_task(client.run())
        try:
            await wait_until(lambda: bool(second)
                             and second["222222222222222222"].received == 251)
        finally:
            task.cancel()
    assert server.connections == 2 and client.reconnects == 1
    # The cut one ended in the middle of a packet: counted, not lost unnoticed.
    assert client.protocol_errors == 1
    assert second["111111111111111111"].received == 95
    assert second["222222222222222222"].streams == 2
    assert first["111111111111111111"].closed  # replaced by the new registration


# -- against the real engine -----------------------------------------------------------


@pytest.mark.realtime
async def test_two_keys_play_at_once_and_each_sink_hears_only_its_own_tone(
    engine: EngineProcess, media_server: MediaServer,
    canary: HostCanary,
) -> None:
    async with running_gateway(settings_for(engine)) as gateway:
        sinks = {key: RecordingSink() for key in ("gw-a", "gw-b")}
        for key, sink in sinks.items():
            gateway.router.register_sink(key, sink)
        await gateway.socket.connected.wait()
        a = gateway.players.get("gw-a")
        b = gateway.players.get("gw-b")
        await a.apply(Enqueue(Track(media_server.url("long_a.mp3"))))
        await b.apply(Enqueue(Track(media_server.url("long_b.mp3"))))
        await wait_until(lambda: all(len(s.frames) > 80 for s in sinks.values()))
        assert abs(await tone_of(sinks["gw-a"].frames) - TONES["a"]) < 3
        assert abs(await tone_of(sinks["gw-b"].frames) - TONES["b"]) < 3
        assert a.view().status is PlayerStatus.PLAYING

        # Stop A; B's cadence stays intact around it.
        stopped_at = asyncio.get_running_loop().time()
        await a.apply(Stop())
        count = len(sinks["gw-b"].frames)
        await wait_until(lambda: len(sinks["gw-b"].frames) > count + 60)
        times = [t for t in sinks["gw-b"].times if abs(t - stopped_at) < 1.2]
        assert_no_gap_of_its_own(times, canary)
        assert a.view().status is PlayerStatus.IDLE
        status = await gateway.engine.status("gw-a")
        assert status is None  # stopped sessions are gone from the engine
        frames_of_a = len(sinks["gw-a"].frames)

        # Replace B's track: A untouched (stopped), B switches to the new tone, in the
        # same stream (play now joins the new track where the old one is cut).
        await b.apply(PlayNow(Track(media_server.url("c.mp3"))))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while abs(await tone_of(sinks["gw-b"].frames, 40) - TONES["c"]) >= 3:
            assert loop.time() < deadline, "B never played the new track"
            await asyncio.sleep(0.2)
        assert len(sinks["gw-b"].stream_starts) == 1
        assert len(sinks["gw-a"].frames) == frames_of_a
        await b.apply(Stop())


async def test_auto_advance_plays_the_next_queued_track(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    async with running_gateway(settings_for(engine)) as gateway:
        sink = RecordingSink()
        gateway.router.register_sink("gw-adv", sink)
        await gateway.socket.connected.wait()
        player = gateway.players.get("gw-adv")
        await player.apply(Enqueue(Track(media_server.url("short_c.mp3"), title="short")))
        await player.apply(Enqueue(Track(media_server.url("a.mp3"), title="next")))
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "next"  # type: ignore[union-attr]
                         and player.view().status is PlayerStatus.PLAYING, timeout=20)
        count = len(sink.frames)
        await wait_until(lambda: len(sink.frames) > count + 60)
        view = player.view()
        assert view.current is not None and view.current.title == "next"
        assert [t.title for t in view.history] == ["short"]
        assert abs(await tone_of(sink.frames, 40) - TONES["a"]) < 3
        # Our engine joined the next track to the same stream (gapless): no new one.
        assert len(sink.stream_starts) == 1 and player.stats.gapless_joins == 1
        await player.apply(Stop())


async def test_rapid_commands_play_only_the_last_track(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    async with running_gateway(settings_for(engine)) as gateway:
        sink = RecordingSink()
        gateway.router.register_sink("gw-rapid", sink)
        await gateway.socket.connected.wait()
        player = gateway.players.get("gw-rapid")
        for name in ("a.mp3", "b.mp3", "c.mp3", "d.webm", "e.ogg"):
            await player.apply(Enqueue(Track(media_server.url(name), title=name)))
        for _ in range(4):
            await player.apply(Skip())
        await player.settled()
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)
        assert player.view().current is not None
        assert player.view().current.title == "e.ogg"  # type: ignore[union-attr]
        # At most the first play and the last went to the engine.
        assert player.engine_calls <= 3
        count = len(sink.frames)
        await wait_until(lambda: len(sink.frames) > count + 50)
        assert abs(await tone_of(sink.frames, 40) - TONES["e"]) < 3
        await player.apply(Stop())


async def test_the_gateway_reconnects_after_an_engine_restart(
    media_server: MediaServer,
) -> None:
    engine = EngineProcess(allow_private=True).start()
    try:
        async with running_gateway(settings_for(engine, )) as gateway:
            gateway.socket.backoff.cap = 0.5
            sink = RecordingSink()
            gateway.router.register_sink("gw-restart", sink)
            await gateway.socket.connected.wait()
            player = gateway.players.get("gw-restart")
            await player.apply(Enqueue(Track(media_server.url("long_a.mp3"))))
            await wait_until(lambda: len(sink.frames) > 30)
            engine.kill()
            await wait_until(lambda: not gateway.socket.connected.is_set())
            engine = EngineProcess(port=engine.port, socket_path=engine.socket_path,
                                   allow_private=True).start()
            await asyncio.wait_for(gateway.socket.connected.wait(), 15)
            assert gateway.socket.reconnects >= 1
            # The controller can play again on the new engine.
            await player.apply(PlayNow(Track(media_server.url("c.mp3"))))
            count = len(sink.frames)
            await wait_until(lambda: len(sink.frames) > count + 60)
            assert abs(await tone_of(sink.frames, 40) - TONES["c"]) < 3
            await player.apply(Stop())
    finally:
        engine.terminate()


async def test_queues_survive_a_gateway_restart(tmp_path: Path) -> None:
    database = tmp_path / "queues.sqlite3"
    store = QueueStore(database)
    core = PlayerCore("guild-1")
    for name in ("a", "b", "c"):
        core.apply(Enqueue(Track(f"http://media/{name}.mp3", title=name, duration=60.0)), 0.0)
    core.apply(Skip(), 1.0)
    core.apply(SetVolume(0.4), 1.0)
    await store.save("guild-1", core.snapshot(1.0))
    await store.save("user-2", PlayerCore("user-2").snapshot(0.0))
    await store.aclose()

    reopened = QueueStore(database)
    saved = await reopened.load_all()
    await reopened.aclose()
    assert set(saved) == {"guild-1", "user-2"}
    restored = PlayerCore.restore("guild-1", saved["guild-1"])
    assert restored.current is not None and restored.current.title == "b"
    assert [t.title for t in restored.queue.upcoming] == ["c"]
    assert [t.title for t in restored.view(0.0).history] == ["a"]
    assert restored.volume == 0.4
    assert restored.current.duration == 60.0
