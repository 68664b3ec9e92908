"""Gapless auto-advance, filters and crossfade through the gateway's player, against
the real engine process (and the Go-engine stand-in, which has none of them)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.player import (
    CommandError,
    Enqueue,
    PlayerStatus,
    PlayNow,
    SetCrossfade,
    SetFilters,
    Stop,
    Track,
)
from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from protocol.filter_presets import Preset, preset_filters

from .support.gateway_harness import RecordingSink, running_gateway, settings_for
from .support.go_engine import GoEngineStandIn
from .support.media import decode_opus_packets, write_opus_tone
from .support.signals import band_level_db
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tones(media_dir: Path) -> dict[str, Path]:
    return {
        "a": write_opus_tone(media_dir / "gw_gap_a440.ogg", 440.0, 3.0, complexity=10,
                             flush=True),
        "b": write_opus_tone(media_dir / "gw_gap_b660.ogg", 660.0, 3.0, complexity=10,
                             flush=True),
        "long": write_opus_tone(media_dir / "gw_gap_long440.ogg", 440.0, 8.0, complexity=10,
                                flush=True),
    }


def count_plays(gateway: Gateway) -> list[str]:
    """Record the URL of every play the gateway sends from now on."""
    sent: list[str] = []
    original = gateway.engine.play

    async def play(session_id: str, url: str, **kwargs: Any) -> Any:
        sent.append(url)
        return await original(session_id, url, **kwargs)

    gateway.engine.play = play  # type: ignore[method-assign]
    return sent


def enqueue(path: Path, title: str) -> Enqueue:
    return Enqueue(Track(str(path), title=title, duration=3.0))


async def test_a_queue_of_two_tones_advances_gaplessly_in_one_stream(
        engine: EngineProcess, tones: dict[str, Path]) -> None:
    async with running_gateway(settings_for(engine)) as gateway:
        await asyncio.wait_for(gateway.socket.connected.wait(), 10)
        await wait_until(lambda: gateway.link.discovered)
        sink = RecordingSink()
        gateway.router.register_sink("gw-gapless", sink)
        plays = count_plays(gateway)
        player = gateway.players.get("gw-gapless")
        await player.apply(enqueue(tones["a"], "a"))
        await player.apply(enqueue(tones["b"], "b"))
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "b"  # type: ignore[union-attr]
                         and player.view().status is PlayerStatus.PLAYING, 20)
        await wait_until(lambda: player.view().status is PlayerStatus.IDLE, 20)
        frames = list(sink.frames)
    # One play request, one Ogg stream, both tones, no frame of silence between.
    assert plays == [str(tones["a"])]
    assert player.stats.gapless_joins == 1
    assert len(sink.stream_starts) == 1
    assert len(frames) == pytest.approx(300, abs=3)
    signal = await asyncio.to_thread(decode_opus_packets, frames)
    count = signal.shape[1] // 960
    rms = np.sqrt((signal[0, : count * 960].reshape(count, 960) ** 2).mean(axis=1))
    assert rms[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2), rms.min()

    def louder_660(n: int) -> bool:
        chunk = signal[:, n * 960 : (n + 1) * 960].T / 32768
        return band_level_db(chunk, 660) > band_level_db(chunk, 440)

    boundary = next(n for n in range(count) if louder_660(n))
    assert boundary == pytest.approx(150, abs=3)
    assert all(louder_660(n) for n in range(boundary + 2, count - 2))


async def test_filters_and_crossfade_reach_the_engine_live(
        engine: EngineProcess, media_dir: Path) -> None:
    async with running_gateway(settings_for(engine)) as gateway, \
            httpx.AsyncClient(base_url=engine.url, timeout=10.0) as api:
        await asyncio.wait_for(gateway.socket.connected.wait(), 10)
        await wait_until(lambda: gateway.link.discovered)
        plays = count_plays(gateway)
        player = gateway.players.get("gw-filters")
        await player.apply(Enqueue(Track(str(media_dir / "long_a.mp3"), title="long")))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING, 20)
        await player.apply(SetFilters.preset(Preset.BASSBOOST))
        await player.apply(SetCrossfade(2.0))
        async with asyncio.timeout(10):
            await player.settled()
        answer = (await api.get("/session/gw-filters/filters")).json()
        assert answer["filters"]["equalizer"] == preset_filters(Preset.BASSBOOST)["equalizer"]
        assert "equalizer" in answer["active"]
        session = (await api.get("/sessions/gw-filters")).json()
        assert session["crossfade"] == 2.0
        # Reset: the engine clears them, still the same play.
        await player.apply(SetFilters.preset(Preset.RESET))
        async with asyncio.timeout(10):
            await player.settled()
        answer = (await api.get("/session/gw-filters/filters")).json()
        assert "equalizer" not in answer["active"]
        assert plays == [str(media_dir / "long_a.mp3")]
        await player.apply(Stop())


@asynccontextmanager
async def go_gateway() -> AsyncIterator[tuple[GoEngineStandIn, Gateway]]:
    # Unix socket paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    async with GoEngineStandIn(Path(tempfile.mkdtemp(prefix="ag-gog-"))) as engine:
        settings = GatewaySettings(go_api_port=engine.port, socket_path=engine.socket_path,
                                   queue_db=":memory:", port=0)  # type: ignore[call-arg]
        async with running_gateway(settings) as gateway:
            await asyncio.wait_for(gateway.socket.connected.wait(), 10)
            await wait_until(lambda: gateway.link.discovered)
            yield engine, gateway


async def test_a_go_engine_gets_plain_plays_and_filters_are_refused_in_words(
        media_dir: Path) -> None:
    async with go_gateway() as (_engine, gateway):
        assert gateway.link.capabilities.is_go_engine
        plays = count_plays(gateway)
        player = gateway.players.get("go-gapless")
        await player.apply(Enqueue(Track(str(media_dir / "short_c.mp3"), title="short")))
        await player.apply(Enqueue(Track(str(media_dir / "a.mp3"), title="next")))
        with pytest.raises(CommandError, match="this audio engine does not support filters"):
            await player.apply(SetFilters.preset(Preset.NIGHTCORE))
        with pytest.raises(CommandError, match="does not support crossfade"):
            await player.apply(SetCrossfade(3.0))
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "next"  # type: ignore[union-attr]
                         and player.view().status is PlayerStatus.PLAYING, 20)
        assert plays == [str(media_dir / "short_c.mp3"), str(media_dir / "a.mp3")]
        assert player.stats.gapless_joins == 0
        view = player.view().as_dict()
        assert view["filter"] == "" and view["crossfade"] == 0.0
        await player.apply(Stop())


async def test_play_now_keeps_the_current_stream_until_the_new_track_plays(
        engine: EngineProcess, tones: dict[str, Path], media_server: MediaServer) -> None:
    """A "play now" that cannot open leaves the current stream untouched (no gap, no
    replay, the new track's own error); one that opens replaces it in the same stream."""
    async with running_gateway(settings_for(engine)) as gateway:
        await asyncio.wait_for(gateway.socket.connected.wait(), 10)
        await wait_until(lambda: gateway.link.discovered)
        sink = RecordingSink()
        gateway.router.register_sink("gw-now", sink)
        plays = count_plays(gateway)
        player = gateway.players.get("gw-now")
        await player.apply(Enqueue(Track(media_server.url("gw_gap_long440.ogg"),
                                         title="radio", duration=None)))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING
                         and len(sink.frames) > 25, 20)
        await player.apply(PlayNow(Track(media_server.url("absent.ogg"), title="broken")))
        await wait_until(lambda: player.view().failure is not None, 20)
        view = player.view()
        assert view.current is not None and view.current.title == "radio"
        assert view.status is PlayerStatus.PLAYING
        assert view.error.startswith("could not play broken: ") and "seek" not in view.error
        assert "refused the request" in view.error
        before = len(sink.frames)
        await asyncio.sleep(0.5)
        assert len(sink.frames) >= before + 15  # the radio plays on
        await player.apply(PlayNow(Track(str(tones["b"]), title="b", duration=3.0)))
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "b"  # type: ignore[union-attr]
                         and player.view().status is PlayerStatus.PLAYING, 20)
        await wait_until(lambda: player.view().status is PlayerStatus.IDLE, 20)
        frames = list(sink.frames)
    assert plays == [media_server.url("gw_gap_long440.ogg")]  # the rest went as play now
    assert len(sink.stream_starts) == 1
    signal = await asyncio.to_thread(decode_opus_packets, frames)
    count = signal.shape[1] // 960
    rms = np.sqrt((signal[0, : count * 960].reshape(count, 960) ** 2).mean(axis=1))
    assert rms[2:-2].min() > 0.3 * 0.5 * 32768 / np.sqrt(2), rms.min()
