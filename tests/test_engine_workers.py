"""One endpoint over worker processes: placement, stickiness, and a worker killed mid-play
(real engine processes, a plain socket reader, distinct tones per session)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from loadtest.processes import EngineProcess
from protocol import EventType

from .conftest import TONES
from .support.consumer import SocketConsumer
from .support.hooks import hook_env
from .support.media import decode_opus_packets, dominant_frequency
from .support.starvation import HostCanary, assert_no_gap_of_its_own
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(120)

FRAME_SAMPLES = 960


async def _views(api: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    return {v["session_id"]: v for v in (await api.get("/sessions")).json()["sessions"]}


async def _tone(consumer: SocketConsumer, session_id: str, last: int = 50) -> float:
    packets = consumer.opus_packets(session_id)[-last:]
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(packets)[0]))


async def test_sessions_spread_over_the_workers_and_stay_on_theirs(
        engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
        media_dir: Path) -> None:
    with engine_factory(ENGINE_WORKERS="2") as engine:
        async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
                SocketConsumer(engine.socket_path) as consumer:
            names = ["a", "b", "c", "d"]
            for name in names:
                reply = await api.post(f"/session/w-{name}/play",
                                       json={"url": str(media_dir / f"{name}.mp3"),
                                             "format": "opus"})
                assert reply.status_code == 200
            for name in names:
                await consumer.wait_packets(f"w-{name}", 50, timeout=20)
            views = await _views(api)
            placed = {sid: view["worker"] for sid, view in views.items()}
            assert Counter(placed.values()) == {0: 2, 1: 2}, placed
            # A replacing play stays on its worker (its finished precedes the new ready).
            await api.post("/session/w-a/play", json={"url": str(media_dir / "e.mp3"),
                                                      "format": "opus"})
            await consumer.wait_event("w-a", EventType.READY, count=2)
            assert (await _views(api))["w-a"]["worker"] == placed["w-a"]
            kinds = [e.type for e in consumer.events("w-a")]
            assert kinds == [EventType.READY, EventType.FINISHED, EventType.READY]
            for name in names[1:]:
                assert abs(await _tone(consumer, f"w-{name}") - TONES[name]) < 10
            health = (await api.get("/health")).json()
            assert health["workers"] == 2 and health["sessions_playing"] == 4
            for name in names:
                await api.post(f"/session/w-{name}/stop")


@pytest.mark.realtime
async def test_a_killed_worker_sessions_play_on_and_the_others_never_notice(
        engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
        media_dir: Path, canary: HostCanary) -> None:
    with engine_factory(ENGINE_WORKERS="2") as engine:
        async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
                SocketConsumer(engine.socket_path) as consumer:
            sessions = {"k-a": "long_a.mp3", "k-b": "long_b.mp3", "k-c": "long_a.mp3",
                        "k-d": "long_b.mp3"}
            for sid, name in sessions.items():
                reply = await api.post(f"/session/{sid}/play",
                                       json={"url": str(media_dir / name), "format": "opus"})
                assert reply.status_code == 200
            for sid in sessions:
                await consumer.wait_packets(sid, 100, timeout=20)
            views = await _views(api)
            pids = (await api.get("/health")).json()["worker_pids"]
            victim = 0
            moved = [sid for sid, v in views.items() if v["worker"] == victim]
            kept = [sid for sid in sessions if sid not in moved]
            assert len(moved) == len(kept) == 2
            before = {sid: len(consumer.audio_page_times(sid)) for sid in sessions}
            killed_at = time.monotonic()
            os.kill(pids[victim], signal.SIGKILL)

            # The moved sessions play on within a couple of seconds, on the other
            # worker or the restarted one.
            for sid in moved:
                await consumer.wait_packets(sid, before[sid] + 100, timeout=20)
            await asyncio.sleep(1.0)
            window_end = time.monotonic()

            # The others never noticed: every page on time (net of host starvation).
            for sid in kept:
                times = [t for t in consumer.audio_page_times(sid)
                         if killed_at - 0.2 <= t <= window_end]
                assert len(times) >= 50 * (window_end - killed_at) * 0.9, sid
                assert_no_gap_of_its_own(times, canary)
                assert [e.type for e in consumer.events(sid)] == [EventType.READY]

            for sid in moved:
                # Nothing on the socket says it moved: no new ready, no end.
                assert [e.type for e in consumer.events(sid)] == [EventType.READY]
                pages = [page for _, page in consumer.pages(sid)]
                # One Ogg logical stream: one serial, one pair of header pages,
                # page numbers and granules that only go forward.
                assert {p.serial for p in pages} == {pages[0].serial}
                assert sum(p.bos for p in pages) == 1
                audio = [p for p in pages if p.granule_position > 0]
                assert all(b.sequence > a.sequence and b.granule_position > a.granule_position
                           for a, b in itertools.pairwise(audio))
                gaps = [(b.granule_position - a.granule_position) // FRAME_SAMPLES
                        for a, b in itertools.pairwise(audio)]
                assert sum(1 for g in gaps if g != 1) <= 1  # the one jump over the crash
                expected = TONES["a"] if sessions[sid] == "long_a.mp3" else TONES["b"]
                assert abs(await _tone(consumer, sid) - expected) < 10

            async def restarted() -> bool:
                health = (await api.get("/health")).json()
                return health["workers"] == 2 and pids[victim] not in health["worker_pids"]

            await poll_until_async(restarted, timeout=20)
            metrics = (await api.get("/metrics")).text
            assert "audiogate_engine_worker_restarts_total 1.0" in metrics
            assert "audiogate_engine_sessions_moved_total 2.0" in metrics
            assert (await api.get("/ready")).status_code == 200
            for sid in sessions:
                await api.post(f"/session/{sid}/stop")
                await consumer.wait_event(sid, EventType.FINISHED)


async def test_a_worker_whose_clock_stops_is_killed_and_its_sessions_move(
        engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
        media_dir: Path) -> None:
    # A stuck worker (here: stopped by a signal) is killed after the front saw no
    # tick for 2 s (15 s by default), so its listeners lose seconds, not the track.
    with engine_factory(ENGINE_WORKERS="2", **hook_env(hung_after=2.0)) as engine:
        async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
                SocketConsumer(engine.socket_path) as consumer:
            for sid, name in (("h-a", "long_a.mp3"), ("h-b", "long_b.mp3")):
                reply = await api.post(f"/session/{sid}/play",
                                       json={"url": str(media_dir / name), "format": "opus"})
                assert reply.status_code == 200
            for sid in ("h-a", "h-b"):
                await consumer.wait_packets(sid, 50, timeout=20)
            views = await _views(api)
            pids = (await api.get("/health")).json()["worker_pids"]
            stuck = next(sid for sid, v in views.items() if v["worker"] == 0)
            before = len(consumer.audio_page_times(stuck))
            os.kill(pids[0], signal.SIGSTOP)
            await consumer.wait_packets(stuck, before + 100, timeout=30)
            metrics = (await api.get("/metrics")).text
            assert "audiogate_engine_workers_killed_total 1.0" in metrics
            assert "audiogate_engine_sessions_moved_total 1.0" in metrics
            assert [e.type for e in consumer.events(stuck)] == [EventType.READY]
            assert abs(await _tone(consumer, stuck) - TONES[stuck[-1]]) < 10
            for sid in ("h-a", "h-b"):
                await api.post(f"/session/{sid}/stop")
