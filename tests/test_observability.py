"""Metrics move with what happens; the loadtest CLI produces sane numbers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.player import Enqueue, Stop, Track
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol import AudioPacket

from .support.consumer import SocketConsumer
from .support.gateway_harness import RecordingSink, running_gateway, settings_for
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(180)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_engine_metrics_follow_plays_underruns_and_stops(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer, media_dir
) -> None:
    size = (media_dir / "long_a.mp3").stat().st_size
    # The stalled source opens once its probe has waited ENGINE_OPEN_TIMEOUT (the
    # default, 10 s, is only slower), plays what it sent, then underruns.
    with engine_factory(ENGINE_STUCK_THRESHOLD="60", ENGINE_READ_TIMEOUT="60",
                        ENGINE_OPEN_TIMEOUT="1.5") as engine:
        async with httpx.AsyncClient(base_url=engine.url) as api, \
                SocketConsumer(engine.socket_path) as consumer:
            before = (await api.get("/metrics")).text
            assert value(before, "audiogate_engine_frames_sent_total", format="opus") == 0
            await api.post("/session/m-ok/play", json={"url": media_server.url("long_b.mp3"),
                                                       "format": "opus"})
            await api.post("/session/m-stall/play", json={
                "url": media_server.url("long_a.mp3", stall_after=size // 30), "format": "web"})
            await consumer.wait_packets("m-ok", 60)

            async def stalled() -> bool:
                text = (await api.get("/metrics")).text
                return value(text, "audiogate_engine_underruns_total", format="web") > 10

            await poll_until_async(stalled, timeout=30)
            during = (await api.get("/metrics")).text
            assert value(during, "audiogate_engine_frames_sent_total", format="opus") >= 50
            assert value(during, "audiogate_engine_sessions", state="streaming") == 2
            assert value(during, "audiogate_engine_consumers") == 1
            assert value(during, "audiogate_engine_plays_total", format="opus") == 1
            assert value(during, "audiogate_engine_time_to_first_audio_seconds_count",
                         format="opus") == 1
            assert value(during, "audiogate_engine_resolution_seconds_count") == 2
            assert value(during, "audiogate_engine_tick_lateness_seconds_count") > 50
            await api.post("/session/m-ok/stop")
            await api.post("/session/m-stall/stop")
            after = (await api.get("/metrics")).text
            assert value(after, "audiogate_engine_sessions", state="streaming") == 0
            stats = (await api.get("/stats")).json()
            # Lavalink's keys, then ours (what admission by load sees).
            assert list(stats) == ["players", "playingPlayers", "uptime", "memory", "cpu",
                                   "frameStats", "headroom"]
            assert stats["players"] == 0 and stats["cpu"]["cores"] >= 1


async def test_gateway_metrics_count_routed_and_unknown_packets(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    async with running_gateway(settings_for(engine)) as gateway:
        sink = RecordingSink()
        gateway.router.register_sink("gm-1", sink)
        await gateway.socket.connected.wait()
        player = gateway.players.get("gm-1")
        await player.apply(Enqueue(Track(media_server.url("a.mp3"))))
        gateway.router.dispatch(AudioPacket("nobody-here", b"x"))
        async with asyncio.timeout(20):
            while len(sink.frames) < 30:
                await asyncio.sleep(0.05)
        text = __import__("prometheus_client").generate_latest(gateway.metrics.registry).decode()
        assert value(text, "audiogate_gateway_packets_routed_total") >= 30
        assert value(text, "audiogate_gateway_packets_unknown_session_total") >= 1
        assert value(text, "audiogate_gateway_engine_socket_connected") == 1
        assert value(text, "audiogate_gateway_players") == 1
        assert ("audiogate_gateway_sink_frames_dropped_total", (("sink", "opus"),)) in samples(text)
        await player.apply(Stop())


@pytest.mark.realtime
def test_the_loadtest_cli_runs_a_small_scenario() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "--sessions", "4", "--settle", "2",
         "--window", "3", "--minutes", "0.5", "--json"],
        capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["sessions"] == 4 and report["sessions_with_audio"] == 4
    assert report["errors"] == {} and report["http_failures"] == {}
    assert 0 < report["time_to_first_audio"]["median"] < 2.0
    assert 0.015 < report["gap"]["median"] < 0.025
    assert report["gap"]["count"] > 4 * 3 * 40
    assert report["late_fraction"] < 0.05
    assert report["cpu_percent"]["count"] > 0 and report["rss_mb"]["median"] > 10
    assert report["underruns"] == 0
