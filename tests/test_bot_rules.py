"""The bot's pure rules: who may do what, the now-playing card, the search cache."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.access import Caller, Room, refusal
from bot.nowplaying import Timeline, render
from bot.search import Search, SearchCache, SearchFailed, SearchHit
from gateway.engine_client import EngineError
from gateway.player import (
    EngineEvent,
    Enqueue,
    LoopMode,
    Pause,
    PlayerCore,
    PlayerStatus,
    PlayNow,
    Resume,
    SetCrossfade,
    SetFilters,
    SetLoop,
    SetVolume,
    Skip,
    Track,
)
from protocol import EventType
from protocol.filters import parse_filters


def track(name: str, duration: float | None = 100.0) -> Track:
    return Track(url=f"http://media/{name}.mp3", title=name, duration=duration,
                 requested_by="alice")


def started(core: PlayerCore, play_id: int, now: float = 0.0) -> None:
    core.sending(core.nonce)
    core.bind_play(core.nonce, play_id, now)
    core.on_event(EngineEvent(EventType.READY, play_id), now)


# -- access ----------------------------------------------------------------------------


def test_joining_needs_the_caller_in_a_voice_channel() -> None:
    nowhere = Caller(None, privileged=True)
    assert "Join a voice channel first" in (refusal(
        nowhere, Room(None, 0, False), joins=True, controls=False) or "")
    # A privileged caller may act from anywhere once the bot is somewhere.
    assert refusal(nowhere, Room(5, 3, True), joins=True, controls=True) is None


def test_listeners_must_be_in_the_bots_channel() -> None:
    room = Room(bot_channel_id=5, others_listening=0, dj_role_set=False)
    assert refusal(Caller(5, False), room, joins=False, controls=True) is None
    assert "my voice channel" in (refusal(Caller(6, False), room, joins=False,
                                          controls=False) or "")
    assert "Join my voice channel" in (refusal(Caller(None, False), room, joins=False,
                                               controls=False) or "")


def test_the_dj_role_guards_changes_while_others_listen() -> None:
    busy = Room(bot_channel_id=5, others_listening=2, dj_role_set=True)
    alone = Room(bot_channel_id=5, others_listening=0, dj_role_set=True)
    no_role = Room(bot_channel_id=5, others_listening=2, dj_role_set=False)
    member = Caller(5, privileged=False)
    assert "DJ role" in (refusal(member, busy, joins=False, controls=True) or "")
    assert refusal(member, busy, joins=True, controls=False) is None  # adding to the queue
    assert refusal(member, alone, joins=False, controls=True) is None
    assert refusal(member, no_role, joins=False, controls=True) is None
    assert refusal(Caller(5, privileged=True), busy, joins=False, controls=True) is None


# -- the now-playing card -----------------------------------------------------------------


def test_the_card_follows_start_failure_and_end() -> None:
    core = PlayerCore("g")
    timeline = Timeline(core.view(0.0))
    core.apply(Enqueue(track("a")), 0.0)
    core.apply(Enqueue(Track("http://media/x.mp3", title="broken")), 0.0)
    core.apply(Enqueue(track("c", duration=60.0)), 0.0)
    timeline.observe(core.view(0.0))
    started(core, 1)
    timeline.observe(core.view(0.0))
    card = render(core.view(30.0), timeline)
    text = card.embed.description or ""
    assert card.embed.title == "Now playing" and card.controls and not card.paused
    assert "**a**" in text and "0:30 / 1:40" in text and "requested by alice" in text
    assert card.embed.fields[0].value == "broken (+1 more)"

    core.on_event(EngineEvent(EventType.FINISHED, 1), 100.0)
    timeline.observe(core.view(100.0))
    core.sending(core.nonce)
    core.bind_play(core.nonce, 2, 100.0)
    core.on_event(EngineEvent(EventType.ERROR, 2, "the media server refused the request "
                              "(server returned 404 not found) for http://10.0.0.5:8180/x"),
                  100.5)
    timeline.observe(core.view(100.5))
    started(core, 3, 101.0)
    timeline.observe(core.view(101.0))
    card = render(core.view(101.0), timeline)
    text = card.embed.description or ""
    assert "**c**" in text
    assert "Couldn't play **broken**: nothing was found at that link." in text
    assert "10.0.0.5" not in text and "8180" not in text

    core.apply(Pause(), 110.0)
    timeline.observe(core.view(110.0))
    card = render(core.view(120.0), timeline)
    assert card.embed.title == "Paused" and card.paused

    core.apply(Resume(), 120.0)
    core.on_event(EngineEvent(EventType.FINISHED, 3), 200.0)
    timeline.observe(core.view(200.0))
    card = render(core.view(200.0), timeline)
    assert card.embed.title == "The queue has ended." and not card.controls
    assert "Couldn't play **broken**" in (card.embed.description or "")


def test_a_failure_notice_goes_after_the_next_track() -> None:
    core = PlayerCore("g")
    timeline = Timeline(core.view(0.0))
    for name in ("bad", "b", "c"):
        core.apply(Enqueue(track(name)), 0.0)
    timeline.observe(core.view(0.0))
    core.sending(core.nonce)
    core.play_failed(core.nonce, "invalid request: unsupported URL scheme 'ftp'", 0.0)
    timeline.observe(core.view(0.0))
    assert timeline.notices == [
        "Couldn't play **bad**: that kind of link is not supported: use an http(s) link."]
    started(core, 1)
    core.apply(Skip(), 5.0)
    timeline.observe(core.view(5.0))
    assert timeline.notices == []


def test_a_failed_play_now_says_what_plays_on() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    timeline = Timeline(core.view(1.0))
    core.apply(PlayNow(track("offline")), 5.0)
    core.sending(core.nonce)
    core.bind_play(core.nonce, 2, 5.0)
    core.on_event(EngineEvent(EventType.ERROR, 2,
                              "extraction failed: [youtube] x: Video unavailable"), 6.0)
    timeline.observe(core.view(6.0))
    assert timeline.notices == [
        "Couldn't play **offline**: that video is unavailable (removed, private or blocked). "
        "**a** plays on."]


def test_the_footer_shows_loop_and_volume_and_a_headline_ends_the_controls() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    started(core, 1)
    core.apply(SetLoop(LoopMode.QUEUE), 0.0)
    core.apply(SetVolume(0.5), 0.0)
    timeline = Timeline(core.view(0.0))
    card = render(core.view(1.0), timeline)
    assert card.embed.footer.text == "loop: queue · volume: 50 %"
    final = render(core.view(2.0), timeline, headline="Stopped by bob.")
    assert final.embed.title == "Stopped by bob." and not final.controls
    assert card.key() != final.key()
    assert render(core.view(1.0), timeline).key() == card.key()
    core.apply(SetFilters(parse_filters({"rotation": {"rotationHz": 0.2}}), "8d"), 0.0)
    core.apply(SetCrossfade(2.5), 0.0)
    footer = render(core.view(1.0), timeline).embed.footer.text
    assert footer == "loop: queue · volume: 50 % · filter: 8d · crossfade: 2.5 s"


def test_an_engine_outage_shows_on_the_card() -> None:
    core = PlayerCore("g")
    core.apply(Enqueue(track("a")), 0.0)
    core.error = "the audio engine at http://127.0.0.1:8180 is unreachable (refused)"
    card = render(core.view(0.0), Timeline(core.view(0.0)))
    assert core.status is PlayerStatus.LOADING
    text = card.embed.description or ""
    assert "The audio engine is not answering right now" in text and "8180" not in text


# -- search ----------------------------------------------------------------------------------


def hit(name: str) -> SearchHit:
    return SearchHit(f"https://example.invalid/{name}", name)


def test_the_cache_is_lru_bounded_and_expires() -> None:
    cache = SearchCache(max_entries=2, ttl=10.0, failure_ttl=1.0)
    cache.put("One", [hit("1")], 0.0)
    cache.put("two", [hit("2")], 0.0)
    assert cache.get("  one ", 1.0) == (hit("1"),)  # one is now the most recent
    cache.put("three", [hit("3")], 1.0)
    assert cache.get("two", 1.0) is None and len(cache) == 2
    assert cache.get("one", 10.5) is None  # expired
    cache.put("down", [], 2.0)
    assert cache.get("down", 2.5) == ()
    assert cache.get("down", 3.5) is None


async def test_suggestions_are_cut_off_and_turned_away_when_busy() -> None:
    gate = asyncio.Event()
    running: list[str] = []

    async def slow(query: str) -> Sequence[SearchHit]:
        running.append(query)
        await gate.wait()
        return [hit(query)]

    search = Search(slow, suggest_timeout=0.2, max_concurrent=1)
    first = asyncio.create_task(search.suggestions("first query"))
    await asyncio.sleep(0)
    assert await search.suggestions("second query") == ()  # every slot busy
    assert search.turned_away == 1
    assert await first == ()
    assert search.timeouts == 1 and running == ["first query"]
    gate.set()
    assert await search.suggestions("third query") == (hit("third query"),)


async def test_play_searches_report_failures_in_words() -> None:
    async def broken(query: str) -> Sequence[SearchHit]:
        raise EngineError("extraction failed: HTTP Error 429: Too Many Requests from "
                          "http://10.1.2.3/", 500)

    async def empty(query: str) -> Sequence[SearchHit]:
        return []

    with pytest.raises(SearchFailed, match=r"^searching is not working right now$"):
        await Search(broken).first("x y z")
    with pytest.raises(SearchFailed, match=r"^the search found nothing$"):
        await Search(empty).first("x y z")
