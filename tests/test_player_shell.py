"""The player shell's failure paths: engine errors, an unreachable engine, lost
answers, a crashed task, engine shutdown and reconnects.

These run against ``ScriptedEngine`` (an in-process engine API) because a real
engine cannot be made to answer 500 or cut a connection after acting on a play;
the same paths against the real engine process (killed, restarted) are in
test_engine_recovery.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.player import (
    CommandError,
    Enqueue,
    Pause,
    PlayerRegistry,
    PlayerStatus,
    PlayerView,
    QueueStore,
    Resume,
    Seek,
    SetVolume,
    Stop,
    Track,
    controller,
)
from gateway.player.link import EngineLink
from gateway.router import Router
from protocol import Event, EventType

from .support.scripted_engine import ScriptedEngine
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry delays of tens of milliseconds instead of seconds."""
    monkeypatch.setattr(controller, "RETRY_FIRST", 0.02)
    monkeypatch.setattr(controller, "RETRY_MAX", 0.1)
    monkeypatch.setattr(controller, "RESTART_FIRST", 0.02)



@asynccontextmanager
async def shell(engine: ScriptedEngine, *, store: QueueStore | None = None,
                idle_timeout: float = 600.0) -> AsyncIterator[tuple[PlayerRegistry, Router]]:
    router = Router()
    client = engine.client()
    registry = PlayerRegistry(engine=client, router=router, link=EngineLink(), store=store,
                              idle_timeout=idle_timeout)
    registry.engine_connected()
    await wait_until(lambda: registry.link.discovered)
    try:
        yield registry, router
    finally:
        await registry.close(release=False)
        await client.aclose()


async def settled(player: controller.Player) -> None:
    async with asyncio.timeout(5.0):
        await player.settled()


def track(name: str, duration: float = 100.0) -> Track:
    return Track(url=f"http://media.test/{name}.mp3", title=name, duration=duration)


def enqueue(name: str) -> Enqueue:
    return Enqueue(track(name))


def event(kind: EventType, key: str, play: int | None = None, **extra: str) -> Event:
    values: dict[str, str | int] = dict(extra)
    if play is not None:
        values["play"] = play
    return Event(kind, key, extra=values)


async def playing(registry: PlayerRegistry, router: Router, key: str, name: str = "a",
                  play: int | None = 1) -> controller.Player:
    player = registry.get(key)
    await player.apply(enqueue(name))
    await settled(player)
    router.dispatch(event(EventType.READY, key, play))
    assert player.view().status is PlayerStatus.PLAYING
    return player


# -- engine errors ----------------------------------------------------------------------


async def test_a_500_on_stop_is_retried_and_the_player_lives_on() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-stop")
        views: list[PlayerView] = []
        player.subscribe(views.append)
        engine.fail("stop", 500, 500)
        await player.apply(Stop())
        assert player.view().pending
        await settled(player)
        assert len(engine.calls("stop")) == 3
        assert "k-stop" not in engine.sessions
        assert any("failed" in v.notice for v in views)
        assert player.view().notice == "" and not player.view().pending
        # The player still works.
        await player.apply(enqueue("b"))
        await settled(player)
        assert [c["url"] for c in engine.calls("play")][-1].endswith("/b.mp3")
        assert registry.stats.restarts == 0


async def test_a_500_on_the_pause_after_a_play_is_retried() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-seek")
        await player.apply(Pause())
        await settled(player)
        # A seek while paused is a new play, then a pause; the pause fails once.
        engine.fail("pause", 500)
        await player.apply(Seek(30.0))
        await settled(player)
        assert engine.calls("play")[-1]["start_at"] == 30.0
        assert len(engine.calls("pause")) == 3  # the first pause, the 500, the retry
        assert engine.sessions["k-seek"].status == "paused"
        view = player.view()
        assert view.paused and not view.pending


async def test_a_play_refused_with_500_three_times_moves_on_with_the_error() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, _router):
        player = registry.get("k-refused")
        await player.apply(enqueue("a"))
        await player.apply(enqueue("b"))
        engine.fail("play", 500, 500, 500)
        await settled(player)
        assert [c["url"].rsplit("/", 1)[1] for c in engine.calls("play")] == [
            "a.mp3", "a.mp3", "a.mp3", "b.mp3"]
        view = player.view()
        assert view.current is not None and view.current.title == "b"
        assert "injected 500" in view.error


# -- an unreachable engine ---------------------------------------------------------------


async def test_a_pause_while_the_engine_is_unreachable_is_kept_until_it_is_back() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-down")
        engine.down = True
        await player.apply(Pause())
        await wait_until(lambda: player.view().notice == controller.UNAVAILABLE)
        view = player.view()
        assert view.paused and view.pending  # wanted, not done
        assert engine.sessions["k-down"].status == "streaming"
        assert not engine.calls("pause")
        engine.down = False
        await settled(player)
        assert engine.sessions["k-down"].status == "paused"
        assert player.view().notice == "" and not player.view().pending


# -- lost answers: plays are never sent again blindly -----------------------------------


@pytest.mark.parametrize("features", [[], ["play_id"]], ids=["go-engine", "play-ids"])
async def test_a_play_whose_answer_was_lost_is_not_sent_again(features: list[str]) -> None:
    engine = ScriptedEngine(features=features)
    async with shell(engine) as (registry, router):
        player = registry.get("k-cut")
        engine.fail("play", "cut")  # the engine starts it, the answer is lost
        await player.apply(enqueue("a"))
        await settled(player)
        assert len(engine.calls("play")) == 1
        assert registry.stats.play_checks == 1
        router.dispatch(event(EventType.READY, "k-cut", 1 if features else None))
        assert player.view().status is PlayerStatus.PLAYING


async def test_a_play_that_never_arrived_is_sent_once_more() -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, router):
        player = registry.get("k-lost")
        engine.fail("play", "lost")  # cut before the engine saw it
        await player.apply(enqueue("a"))
        await settled(player)
        assert len(engine.calls("play")) == 1 and engine.sessions["k-lost"].play_id == 1
        assert registry.stats.play_checks == 1
        router.dispatch(event(EventType.READY, "k-lost", 1))
        assert player.view().status is PlayerStatus.PLAYING


# -- the supervisor ---------------------------------------------------------------------


async def test_an_unexpected_error_restarts_the_player_task(
        caplog: pytest.LogCaptureFixture) -> None:
    engine = ScriptedEngine(features=["play_id"])
    async with shell(engine) as (registry, router):
        player = registry.get("k-crash")
        engine.fail("play", "raise")
        with caplog.at_level(logging.ERROR, logger="gateway.player.controller"):
            await player.apply(enqueue("a"))
            await wait_until(lambda: registry.stats.restarts == 1)
            await settled(player)
        assert any("player task failed" in r.getMessage() for r in caplog.records)
        # After the restart it asked before playing again, then played once.
        assert engine.questions() >= 1 and len(engine.calls("play")) == 1
        router.dispatch(event(EventType.READY, "k-crash", 1))
        await player.apply(Pause())
        await settled(player)
        assert engine.sessions["k-crash"].status == "paused"


# -- capabilities ------------------------------------------------------------------------


async def test_volume_on_an_engine_without_live_volume_is_refused_in_words() -> None:
    engine = ScriptedEngine(features=[])  # a Go engine
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-govol", play=None)
        with pytest.raises(CommandError, match="cannot change the volume"):
            await player.apply(SetVolume(0.5))
        assert player.view().volume == 1.0
        assert not engine.calls("volume")


async def test_volume_on_our_engine_is_live() -> None:
    engine = ScriptedEngine(features=["play_id", "volume"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-vol")
        await player.apply(SetVolume(0.5))
        await settled(player)
        assert engine.calls("volume") == [{"volume": 0.5}]
        assert len(engine.calls("play")) == 1


# -- engine shutdown and restart ---------------------------------------------------------


async def test_finished_for_shutdown_keeps_the_track_and_its_position() -> None:
    engine = ScriptedEngine(features=["play_id", "finish_reason"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-shut")
        await player.apply(enqueue("b"))
        await asyncio.sleep(0.4)
        engine.sessions.clear()
        router.dispatch(event(EventType.FINISHED, "k-shut", 1, reason="shutdown"))
        view = player.view()
        assert view.current is not None and view.current.title == "a"
        assert [t.title for t in view.upcoming] == ["b"]
        await settled(player)
        again = engine.calls("play")[-1]
        assert again["url"].endswith("/a.mp3") and 0.3 < again["start_at"] < 1.5
        assert registry.stats.lost_streams == 1


async def test_a_reasonless_finished_right_before_the_socket_closes_is_not_an_end() -> None:
    engine = ScriptedEngine(features=[])  # no reasons: a Go engine, or ours before them
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-close", play=None)
        await player.apply(enqueue("b"))
        await asyncio.sleep(0.3)
        router.dispatch(event(EventType.FINISHED, "k-close"))
        registry.engine_lost()
        engine.sessions.clear()  # the engine restarted
        view = player.view()
        assert view.current is not None and view.current.title == "a"
        registry.engine_connected()
        await settled(player)
        again = engine.calls("play")[-1]
        assert again["url"].endswith("/a.mp3") and 0.2 < again["start_at"] < 1.5
        assert [t.title for t in player.view().upcoming] == ["b"]


async def test_a_reasonless_finished_with_the_socket_up_is_the_end_of_the_track() -> None:
    engine = ScriptedEngine(features=[])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-end", play=None)
        await player.apply(enqueue("b"))
        router.dispatch(event(EventType.FINISHED, "k-end"))
        await wait_until(lambda: player.view().current is not None
                         and player.view().current.title == "b")  # type: ignore[union-attr]
        await settled(player)
        assert engine.calls("play")[-1]["url"].endswith("/b.mp3")


async def test_after_a_reconnect_a_lost_stream_plays_again_from_where_it_was() -> None:
    engine = ScriptedEngine(features=["play_id", "finish_reason"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-lost-stream")
        await asyncio.sleep(0.5)
        registry.engine_lost()
        engine.sessions.clear()
        await asyncio.sleep(0.5)  # the outage does not count as played
        registry.engine_connected()
        await settled(player)
        again = engine.calls("play")[-1]
        assert again["url"].endswith("/a.mp3") and 0.4 < again["start_at"] < 0.9


async def test_after_a_reconnect_a_paused_lost_stream_stays_paused_there() -> None:
    engine = ScriptedEngine(features=["play_id", "finish_reason"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-paused")
        await asyncio.sleep(0.3)
        await player.apply(Pause())
        await settled(player)
        position = player.view().position
        registry.engine_lost()
        engine.sessions.clear()
        registry.engine_connected()
        await settled(player)
        assert len(engine.calls("play")) == 1  # nothing played while paused
        view = player.view()
        assert view.paused and view.status is PlayerStatus.PAUSED
        assert abs(view.position - position) < 0.05
        await player.apply(Resume())
        await settled(player)
        assert abs(engine.calls("play")[-1]["start_at"] - position) < 0.05


async def test_a_stream_that_ended_while_the_socket_was_down_advances() -> None:
    engine = ScriptedEngine(features=["play_id", "finish_reason"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-over")
        await player.apply(enqueue("b"))
        registry.engine_lost()
        engine.sessions["k-over"].status = "stopped"  # its finished went nowhere
        registry.engine_connected()
        await wait_until(lambda: len(engine.calls("play")) == 2)
        assert engine.calls("play")[-1]["url"].endswith("/b.mp3")


# -- holding and unloading ---------------------------------------------------------------


async def test_idle_unheld_players_are_unloaded_and_come_back_from_the_store(
        tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite3")
    engine = ScriptedEngine(features=["play_id"])
    try:
        async with shell(engine, store=store, idle_timeout=0.05) as (registry, router):
            player = await playing(registry, router, "k-idle")
            await player.apply(enqueue("b"))
            held = registry.get("k-held")
            release = held.hold()
            await player.apply(Pause())
            await settled(player)
            await asyncio.sleep(0.1)
            assert await registry.evict_idle() == 1  # k-held is held
            assert registry.existing("k-idle") is None and registry.existing("k-held")
            assert "k-idle" not in engine.sessions  # its engine slot was freed
            release()
            await asyncio.sleep(0.1)
            assert await registry.evict_idle() == 1
            back = registry.get("k-idle")
            await settled(back)
            view = back.view()
            assert view.current is not None and view.current.title == "a"
            assert [t.title for t in view.upcoming] == ["b"] and view.paused
            assert registry.stats.evictions == 2
            with pytest.raises(CommandError, match="unloaded"):
                await player.apply(Resume())
    finally:
        await store.aclose()


async def test_the_notice_clears_when_the_socket_comes_back_after_the_api() -> None:
    engine = ScriptedEngine(features=["play_id", "finish_reason"])
    async with shell(engine) as (registry, router):
        player = await playing(registry, router, "k-order")
        registry.engine_lost()
        engine.sessions.clear()
        engine.down = True
        await player.apply(Pause())
        await wait_until(lambda: player.view().notice == controller.UNAVAILABLE)
        engine.down = False  # the API answers again; the socket is still down
        await wait_until(lambda: not player.view().pending)
        assert player.view().notice == controller.UNAVAILABLE
        registry.engine_connected()
        await wait_until(lambda: player.view().notice == "")
        assert player.view().paused and len(engine.calls("play")) == 1


@pytest.mark.parametrize("features", [[], ["play_id"]], ids=["go-engine", "play-ids"])
async def test_a_ready_written_while_the_socket_was_down_is_taken_from_the_status(
        features: list[str]) -> None:
    engine = ScriptedEngine(features=features)
    async with shell(engine) as (registry, _router):
        registry.engine_lost()  # the engine's API is up, its socket not (yet)
        player = registry.get("k-missed")
        await player.apply(enqueue("a"))
        await settled(player)
        assert player.view().status is PlayerStatus.LOADING  # its ready went nowhere
        registry.engine_connected()
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)
        # Our engine tells the position (1.5 s in); a Go engine's is taken as the start.
        assert abs(player.view().position - (1.5 if features else 0.0)) < 0.2
        assert len(engine.calls("play")) == 1
