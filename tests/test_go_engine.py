"""Our gateway against a Go engine (the stand-in of tests/support/go_engine.py):
capabilities discovered, volume refused in words, a stolen socket taken back, a
catch-up burst paced out."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gateway.player import (
    CommandError,
    Enqueue,
    Pause,
    PlayerStatus,
    PlayNow,
    Resume,
    SetVolume,
    Stop,
    Track,
)
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from gateway.sinks import PacedOpusSink
from protocol import EventType, OggPageReader

from .conftest import TONES
from .support.consumer import SocketConsumer
from .support.gateway_harness import RecordingSink
from .support.go_engine import GO_CHUNK, GoEngineStandIn, encode_opus_packets
from .support.media import decode_opus_packets, dominant_frequency
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


class PacedRecordingSink(PacedOpusSink):
    """A push sink as the playground's: records when each frame is let through."""

    def __init__(self) -> None:
        super().__init__(capacity=100_000)
        self.frames: list[bytes] = []
        self.times: list[float] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.times.append(time.monotonic())


@asynccontextmanager
async def go_engine(tmp_path: Path) -> AsyncIterator[GoEngineStandIn]:
    async with GoEngineStandIn(tmp_path) as engine:
        yield engine


@asynccontextmanager
async def gateway_on(engine: GoEngineStandIn, **overrides: object) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(go_api_port=engine.port, socket_path=engine.socket_path,
                               queue_db=":memory:", port=0, **overrides)  # type: ignore[arg-type]
    gateway = Gateway(settings)
    await gateway.start()
    try:
        await asyncio.wait_for(gateway.socket.connected.wait(), 10)
        await wait_until(lambda: gateway.link.discovered)
        yield gateway
    finally:
        await gateway.stop()


async def tone(frames: list[bytes]) -> float:
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(frames)[0]))


@pytest.fixture
def short_tmp() -> Path:
    # Unix socket paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="ag-go-"))


# -- the stand-in itself follows PROTOCOL.md ------------------------------------------


async def test_the_stand_in_speaks_as_the_go_engine(short_tmp: Path, media_dir: Path) -> None:
    async with go_engine(short_tmp) as engine, \
            httpx.AsyncClient(base_url=engine.url) as api, \
            SocketConsumer(engine.socket_path) as consumer:
        health = await api.get("/health")
        assert health.headers["content-type"] == "application/json; charset=utf-8"
        assert list(health.json()) == ["status", "uptime_seconds", "ram_mb", "sessions_active",
                                       "sessions_playing"]
        for method, path in (("GET", "/sessions"), ("POST", "/session/x/volume"),
                             ("POST", "/session/x/seek"), ("GET", "/session/x/play")):
            answer = await api.request(method, path)
            assert (answer.status_code, answer.text) == (404, "404 page not found")
        assert (await api.post("/session/x/pause")).json() == {
            "status": "error", "session_id": "x", "message": "session not found"}
        reply = await api.post("/session/go-1/play", json={"url": str(media_dir / "a.mp3"),
                                                            "format": "opus"})
        assert reply.content == b'{"status":"playing","session_id":"go-1"}'
        assert "x-play-id" not in reply.headers
        ready = await consumer.wait_event("go-1", EventType.READY)
        assert dict(ready.extra) == {}
        await consumer.wait_packets("go-1", 40)
        await api.post("/session/go-1/pause")
        assert (await api.get("/session/go-1/status")).json()["status"] == "streaming"
        await api.post("/session/go-1/resume")
        # A second play of the id: a new logical stream, and the old one's finished
        # after the new ready.
        await api.post("/session/go-1/play", json={"url": str(media_dir / "b.mp3"),
                                                   "format": "opus"})
        await consumer.wait_event("go-1", EventType.READY, count=2)
        await consumer.wait_event("go-1", EventType.FINISHED)
        assert [e.type for e in consumer.events("go-1")] == [
            EventType.READY, EventType.READY, EventType.FINISHED]
        await consumer.wait_packets("go-1", len(consumer.packets("go-1")) + 20)
        payloads = consumer.packets("go-1")
        assert max(len(p) for p in payloads) <= GO_CHUNK
        pages = OggPageReader()
        serials = []
        for payload in payloads:
            for page in pages.receive_pages(payload):
                if page[0] & 0x02:  # BOS
                    serials.append(page[2])
        assert len(serials) == 2 and serials[0] != serials[1]
        await api.post("/session/go-1/stop")


# -- the gateway on a Go engine -------------------------------------------------------


async def test_the_gateway_plays_on_a_go_engine_and_refuses_volume_in_words(
        short_tmp: Path, media_dir: Path) -> None:
    async with go_engine(short_tmp) as engine, gateway_on(engine) as gateway:
        assert gateway.link.capabilities.is_go_engine
        sink = RecordingSink()
        gateway.router.register_sink("go-play", sink)
        player = gateway.players.get("go-play")
        await player.apply(Enqueue(Track(str(media_dir / "short_c.mp3"), title="short")))
        await player.apply(Enqueue(Track(str(media_dir / "a.mp3"), title="next")))
        # The short track ends, the next one plays (Go: events counted, not named).
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "next"  # type: ignore[union-attr]
                         and player.view().status is PlayerStatus.PLAYING, 20)
        count = len(sink.frames)
        await wait_until(lambda: len(sink.frames) > count + 50)
        assert abs(await tone(sink.frames[-40:]) - TONES["a"]) < 3
        with pytest.raises(CommandError, match="cannot change the volume"):
            await player.apply(SetVolume(0.3))
        assert player.view().volume == 1.0
        # Replacing a streaming track: the Go engine's late finished of the old
        # stream does not end the new one.
        await player.apply(PlayNow(Track(str(media_dir / "b.mp3"), title="b")))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING
                         and player.view().current.title == "b")  # type: ignore[union-attr]
        count = len(sink.frames)
        await wait_until(lambda: len(sink.frames) > count + 75)
        view = player.view()
        assert view.current is not None and view.current.title == "b"
        assert abs(await tone(sink.frames[-40:]) - TONES["b"]) < 3
        await player.apply(Stop())
        await asyncio.wait_for(player.settled(), 5)
        assert "go-play" not in engine.sessions


async def test_a_socket_another_client_took_is_taken_back(short_tmp: Path,
                                                          media_dir: Path) -> None:
    async with go_engine(short_tmp) as engine, \
            gateway_on(engine, silence_timeout=2.0) as gateway:
        sink = RecordingSink()
        gateway.router.register_sink("go-steal", sink)
        player = gateway.players.get("go-steal")
        await player.apply(Enqueue(Track(str(media_dir / "long_a.mp3"), title="long")))
        await wait_until(lambda: len(sink.frames) > 50, 15)
        async with engine.another_client():
            stolen_at = time.monotonic()
            count = len(sink.frames)
            await wait_until(lambda: gateway.watchdog.reconnects == 1, 10)
            detected = time.monotonic() - stolen_at
            await wait_until(lambda: len(sink.frames) > count + 60, 10)
        print(f"\nsilent socket detected and reconnected after {detected:.2f} s")
        assert detected < 2.0 + 3.0, detected  # threshold + a round + a status call
        assert gateway.socket.reconnects == 1
        assert abs(await tone(sink.frames[-40:]) - TONES["a"]) < 3
        assert player.view().status is PlayerStatus.PLAYING
        metrics = gateway.metrics.registry.get_sample_value(
            "audiogate_gateway_engine_socket_silent_reconnects_total")
        assert metrics == 1
        await player.apply(Stop())


async def test_a_catch_up_burst_after_resume_is_paced_out(short_tmp: Path,
                                                          media_dir: Path) -> None:
    async with go_engine(short_tmp) as engine, gateway_on(engine) as gateway:
        paced = PacedRecordingSink()
        plain = RecordingSink()
        gateway.router.register_sink("go-paced", paced)
        gateway.router.register_sink("go-plain", plain)
        players = [gateway.players.get(key) for key in ("go-paced", "go-plain")]
        for player in players:
            await player.apply(Enqueue(Track(str(media_dir / "long_b.mp3"))))
        await wait_until(lambda: len(paced.frames) > 50 and len(plain.frames) > 50, 15)
        for player in players:
            await player.apply(Pause())
            await asyncio.wait_for(player.settled(), 5)
        await asyncio.sleep(3.0)  # the pause the Go engine will catch up on
        before = (len(paced.frames), len(plain.frames))
        resumed = time.monotonic()
        for player in players:
            await player.apply(Resume())
        await asyncio.sleep(1.5)
        plain_times = [t - resumed for t in plain.times[before[1]:]]
        paced_times = [t - resumed for t in paced.times[before[0]:]]
        print(f"\nafter resume: unpaced {sum(1 for t in plain_times if t < 0.6)} frames in "
              f"0.6 s; paced {sum(1 for t in paced_times if t < 1.0)} frames in 1 s, "
              f"{paced.pacer.dropped} dropped")
        # The engine burst: the unpaced sink got ~3 s of audio within a moment.
        assert sum(1 for t in plain_times if t < 0.6) > 120, len(plain_times)
        # The paced one let through no more than real time (plus its credit).
        in_first_second = sum(1 for t in paced_times if t < 1.0)
        assert in_first_second <= 50 * 1.02 + paced.pacer.credit + 2, in_first_second
        assert paced.pacer.dropped > 100  # the burst beyond the bound was dropped
        assert len(paced.pacer) <= paced.pacer.capacity
        gaps = [b - a for a, b in itertools.pairwise(paced_times[5:])]
        assert max(gaps) < 0.25 and len(paced_times) > 60
        for player in players:
            await player.apply(Stop())


def test_the_stand_in_plays_the_files_tone(media_dir: Path) -> None:
    packets = encode_opus_packets(str(media_dir / "b.mp3"))
    assert 590 < len(packets) < 610  # 12 s of 20 ms frames
    samples = decode_opus_packets(packets[100:150])[0]
    assert abs(dominant_frequency(samples) - TONES["b"]) < 3
