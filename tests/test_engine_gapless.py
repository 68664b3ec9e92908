"""Gapless queues and crossfades in the real engine: the next track set ahead of time
(``POST /session/{id}/next``) continues the same Ogg stream, with no silence between
the tracks and events in order (``finished`` for the first play, ``ready`` for the next).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import ConsumerOrder, Event, EventType, Hello

from .support.consumer import SocketConsumer
from .support.media import decode_opus_packets, write_opus_tone, write_signal
from .support.signals import band_level_db, tone

pytestmark = pytest.mark.timeout(120)

ANY_ORDER = Hello("gapless-tests", ConsumerOrder.ANY)
RATE = 48_000
#: Seconds of the short tracks (a, b, c): each test plays in real time, and 2 s
#: keeps a join well inside steady audio on both sides (100 frames each).
SHORT = 2.0
#: Frames of a short track.
SHORT_FRAMES = round(SHORT * 50)


@pytest.fixture(scope="module")
def queue_media(media_dir: Path) -> dict[str, Path]:
    return {
        "a": write_opus_tone(media_dir / "q_a440_2s.ogg", 440.0, SHORT, complexity=10,
                             flush=True),
        "b": write_opus_tone(media_dir / "q_b660_2s.ogg", 660.0, SHORT, complexity=10,
                             flush=True),
        "c": write_signal(media_dir / "q_c550_2s.flac", tone(550, SHORT, 0.5)),
        # The crossfade's next track outlasts its 2 s fade, so the end is b alone.
        "b_3s": write_opus_tone(media_dir / "q_b660.ogg", 660.0, 3.0, complexity=10,
                                flush=True),
        "long_a": write_opus_tone(media_dir / "q_a440_long.ogg", 440.0, 5.0, complexity=10,
                                  flush=True),
        "long_c": write_signal(media_dir / "q_c440_long.flac", tone(440, 5.0, 0.5)),
    }


@pytest.fixture
async def api(engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30.0) as client:
        yield client


async def start(client: httpx.AsyncClient, session_id: str, path: Path | str,
                **extra: object) -> int:
    response = await client.post(f"/session/{session_id}/play",
                                 json={"url": str(path), "format": "opus", **extra})
    assert response.status_code == 200, response.text
    return int(response.headers["X-Play-Id"])


async def queue(client: httpx.AsyncClient, session_id: str, path: Path | str,
                **extra: object) -> int:
    response = await client.post(f"/session/{session_id}/next", json={"url": str(path),
                                                                      **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued" and response.headers["X-Play-Id"] == str(body["play_id"])
    return int(body["play_id"])


def frame_rms(signal: np.ndarray) -> np.ndarray:
    count = signal.shape[1] // 960
    return np.sqrt((signal[0, : count * 960].reshape(count, 960) ** 2).mean(axis=1))


def one_stream(consumer: SocketConsumer, session_id: str) -> None:
    """One Ogg logical stream: one BOS, one serial, granules +960 (the last page may
    trim the end), EOS at the end."""
    pages = [page for _, page in consumer.pages(session_id)]
    assert sum(p.bos for p in pages) == 1 and len({p.serial for p in pages}) == 1
    audio = [p for p in pages if p.packets() and p.granule_position > 0]
    granules = [p.granule_position for p in audio]
    assert granules[:-1] == [960 * (i + 1) for i in range(len(audio) - 1)]
    assert 0 < granules[-1] - granules[-2] <= 960
    assert pages[-1].eos


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.type.value, int(e.extra["play"])) for e in events]  # type: ignore[arg-type]


async def test_two_tracks_reach_the_socket_as_one_stream_without_silence(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path]) -> None:
    with av.open(str(queue_media["b"])) as container:
        b_source = [bytes(p) for p in container.demux(audio=0) if p.size]
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        first = await start(api, "gap-1", queue_media["a"])
        await consumer.wait_packets("gap-1", 10)
        second = await queue(api, "gap-1", queue_media["b"])
        assert (await api.get("/sessions/gap-1")).json()["next"]["play_id"] == second
        await consumer.wait_event("gap-1", EventType.FINISHED, count=2, timeout=20)
        view = (await api.get("/sessions/gap-1")).json()
    events = consumer.events("gap-1")
    assert kinds(events) == [("ready", first), ("finished", first), ("ready", second),
                             ("finished", second)]
    assert [e.extra.get("reason") for e in events if e.type is EventType.FINISHED] == [
        "end", "end"]
    assert view["play_id"] == second and view["next"] is None
    one_stream(consumer, "gap-1")
    packets = consumer.opus_packets("gap-1")
    assert len(packets) == pytest.approx(2 * SHORT_FRAMES, abs=2)  # a + b, nothing between
    signal = decode_opus_packets(packets)
    levels = frame_rms(signal)
    # No frame of silence anywhere from the first tone to the end of the second.
    assert levels[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2), levels.min()
    # The boundary: 440 Hz before it, 660 Hz after it.
    boundary = next(n for n in range(len(levels))
                    if band_level_db(signal[:, n * 960 : (n + 1) * 960].T / 32768, 660) >
                    band_level_db(signal[:, n * 960 : (n + 1) * 960].T / 32768, 440))
    assert boundary == pytest.approx(SHORT_FRAMES, abs=2)
    steps = np.abs(np.diff(signal[0]))
    natural = 0.5 * 32768 * 2 * np.pi * 660 / RATE
    assert steps[(boundary - 3) * 960 : (boundary + 3) * 960].max() < 1.25 * natural
    # The second track went back to passthrough after the boundary: its own packets.
    assert packets[-60:] == b_source[len(b_source) - 60 :]
    # The next play's ready came with its first audio, a's length into the stream.
    ready = consumer.event_arrivals("gap-1")[2]
    assert ready.at - consumer.packet_arrivals("gap-1")[0].at == pytest.approx(SHORT, abs=0.4)


async def test_a_transcoded_track_joins_a_passthrough_one_and_back(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path]) -> None:
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        await start(api, "gap-mix", queue_media["c"])  # FLAC: transcoded
        await consumer.wait_packets("gap-mix", 10)
        await queue(api, "gap-mix", queue_media["a"])
        await consumer.wait_event("gap-mix", EventType.READY, count=2, timeout=20)
        await queue(api, "gap-mix", queue_media["c"])
        await consumer.wait_event("gap-mix", EventType.FINISHED, count=3, timeout=20)
    assert [e.type for e in consumer.events("gap-mix")] == [
        EventType.READY, EventType.FINISHED, EventType.READY, EventType.FINISHED,
        EventType.READY, EventType.FINISHED]
    one_stream(consumer, "gap-mix")
    signal = decode_opus_packets(consumer.opus_packets("gap-mix"))
    assert signal.shape[1] == pytest.approx(3 * SHORT * RATE, abs=3 * 960)
    assert frame_rms(signal)[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2)


async def test_a_crossfade_has_a_window_where_both_tones_are_present(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path]) -> None:
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        await start(api, "xfade-1", queue_media["long_a"], crossfade=2.0)
        await consumer.wait_packets("xfade-1", 10)
        await queue(api, "xfade-1", queue_media["b_3s"])
        await consumer.wait_event("xfade-1", EventType.FINISHED, count=2, timeout=20)
    one_stream(consumer, "xfade-1")
    signal = decode_opus_packets(consumer.opus_packets("xfade-1")).T / 32768
    # 5 s, then 3 s overlapping its last 2 s: 6 s in all.
    assert len(signal) == pytest.approx(6 * RATE, abs=3 * 960)
    middle = signal[int(4.0 * RATE) : int(4.2 * RATE)]  # the middle of the crossfade
    a, b = band_level_db(middle, 440), band_level_db(middle, 660)
    assert a > -20 and b > -20 and abs(a - b) < 6, (a, b)
    assert band_level_db(signal[int(2.0 * RATE) : int(2.5 * RATE)], 660) < -50
    assert band_level_db(signal[int(5.2 * RATE) : int(5.7 * RATE)], 440) < -50
    ready = consumer.event_arrivals("xfade-1")[2]
    first_page = consumer.packet_arrivals("xfade-1")[0].at
    # The next play's ready comes when its first audio does: at the start of the fade.
    assert ready.at - first_page == pytest.approx(3.0, abs=0.4)


async def test_a_next_track_that_cannot_open_ends_the_session_after_the_first(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path],
        media_server: MediaServer) -> None:
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        first = await start(api, "gap-bad", queue_media["a"])
        second = await queue(api, "gap-bad", media_server.url("absent.ogg"))
        error = await consumer.wait_event("gap-bad", EventType.ERROR, timeout=20)
    assert kinds(consumer.events("gap-bad")) == [("ready", first), ("finished", first),
                                                 ("error", second)]
    assert "refused the request" in error.message
    assert (await api.get("/session/gap-bad/status")).json()["status"] == "error"
    one_stream(consumer, "gap-bad")


@pytest.mark.parametrize("first", ["a", "c"], ids=["passthrough", "transcoded"])
async def test_a_next_track_with_no_audio_ends_the_session_with_its_error(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path],
        media_dir: Path, first: str) -> None:
    """A next track that opens but holds no audio frame (text under an audio name) is
    never joined: the first play ends, then the next play's error; no ``ready``."""
    text = media_dir / "q_article.mp3"
    text.write_text("this page has moved; follow the link on our home page. " * 2000)
    sid = f"gap-text-{first}"
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        play = await start(api, sid, queue_media[first])
        second = await queue(api, sid, text)
        error = await consumer.wait_event(sid, EventType.ERROR, timeout=20)
    assert kinds(consumer.events(sid)) == [("ready", play), ("finished", play),
                                           ("error", second)]
    assert error.message == "no audio could be decoded from the source"
    one_stream(consumer, sid)


async def test_next_track_api_refuses_what_cannot_join(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path]) -> None:
    assert (await api.post("/session/nobody/next",
                           json={"url": str(queue_media["a"])})).status_code == 404
    await start(api, "gap-api", queue_media["long_a"])
    wrong = await api.post("/session/gap-api/next",
                           json={"url": str(queue_media["b"]), "format": "web"})
    assert wrong.status_code == 400 and "format must be the session's" in wrong.json()["message"]
    bad = await api.post("/session/gap-api/next",
                         json={"url": str(queue_media["b"]), "filters": {"rotation": 1}})
    assert bad.status_code == 400 and "rotation must be an object" in bad.json()["message"]
    scheme = await api.post("/session/gap-api/next", json={"url": "ftp://x/y.ogg"})
    assert scheme.status_code == 400
    play_id = await queue(api, "gap-api", queue_media["b"])
    cancelled = await api.post("/session/gap-api/next/cancel")
    assert cancelled.json() == {"status": "ok", "session_id": "gap-api", "cancelled": play_id}
    assert (await api.get("/sessions/gap-api")).json()["next"] is None
    await api.post("/session/gap-api/stop")
    ended = await api.post("/session/gap-api/next", json={"url": str(queue_media["b"])})
    assert ended.status_code == 404  # a stopped session is gone


# -- play now: replace the current track once the new one has audio ----------------------


async def play_now(client: httpx.AsyncClient, session_id: str, path: Path | str) -> int:
    response = await client.post(f"/session/{session_id}/next",
                                 json={"url": str(path), "now": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "replacing"
    return int(body["play_id"])


@pytest.mark.parametrize("current", ["long_a", "long_c"], ids=["passthrough", "transcoded"])
async def test_play_now_replaces_the_current_track_at_once_in_the_same_stream(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path],
        current: str) -> None:
    sid = f"now-{current}"
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        first = await start(api, sid, queue_media[current])
        await consumer.wait_packets(sid, 25)
        asked = len(consumer.opus_packets(sid))
        second = await play_now(api, sid, queue_media["b"])
        await consumer.wait_event(sid, EventType.FINISHED, count=2, timeout=20)
    events = consumer.events(sid)
    assert kinds(events) == [("ready", first), ("finished", first), ("ready", second),
                             ("finished", second)]
    assert [e.extra.get("reason") for e in events if e.type is EventType.FINISHED] == [
        "replaced", "end"]
    one_stream(consumer, sid)
    signal = decode_opus_packets(consumer.opus_packets(sid))
    levels = frame_rms(signal)
    assert levels[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2)  # no silence at the cut
    boundary = next(n for n in range(len(levels))
                    if band_level_db(signal[:, n * 960 : (n + 1) * 960].T / 32768, 660) >
                    band_level_db(signal[:, n * 960 : (n + 1) * 960].T / 32768, 440))
    # Heard within a fraction of a second of the request (the ring's lead and the
    # opening), and the new track whole from there: b's 2 s.
    assert asked <= boundary <= asked + 40, (asked, boundary)
    assert signal.shape[1] == pytest.approx((boundary + SHORT_FRAMES) * 960, abs=3 * 960)
    steps = np.abs(np.diff(signal[0]))
    natural = 0.5 * 32768 * 2 * np.pi * 660 / RATE
    assert steps[(boundary - 3) * 960 : (boundary + 3) * 960].max() < 1.25 * natural
    # The new play's ready came with its first audio.
    ready = consumer.event_arrivals(sid)[2]
    arrivals = consumer.packet_arrivals(sid)
    assert ready.at <= arrivals[boundary + 1].at


@pytest.mark.parametrize("failure", ["absent", "text"])
async def test_a_play_now_that_fails_leaves_the_current_track_playing(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path],
        media_server: MediaServer, media_dir: Path, failure: str) -> None:
    """The current track is never touched by a "play now" that cannot open: the new
    play's own error goes out at once (with its play id), the current one plays to its
    end, and the next track the "play now" displaced follows it as planned."""
    text = media_dir / "q_now_article.mp3"
    text.write_text("this page has moved; follow the link on our home page. " * 2000)
    bad = media_server.url("absent.ogg") if failure == "absent" else str(text)
    sid = f"now-bad-{failure}"
    async with SocketConsumer(engine.socket_path, hello=ANY_ORDER) as consumer:
        first = await start(api, sid, queue_media["long_a"])
        following = await queue(api, sid, queue_media["b"])
        await consumer.wait_packets(sid, 25)
        failed = await play_now(api, sid, bad)
        error = await consumer.wait_event(sid, EventType.ERROR, timeout=20)
        status = (await api.get(f"/session/{sid}/status")).json()["status"]
        view = (await api.get(f"/sessions/{sid}")).json()
        await consumer.wait_event(sid, EventType.FINISHED, count=2, timeout=20)
    assert status == "streaming"
    assert view["play_id"] == first and view["next"]["play_id"] == following
    assert int(error.extra["play"]) == failed  # type: ignore[arg-type]
    assert error.extra["reason"] == "source"
    assert {"absent": "refused the request",
            "text": "no audio could be decoded from the source"}[failure] in error.message
    assert kinds(consumer.events(sid)) == [("ready", first), ("error", failed),
                                           ("finished", first), ("ready", following),
                                           ("finished", following)]
    one_stream(consumer, sid)
    signal = decode_opus_packets(consumer.opus_packets(sid))
    assert signal.shape[1] == pytest.approx((5 + SHORT) * RATE, abs=3 * 960)  # both whole
    assert frame_rms(signal)[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2)


async def test_play_now_refuses_a_session_that_is_not_playing(
        engine: EngineProcess, api: httpx.AsyncClient, queue_media: dict[str, Path]) -> None:
    assert (await api.post("/session/nobody/next",
                           json={"url": str(queue_media["a"]), "now": True})).status_code == 404
    wrong = await api.post("/session/nobody/next", json={"url": str(queue_media["a"]),
                                                          "now": "yes"})
    assert wrong.status_code == 400
