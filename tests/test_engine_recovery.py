"""The real engine process dies (SIGKILL) or stops (SIGTERM) under a live gateway
and comes back: every player plays its track again from where it was, paused
players stay paused there, and no queue moves on.

The track is a staircase of tones, 3 s each, so the tone a sink hears after the
restart tells the position the engine resumed from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.player import (
    Enqueue,
    Pause,
    Player,
    PlayerStatus,
    Resume,
    SetFilters,
    Stop,
    Track,
    controller,
)
from gateway.runtime import Gateway
from loadtest.processes import EngineProcess
from protocol.filters import parse_filters

from .support.gateway_harness import RecordingSink, running_gateway, settings_for
from .support.media import decode_opus_packets, dominant_frequency, step_at, write_steps
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

STEPS = [300.0, 450.0, 600.0, 750.0, 900.0, 1050.0, 1200.0, 1350.0]


class StreamSink(RecordingSink):
    """Records where each new Ogg stream (each play) starts in ``frames``."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_frames: list[int] = []

    def stream_started(self, start: object) -> None:  # type: ignore[override]
        super().stream_started(start)  # type: ignore[arg-type]
        self.stream_frames.append(len(self.frames))


@pytest.fixture(scope="module")
def steps_file(media_dir: Path) -> Path:
    return write_steps(media_dir / "steps.mp3", STEPS)


@pytest.fixture(scope="module")
def engine_slot() -> Iterator[list[EngineProcess]]:
    """The engine the module's tests kill or stop: each test takes the one the test
    before it started again (a start is seconds) and leaves its own restarted one
    here; the last is stopped at the end of the module."""
    slot: list[EngineProcess] = []
    yield slot
    for engine in slot:
        engine.terminate()


def _engine(media_dir: Path, port: int | None = None,
            socket_path: Path | None = None) -> EngineProcess:
    return EngineProcess(port=port, socket_path=socket_path, media_dir=media_dir,
                         allow_private=True, log_level="INFO")



async def tone(frames: list[bytes]) -> float:
    """Dominant frequency of *frames*, computed off the loop the gateway runs on."""
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(frames)[0]))


async def start_playing(gateway: Gateway, key: str, steps: Path, media_dir: Path
                        ) -> tuple[Player, StreamSink]:
    sink = StreamSink()
    gateway.router.register_sink(key, sink)
    player = gateway.players.get(key)
    await player.apply(Enqueue(Track(str(steps), title="steps", duration=len(STEPS) * 3.0)))
    await player.apply(Enqueue(Track(str(media_dir / "c.mp3"), title="next")))
    return player, sink


async def restart_under_gateway(signal_name: str, media_dir: Path, steps: Path,
                                slot: list[EngineProcess]) -> None:
    """Kill or stop (*signal_name*) the slot's engine under a gateway playing three
    players, and start it again; each run has keys of its own (``rec-<signal>-...``),
    so nothing an earlier run left on the engine is mistaken for this one's."""
    if not slot or slot[0].process is None or slot[0].process.poll() is not None:
        slot[:] = [await asyncio.to_thread(_engine(media_dir).start)]
    engine = slot[0]
    prefix = f"rec-{signal_name.lower()}"
    try:
        async with running_gateway(settings_for(engine)) as gateway:
            gateway.socket.backoff.cap = 0.3
            await gateway.socket.connected.wait()
            # Filters are refused until the engine's features are known.
            await wait_until(lambda: gateway.link.discovered)
            playing, heard = await start_playing(gateway, f"{prefix}-play", steps, media_dir)
            paused, quiet = await start_playing(gateway, f"{prefix}-pause", steps, media_dir)
            late, _ = await start_playing(gateway, f"{prefix}-late", steps, media_dir)
            # Sound settings ride the replay after the restart (an equalizer far
            # below the steps' tones, so the tone checks below still hold).
            await playing.apply(SetFilters(
                parse_filters({"equalizer": [{"band": 0, "gain": 0.2}]}), "custom"))
            await wait_until(lambda: paused.view().status is PlayerStatus.PLAYING)
            await wait_until(lambda: paused.view().position >= 1.0)
            await paused.apply(Pause())
            # Into the second step (450 Hz, 3 to 6 s).
            await wait_until(lambda: playing.view().position >= 3.8)
            assert abs(await tone(heard.frames[-40:]) - step_at(STEPS, 3.5)) < 5
            paused_at = paused.view().position
            before = playing.view().position

            if signal_name == "SIGKILL":
                await asyncio.to_thread(engine.kill)
            else:
                await asyncio.to_thread(engine.terminate)
            await wait_until(lambda: not gateway.socket.connected.is_set())
            lost_at = late.view().position
            # A pause while the engine is away is wanted, not done: the view says so.
            await late.apply(Pause())
            await wait_until(lambda: late.view().notice == controller.UNAVAILABLE)
            assert late.view().paused and late.view().pending
            assert playing.view().notice == controller.UNAVAILABLE
            # The outage (and the restart's own seconds) must not count as played.
            await asyncio.sleep(1.5)
            engine = await asyncio.to_thread(
                _engine(media_dir, port=engine.port, socket_path=engine.socket_path).start)
            slot[:] = [engine]

            await wait_until(lambda: len(heard.stream_frames) >= 2
                             and len(heard.frames) > heard.stream_frames[1] + 60, 20)
            view = playing.view()
            assert view.status is PlayerStatus.PLAYING
            assert view.current is not None and view.current.title == "steps"
            assert [t.title for t in view.upcoming] == ["next"]  # the queue did not advance
            resumed = heard.frames[heard.stream_frames[1]:heard.stream_frames[1] + 50]
            # Resumed near where it was (3.8 s into the track and up to a few tenths
            # more): still the second step, not the third or fourth it would have
            # reached had the outage counted.
            assert abs(await tone(resumed) - step_at(STEPS, before)) < 5, before
            assert gateway.players.stats.lost_streams >= 1
            assert "equalizer" in (await gateway.engine.filters(f"{prefix}-play")).active

            # The pause made during the outage holds, at the position of the loss.
            await asyncio.wait_for(late.settled(), 10)
            view = late.view()
            assert view.paused and not view.pending and view.notice == ""
            assert abs(view.position - lost_at) < 0.3
            # Our /sessions view: the Go-compatible /status says "streaming" while paused.
            info = await gateway.engine.session_info(f"{prefix}-late")
            assert info is None or info.status != "streaming", info

            # The paused player stayed paused at its position, with nothing playing.
            view = paused.view()
            assert view.paused and view.status is PlayerStatus.PAUSED
            assert abs(view.position - paused_at) < 0.1
            assert [t.title for t in view.upcoming] == ["next"]
            assert len(quiet.stream_frames) == 1
            # Our /sessions view: the Go-compatible /status says "streaming" while paused.
            info = await gateway.engine.session_info(f"{prefix}-pause")
            assert info is None or info.status != "streaming", info
            await paused.apply(Resume())
            await wait_until(lambda: len(quiet.stream_frames) >= 2
                             and len(quiet.frames) > quiet.stream_frames[1] + 50, 20)
            resumed = quiet.frames[quiet.stream_frames[1]:quiet.stream_frames[1] + 50]
            assert abs(await tone(resumed) - step_at(STEPS, paused_at)) < 5
            for player in (playing, paused, late):
                await player.apply(Stop())
    except BaseException:
        # What failed may have left the engine in any state: the next test starts anew.
        await asyncio.to_thread(engine.terminate)
        raise


async def test_players_recover_after_the_engine_is_killed(
        media_dir: Path, steps_file: Path, engine_slot: list[EngineProcess]) -> None:
    await restart_under_gateway("SIGKILL", media_dir, steps_file, engine_slot)


async def test_players_recover_after_the_engine_is_stopped(
        media_dir: Path, steps_file: Path, engine_slot: list[EngineProcess]) -> None:
    await restart_under_gateway("SIGTERM", media_dir, steps_file, engine_slot)
