"""The engine's audio behaviour, end to end: real process, real socket, real media.

Each test plays generated tones (tests/conftest.py) and decodes what the socket
delivered per session id, so a spectrum proves whose audio went where.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager

import av
import httpx
import numpy as np
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import FLAG_BOS, PCM_FRAME_BYTES, EventType

from .conftest import TONES
from .support.consumer import SocketConsumer
from .support.media import decode_opus_packets, dominant_frequency
from .support.starvation import HostCanary, assert_no_gap_of_its_own
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30.0) as client:
        yield client


async def play(client: httpx.AsyncClient, session_id: str, url: str, fmt: str = "opus",
               **extra: object) -> None:
    response = await client.post(f"/session/{session_id}/play",
                                 json={"url": url, "format": fmt, **extra})
    assert response.status_code == 200, response.text


def tone(consumer: SocketConsumer, session_id: str, last: int = 60) -> float:
    packets = consumer.opus_packets(session_id)
    assert len(packets) >= 20, f"only {len(packets)} packets for {session_id}"
    return dominant_frequency(decode_opus_packets(packets[-last:])[0])


async def test_two_sessions_each_carry_their_own_tone(engine: EngineProcess,
                                                      api: httpx.AsyncClient,
                                                      media_server: MediaServer) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "two-a", media_server.url("a.mp3"), "opus")
        await play(api, "two-b", media_server.url("b.mp3"), "web")
        await consumer.wait_packets("two-a", 80)
        await consumer.wait_packets("two-b", 80)
        for sid, expected in (("two-a", TONES["a"]), ("two-b", TONES["b"])):
            assert abs(tone(consumer, sid) - expected) < 3
            pages = [page for _, page in consumer.pages(sid)]
            assert pages[0].flags == FLAG_BOS and pages[0].packets()[0].startswith(b"OpusHead")
            assert pages[1].packets()[0].startswith(b"OpusTags")
            audio = pages[2:]
            assert len({p.serial for p in pages}) == 1
            assert [p.granule_position for p in audio] == [960 * (i + 1) for i in range(len(audio))]
            assert [p.sequence for p in pages] == list(range(len(pages)))
            assert all(len(p.packets()) == 1 for p in audio)
        # web (256 kb/s) pages are larger than opus (128 kb/s) ones.
        size = {sid: np.mean([len(p) for p in consumer.opus_packets(sid)[10:]])
                for sid in ("two-a", "two-b")}
        assert size["two-b"] > size["two-a"] * 1.4
        for sid in ("two-a", "two-b"):
            await api.post(f"/session/{sid}/stop")


@pytest.mark.realtime
async def test_ready_goes_out_a_margin_before_the_first_audio(engine: EngineProcess,
                                                              api: httpx.AsyncClient,
                                                              media_server: MediaServer) -> None:
    # This consumer sends no hello: it gets the Node-safe timing (the default
    # 80 ms margin; tests/test_timing_contract.py checks the margin itself).
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "ready-1", media_server.url("c.mp3"))
        await consumer.wait_packets("ready-1", 3)
        arrivals = [a for a in consumer.arrivals
                    if getattr(a.message, "session_id", "") == "ready-1"]
        assert arrivals[0].message.type == EventType.READY  # type: ignore[union-attr]
        first_audio = next(a for a in arrivals if a is not arrivals[0])
        assert first_audio.read_index > arrivals[0].read_index
        assert first_audio.at - arrivals[0].at >= 0.010
        assert first_audio.message.payload.startswith(b"OggS")  # type: ignore[union-attr]
        assert len(consumer.events("ready-1", EventType.READY)) == 1
        await api.post("/session/ready-1/stop")


@pytest.mark.realtime
async def test_stopping_one_session_leaves_the_other_without_gaps(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer,
    canary: HostCanary,
) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "stop-a", media_server.url("long_a.mp3"))
        await play(api, "stop-b", media_server.url("long_b.mp3"))
        await consumer.wait_packets("stop-b", 60)
        await consumer.wait_packets("stop-a", 20)
        stopped_at = time.monotonic()
        await api.post("/session/stop-a/stop")
        finished = await consumer.wait_event("stop-a", EventType.FINISHED)
        assert finished.extra["reason"] == "stopped"
        count = len(consumer.packets("stop-b"))
        await consumer.wait_packets("stop-b", count + 60)
        window = [t for t in consumer.audio_page_times("stop-b") if abs(t - stopped_at) < 1.2]
        assert len(window) > 80
        assert_no_gap_of_its_own(window, canary)
        finished_at = consumer.event_arrivals("stop-a")[-1]
        assert not [a for a in consumer.packet_arrivals("stop-a") if a.at > finished_at.at]
        assert abs(tone(consumer, "stop-b") - TONES["b"]) < 3
        await api.post("/session/stop-b/stop")


@pytest.mark.realtime
async def test_replacing_a_session_sends_finished_then_ready(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer,
    canary: HostCanary,
) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "rep-a", media_server.url("long_a.mp3"))
        await play(api, "rep-b", media_server.url("long_b.mp3"))
        await consumer.wait_packets("rep-a", 40)
        await consumer.wait_packets("rep-b", 40)
        replaced_at = time.monotonic()
        await play(api, "rep-a", media_server.url("c.mp3"))
        await consumer.wait_event("rep-a", EventType.READY, count=2)
        count = len(consumer.packets("rep-b"))
        await consumer.wait_packets("rep-b", count + 60)
        kinds = [e.type for e in consumer.events("rep-a")]
        assert kinds == [EventType.READY, EventType.FINISHED, EventType.READY]
        assert consumer.events("rep-a")[1].extra["reason"] == "replaced"
        serials = [page.serial for _, page in consumer.pages("rep-a")]
        assert len(set(serials)) == 2
        # The new stream is 880 Hz; B never changed.
        reader_packets = consumer.opus_packets("rep-a")
        assert abs(dominant_frequency(decode_opus_packets(reader_packets[-40:])[0])
                   - TONES["c"]) < 3
        window = [t for t in consumer.audio_page_times("rep-b") if abs(t - replaced_at) < 1.0]
        assert_no_gap_of_its_own(window, canary)
        assert abs(tone(consumer, "rep-b") - TONES["b"]) < 3
        for sid in ("rep-a", "rep-b"):
            await api.post(f"/session/{sid}/stop")


async def test_pause_and_resume_continue_one_ogg_stream_without_a_burst(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer
) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "pause-1", media_server.url("long_a.mp3"))
        await consumer.wait_packets("pause-1", 30)
        response = await api.post("/session/pause-1/pause")
        paused_at = time.monotonic()
        assert response.json()["status"] == "paused"
        await asyncio.sleep(0.6)
        during = [a for a in consumer.packet_arrivals("pause-1") if a.at > paused_at + 0.05]
        assert not during
        count = len(consumer.packets("pause-1"))
        await api.post("/session/pause-1/resume")
        await consumer.wait_packets("pause-1", count + 40)
        pages = [page for _, page in consumer.pages("pause-1")]
        assert len({p.serial for p in pages}) == 1
        assert sum(1 for p in pages if p.bos) == 1
        audio = pages[2:]
        assert [p.granule_position for p in audio] == [960 * (i + 1) for i in range(len(audio))]
        resumed = [a.at for a in consumer.packet_arrivals("pause-1")[count:]]
        # Real-time pacing right away: ~5 pages per 100 ms, not a catch-up burst.
        assert sum(1 for t in resumed if t - resumed[0] < 0.1) <= 7
        await api.post("/session/pause-1/stop")


@pytest.mark.realtime
async def test_broken_media_fails_only_its_own_session(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer, media_dir,
    canary: HostCanary,
) -> None:
    broken = {
        "bad-corrupt": (media_server.url("corrupt.mp3"), "not a playable media file"),
        "bad-empty": (str(media_dir / "empty.mp3"), "not a playable media file"),
        "bad-404": (media_server.url("missing.mp3"), "refused the request"),
        "bad-refused": ("http://127.0.0.1:1/x.mp3", "could not reach the source"),
        "bad-file": (str(media_dir / "no-such-file.mp3"), "file not found"),
        "bad-outside": ("/etc/passwd", "local files can only be played from"),
        "bad-trunc": (media_server.url("truncated.mp3"), "ended early"),
    }
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "bad-ok", media_server.url("long_b.mp3"))
        await consumer.wait_packets("bad-ok", 20)
        started = time.monotonic()
        for sid, (url, _) in broken.items():
            await play(api, sid, url)
        for sid, (_, words) in broken.items():
            event = await consumer.wait_event(sid, EventType.ERROR, timeout=30)
            assert words in event.message, (sid, event.message)
            assert not consumer.events(sid, EventType.FINISHED)
            status = (await api.get(f"/session/{sid}/status")).json()["status"]
            assert status == "error"
        window = [t for t in consumer.audio_page_times("bad-ok") if t > started]
        assert len(window) > 100
        assert_no_gap_of_its_own(window, canary)
        assert abs(tone(consumer, "bad-ok") - TONES["b"]) < 3
        for sid in [*broken, "bad-ok"]:
            await api.post(f"/session/{sid}/stop")


async def test_passthrough_sends_the_source_packets_unchanged(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer, media_dir
) -> None:
    with av.open(str(media_dir / "d.webm")) as container:
        source = [bytes(p) for p in container.demux(audio=0) if p.size]
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "pass-1", media_server.url("d.webm"), "opus")
        await consumer.wait_packets("pass-1", 60)
        view = (await api.get("/sessions/pass-1")).json()
        assert view["passthrough"] is True
        sent = consumer.opus_packets("pass-1")
        assert sent == source[: len(sent)]
        assert abs(tone(consumer, "pass-1") - TONES["d"]) < 3
        # Mono Opus is transcoded to stereo rather than passed through.
        await play(api, "pass-mono", media_server.url("mono_e.ogg"), "opus")
        await consumer.wait_packets("pass-mono", 40)
        assert (await api.get("/sessions/pass-mono")).json()["passthrough"] is False
        assert abs(tone(consumer, "pass-mono") - TONES["e"]) < 3
        for sid in ("pass-1", "pass-mono"):
            await api.post(f"/session/{sid}/stop")


async def test_volume_change_leaves_passthrough_and_is_heard(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer
) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "vol-1", media_server.url("e.ogg"), "opus")
        await consumer.wait_packets("vol-1", 40)
        before = decode_opus_packets(consumer.opus_packets("vol-1")[-25:])
        await api.post("/session/vol-1/volume", json={"volume": 0.25})
        count = len(consumer.packets("vol-1"))
        await consumer.wait_packets("vol-1", count + 80)
        after = decode_opus_packets(consumer.opus_packets("vol-1")[-25:])
        ratio = np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2))
        assert 0.18 < ratio < 0.33
        assert (await api.get("/sessions/vol-1")).json()["passthrough"] is False
        assert abs(dominant_frequency(after[0]) - TONES["e"]) < 3
        await api.post("/session/vol-1/stop")


async def test_pcm_is_one_20ms_frame_per_packet(engine: EngineProcess, api: httpx.AsyncClient,
                                                 media_server: MediaServer) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "pcm-1", media_server.url("a.mp3"), "")
        await consumer.wait_packets("pcm-1", 50)
        packets = consumer.packets("pcm-1")
        assert all(len(p) == PCM_FRAME_BYTES for p in packets)
        samples = np.frombuffer(b"".join(packets[-40:]), dtype="<i2").reshape(-1, 2)
        assert abs(dominant_frequency(samples[:, 0].astype(float)) - TONES["a"]) < 3
        await api.post("/session/pcm-1/stop")


async def test_start_at_and_live_seek_land_where_asked(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer
) -> None:
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "seek-start", media_server.url("two_tones.mp3"), "opus", start_at=7)
        await consumer.wait_packets("seek-start", 40)
        assert abs(tone(consumer, "seek-start", 30) - 880.0) < 3
        assert (await api.get("/sessions/seek-start")).json()["position"] >= 7.0
        await play(api, "seek-live", media_server.url("two_tones.mp3"), "opus")
        await consumer.wait_packets("seek-live", 40)
        assert abs(tone(consumer, "seek-live", 30) - 440.0) < 3
        await api.post("/session/seek-live/seek", json={"position": 8.0})
        count = len(consumer.packets("seek-live"))
        await consumer.wait_packets("seek-live", count + 60)
        assert abs(tone(consumer, "seek-live", 30) - 880.0) < 3
        pages = [page for _, page in consumer.pages("seek-live")]
        assert len({p.serial for p in pages}) == 1
        audio = pages[2:]
        assert [p.granule_position for p in audio] == [960 * (i + 1) for i in range(len(audio))]
        for sid in ("seek-start", "seek-live"):
            await api.post(f"/session/{sid}/stop")


async def test_a_dropped_connection_is_reopened_in_the_same_ogg_stream(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer, media_dir
) -> None:
    size = (media_dir / "long_a.mp3").stat().st_size
    url = media_server.url("long_a.mp3", drop_after=size // 10)  # ~4 s in
    async with SocketConsumer(engine.socket_path) as consumer:
        await play(api, "retry-1", url, "opus")
        await poll_until_async(
            lambda: _retried(api, "retry-1"), timeout=20
        )
        count = len(consumer.packets("retry-1"))
        await consumer.wait_packets("retry-1", count + 100)
        pages = [page for _, page in consumer.pages("retry-1")]
        assert len({p.serial for p in pages}) == 1
        assert sum(1 for p in pages if p.bos) == 1
        audio = pages[2:]
        assert [p.granule_position for p in audio] == [960 * (i + 1) for i in range(len(audio))]
        assert [p.sequence for p in pages] == list(range(len(pages)))
        assert abs(tone(consumer, "retry-1") - TONES["a"]) < 3
        assert not consumer.events("retry-1", EventType.ERROR)
        await api.post("/session/retry-1/stop")


async def _retried(api: httpx.AsyncClient, session_id: str) -> bool:
    return bool((await api.get(f"/sessions/{session_id}")).json()["retries"] >= 1)


async def test_a_consumer_that_reconnects_gets_headers_then_the_live_stream(
    engine: EngineProcess, api: httpx.AsyncClient, media_server: MediaServer
) -> None:
    async with SocketConsumer(engine.socket_path) as first:
        await play(api, "recon-1", media_server.url("long_a.mp3"))
        await first.wait_packets("recon-1", 30)
    last_granule = max(p.granule_position for _, p in first.pages("recon-1"))
    serial = first.pages("recon-1")[0][1].serial
    await asyncio.sleep(0.5)
    async with SocketConsumer(engine.socket_path) as second:
        await second.wait_packets("recon-1", 30)
        pages = [page for _, page in second.pages("recon-1")]
        assert pages[0].bos and pages[0].serial == serial
        assert pages[1].packets()[0].startswith(b"OpusTags")
        assert all(p.serial == serial for p in pages)
        # The session kept its timeline while nobody listened: ~0.5 s went by.
        assert pages[2].granule_position - last_granule >= 0.4 * 48_000
        assert abs(tone(second, "recon-1", 15) - TONES["a"]) < 3
    await api.post("/session/recon-1/stop")


@pytest.mark.realtime
async def test_a_consumer_that_stops_reading_does_not_stall_another(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer, canary: HostCanary,
) -> None:
    settings = {"ENGINE_CONSUMER_QUEUE_BYTES": "65536", "ENGINE_CONSUMER_STALL_SECONDS": "1.5"}
    with engine_factory(**settings) as engine:
        async with httpx.AsyncClient(base_url=engine.url) as client:
            _, stuck = await asyncio.open_unix_connection(str(engine.socket_path))
            try:
                async with SocketConsumer(engine.socket_path) as healthy:
                    for index in range(4):
                        await play(client, f"slow-{index}", media_server.url("long_a.mp3"), "web")
                    await healthy.wait_packets("slow-0", 50)
                    started = time.monotonic()
                    await poll_until_async(lambda: _disconnected_stalled(client), timeout=30)
                    count = len(healthy.packets("slow-3"))
                    await healthy.wait_packets("slow-3", count + 50)
                    window = [t for t in healthy.audio_page_times("slow-3") if t > started]
                    assert_no_gap_of_its_own(window, canary)
                    metrics = (await client.get("/metrics")).text
                    dropped = 'audiogate_engine_frames_dropped_total{reason="consumer_queue_full"}'
                    assert dropped in metrics
                    assert (await client.get("/health")).json()["consumers"] == 1
            finally:
                stuck.close()


async def _disconnected_stalled(client: httpx.AsyncClient) -> bool:
    text = (await client.get("/metrics")).text
    return 'audiogate_engine_consumer_disconnects_total{reason="stalled"} 1.0' in text


async def test_sessions_keep_their_timeline_with_no_consumer(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer,
) -> None:
    with engine_factory() as engine:
        async with httpx.AsyncClient(base_url=engine.url) as client:
            await play(client, "alone", media_server.url("long_a.mp3"))

            async def advanced() -> bool:
                return (await client.get("/sessions/alone")).json()["position"] > 1.5

            await poll_until_async(advanced, timeout=15)
            async with SocketConsumer(engine.socket_path) as late:
                await late.wait_packets("alone", 10)
                audio = [p for _, p in late.pages("alone") if p.granule_position > 0]
                assert audio[0].granule_position > 1.4 * 48_000


async def test_sigterm_ends_sessions_and_removes_the_socket(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer,
) -> None:
    with engine_factory() as engine:
        async with httpx.AsyncClient(base_url=engine.url) as client, \
                SocketConsumer(engine.socket_path) as consumer:
            await play(client, "term-a", media_server.url("long_a.mp3"))
            await play(client, "term-b", media_server.url("long_b.mp3"))
            await consumer.wait_packets("term-a", 10)
            await consumer.wait_packets("term-b", 10)
            code = await asyncio.to_thread(engine.terminate)
            await asyncio.wait_for(consumer.closed.wait(), 10)
            assert code == 0
            for sid in ("term-a", "term-b"):
                assert [e.type for e in consumer.events(sid)] == [EventType.READY,
                                                                  EventType.FINISHED]
                # Not the end of the track: a gateway must not advance its queue.
                assert consumer.events(sid)[1].extra["reason"] == "shutdown"
            assert not engine.socket_path.exists()


async def test_finished_sessions_are_reaped_after_the_idle_timeout(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer,
) -> None:
    with engine_factory(ENGINE_IDLE_TIMEOUT="1") as engine:
        async with httpx.AsyncClient(base_url=engine.url) as client, \
                SocketConsumer(engine.socket_path) as consumer:
            await play(client, "idle-1", media_server.url("short_c.mp3"))
            await play(client, "idle-2", media_server.url("long_b.mp3"))
            await consumer.wait_packets("idle-2", 5)
            await client.post("/session/idle-2/pause")
            finished = await consumer.wait_event("idle-1", EventType.FINISHED, timeout=15)
            assert finished.extra["reason"] == "end"
            pages = [p for _, p in consumer.pages("idle-1")]
            assert pages[-1].eos
            assert (await client.get("/sessions/idle-1")).json()["status"] == "stopped"

            async def gone() -> bool:
                listed = (await client.get("/sessions")).json()["sessions"]
                return not any(s["session_id"] in {"idle-1", "idle-2"} for s in listed)

            await poll_until_async(gone, timeout=10)
            # A paused session reaped for idleness finishes with that reason;
            # an ended one was finished already and sends nothing more.
            reaped = await consumer.wait_event("idle-2", EventType.FINISHED)
            assert reaped.extra["reason"] == "idle"
            assert len(consumer.events("idle-1", EventType.FINISHED)) == 1


async def test_a_stalled_source_is_declared_stuck(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer, media_dir
) -> None:
    size = (media_dir / "long_a.mp3").stat().st_size
    settings = {"ENGINE_STUCK_THRESHOLD": "1.5", "ENGINE_READ_TIMEOUT": "30"}
    with engine_factory(**settings) as engine:
        async with httpx.AsyncClient(base_url=engine.url) as client, \
                SocketConsumer(engine.socket_path) as consumer:
            await play(client, "stall-1", media_server.url("long_a.mp3", stall_after=size // 20))
            event = await consumer.wait_event("stall-1", EventType.ERROR, timeout=20)
            assert event.message == "source stalled: no audio for 1.5 s"
            assert event.extra["reason"] == "stuck"

