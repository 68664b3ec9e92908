"""The player shell with an engine that takes a next track, filters and crossfade
(and a Go engine that takes none): which calls it makes, that a join advances the
queue without a play, and that a join that did not happen is played plainly.

An in-process engine API (``ScriptedEngine``) answers, so the exact calls can be
counted and a join that never happened can be staged; the same flow against the real
engine process is in test_gateway_gapless.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.player import (
    Clear,
    CommandError,
    Enqueue,
    LoopMode,
    Move,
    PlayerRegistry,
    PlayerStatus,
    PlayNow,
    SetCrossfade,
    SetFilters,
    SetLoop,
    Track,
    controller,
)
from gateway.player.link import EngineLink
from gateway.router import Router
from protocol import Event, EventType
from protocol.filter_presets import Preset, preset_filters
from protocol.filters import Filters, parse_filters

from .support.scripted_engine import ScriptedEngine
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

OURS = ["play_id", "volume", "seek", "finish_reason", "filters", "next_track", "crossfade"]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller, "RETRY_FIRST", 0.02)
    monkeypatch.setattr(controller, "RETRY_MAX", 0.1)
    monkeypatch.setattr(controller, "JOIN_READY_WAIT", 0.1)


@asynccontextmanager
async def shell(engine: ScriptedEngine) -> AsyncIterator[tuple[PlayerRegistry, Router]]:
    router = Router()
    registry = PlayerRegistry(engine=engine.client(), router=router, link=EngineLink())
    registry.engine_connected()
    await wait_until(lambda: registry.link.discovered)
    try:
        yield registry, router
    finally:
        await registry.close(release=False)


def track(name: str) -> Track:
    return Track(url=f"http://media.test/{name}.mp3", title=name, duration=100.0)


def add(*names: str) -> Enqueue:
    first, *rest = (track(name) for name in names)
    return Enqueue(first, tuple(rest))


def event(kind: EventType, key: str, play: int, **extra: str) -> Event:
    return Event(kind, key, extra={"play": play, **extra})


async def settled(player: controller.Player) -> None:
    async with asyncio.timeout(5.0):
        await player.settled()


def urls(bodies: list[dict[str, object]]) -> list[str]:
    return [str(b["url"]).rsplit("/", 1)[1] for b in bodies]


async def test_the_next_track_joins_without_a_play_and_follows_queue_changes() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b", "c"))
        await settled(player)
        assert engine.calls("next") == []  # not before the play streams
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        assert urls(engine.calls("next")) == ["b.mp3"]
        # A move changes what follows: the engine is told again.
        await player.apply(Move(2, 1))
        await settled(player)
        assert urls(engine.calls("next")) == ["b.mp3", "c.mp3"]
        # The join: finished (end) of play 1, ready of the next play, no play sent.
        ended, joined = engine.join("g")
        router.dispatch(event(EventType.FINISHED, "g", ended, reason="end"))
        router.dispatch(event(EventType.READY, "g", joined))
        await settled(player)
        view = player.view()
        assert view.current is not None and view.current.title == "c"
        assert view.status is PlayerStatus.PLAYING
        assert len(engine.calls("play")) == 1
        assert player.stats.gapless_joins == 1
        # The track after c is b; clearing the queue cancels it at the engine.
        assert urls(engine.calls("next"))[-1] == "b.mp3"
        await player.apply(Clear())
        await settled(player)
        assert len(engine.calls("next/cancel")) == 1
        assert engine.sessions["g"].next is None
        # The end of the last track is a plain end.
        router.dispatch(event(EventType.FINISHED, "g", joined, reason="end"))
        await settled(player)
        assert player.view().status is PlayerStatus.IDLE
        assert len(engine.calls("play")) == 1


async def test_loop_track_rejoins_the_same_track() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(SetLoop(LoopMode.TRACK))
        await player.apply(add("a"))
        await settled(player)
        for round_ in range(3):
            router.dispatch(event(EventType.READY, "g", engine.sessions["g"].play_id))
            await settled(player)
            assert engine.sessions["g"].next is not None, round_
            ended, joined = engine.join("g")
            router.dispatch(event(EventType.FINISHED, "g", ended, reason="end"))
        router.dispatch(event(EventType.READY, "g", joined))
        await settled(player)
        assert len(engine.calls("play")) == 1 and player.stats.gapless_joins == 3
        assert player.view().current is not None


async def test_a_failed_next_track_is_reported_and_the_queue_moves_on() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "broken", "c"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        next_id = engine.sessions["g"].next
        assert next_id is not None
        # The current track plays to its end, then the next one's error.
        router.dispatch(event(EventType.FINISHED, "g", 1, reason="end"))
        router.dispatch(Event(EventType.ERROR, "g", "could not open the track",
                              extra={"play": next_id[0]}))
        await settled(player)
        view = player.view()
        assert view.failure is not None and view.failure.track.title == "broken"
        assert view.current is not None and view.current.title == "c"
        assert urls(engine.calls("play")) == ["a.mp3", "c.mp3"]


async def test_a_join_that_did_not_happen_is_played_plainly() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        # The next track came too late: the session ends, no ready follows.
        engine.sessions["g"].status = "stopped"
        engine.sessions["g"].next = None
        router.dispatch(event(EventType.FINISHED, "g", 1, reason="end"))
        await wait_until(lambda: len(engine.calls("play")) == 2)
        await settled(player)
        assert urls(engine.calls("play")) == ["a.mp3", "b.mp3"]
        assert player.stats.missed_joins == 1


async def test_a_join_whose_ready_was_lost_is_taken_from_the_engine() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        ended, _ = engine.join("g")
        router.dispatch(event(EventType.FINISHED, "g", ended, reason="end"))
        await wait_until(lambda: player.view().status is PlayerStatus.PLAYING)
        await settled(player)
        assert len(engine.calls("play")) == 1 and player.stats.missed_joins == 0


async def test_filters_and_crossfade_apply_live_and_ride_every_play() -> None:
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        bass = preset_filters(Preset.BASSBOOST)
        await player.apply(SetFilters(parse_filters(bass), "bassboost"))
        await player.apply(SetCrossfade(3.0))
        await settled(player)
        assert engine.calls("filters") == [bass]
        assert engine.calls("crossfade") == [{"crossfade": 3.0}]
        assert len(engine.calls("play")) == 1  # live: no new play
        # An engine restart (the stream lost) plays again with both.
        router.dispatch(event(EventType.FINISHED, "g", 1, reason="shutdown"))
        await settled(player)
        replay = engine.calls("play")[-1]
        assert replay["filters"] == bass and replay["crossfade"] == 3.0
        assert player.view().as_dict()["filter"] == "bassboost"


async def test_a_go_engine_refuses_filters_in_words_and_gets_plain_plays() -> None:
    engine = ScriptedEngine(features=[])
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(Event(EventType.READY, "g"))
        with pytest.raises(CommandError, match="does not support filters"):
            await player.apply(SetFilters.preset(Preset.NIGHTCORE))
        with pytest.raises(CommandError, match="does not support crossfade"):
            await player.apply(SetCrossfade(2.0))
        assert player.view().filters == Filters() and player.view().crossfade == 0.0
        await settled(player)
        router.dispatch(Event(EventType.FINISHED, "g"))
        await wait_until(lambda: len(engine.calls("play")) == 2)
        await settled(player)
        assert engine.calls("next") == [] and engine.calls("filters") == []
        assert "filters" not in engine.calls("play")[-1]
        # Settings kept from our engine (a stored queue) are not shown as heard here.
        player.core.apply(SetFilters.preset(Preset.SOFT), 0.0)
        player.core.apply(SetCrossfade(5.0), 0.0)
        view = player.view()
        assert view.filter_name == "" and view.filters == Filters() and view.crossfade == 0.0
        assert player.core.sound.filter_name == "soft"  # kept for an engine that has filters


# -- play now that keeps the current track until the new one has audio ---------------------


async def test_play_now_replaces_the_stream_once_the_new_track_has_audio() -> None:
    engine = ScriptedEngine(features=[*OURS, "play_now"])
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        await player.apply(PlayNow(track("x")))
        await settled(player)
        now = [b for b in engine.calls("next") if b.get("now")]
        assert urls(now) == ["x.mp3"] and len(engine.calls("play")) == 1
        assert player.view().status is PlayerStatus.LOADING
        replaced, new = engine.replace("g")
        router.dispatch(event(EventType.FINISHED, "g", replaced, reason="replaced"))
        router.dispatch(event(EventType.READY, "g", new))
        await settled(player)
        view = player.view()
        assert view.current is not None and view.current.title == "x"
        assert view.status is PlayerStatus.PLAYING and view.error == ""
        assert [t.title for t in view.upcoming] == ["b"]
        # The engine is told the track after x, and x's end plays b (a join).
        assert urls(engine.calls("next"))[-1] == "b.mp3"
        assert len(engine.calls("play")) == 1


async def test_a_play_now_that_fails_keeps_the_current_track_playing() -> None:
    engine = ScriptedEngine(features=[*OURS, "play_now"])
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a", "b"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        await player.apply(PlayNow(track("x")))
        await settled(player)
        failed = engine.replacement_failed("g")
        router.dispatch(Event(EventType.ERROR, "g",
                              "cannot resolve the host name radio.example",
                              {"play": failed, "reason": "resolve"}))
        await settled(player)
        view = player.view()
        assert view.current is not None and view.current.title == "a"
        assert view.status is PlayerStatus.PLAYING
        assert view.error == "could not play x: cannot resolve the host name radio.example"
        assert view.failure is not None and view.failure.track.title == "x"
        # Nothing was sent to take a back: no play, no seek; the engine never left it.
        assert len(engine.calls("play")) == 1 and engine.calls("seek") == []
        assert [t.title for t in view.upcoming] == ["b"]
        # Play 1's own end still advances the queue.
        router.dispatch(event(EventType.FINISHED, "g", 1, reason="end"))
        await settled(player)
        assert player.view().current is not None and player.view().current.title == "b"


async def test_play_now_is_a_plain_play_where_the_engine_cannot_keep_the_stream() -> None:
    # Without play_now, and before the current play streams, the play replaces at once.
    engine = ScriptedEngine(features=OURS)
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a"))
        await settled(player)
        router.dispatch(event(EventType.READY, "g", 1))
        await settled(player)
        await player.apply(PlayNow(track("x")))
        await settled(player)
        assert urls(engine.calls("play")) == ["a.mp3", "x.mp3"]
    engine = ScriptedEngine(features=[*OURS, "play_now"])
    async with shell(engine) as (registry, router):
        player = registry.get("g")
        await player.apply(add("a"))
        await settled(player)
        await player.apply(PlayNow(track("x")))  # a has not sent ready
        await settled(player)
        assert urls(engine.calls("play")) == ["a.mp3", "x.mp3"]
        assert not [b for b in engine.calls("next") if b.get("now")]
