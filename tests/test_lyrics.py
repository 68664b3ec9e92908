"""Lyrics from LRCLIB: LRC parsing, what is asked for a track, the bounded cache, and the
client against a stand-in on 127.0.0.1 (found, synced or not, none, unreachable, slow,
too long, shared lookups)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from pydantic import ValidationError

from gateway.lyrics import (
    FAILURE_TTL,
    LrclibClient,
    LyricLine,
    Lyrics,
    LyricsCache,
    LyricsQuery,
    LyricsService,
    LyricsUnavailable,
    parse_lrc,
    query_for,
)
from gateway.player import Track
from gateway.settings import GatewaySettings

from .support.lrclib import LrclibStandIn, record

pytestmark = pytest.mark.timeout(60)

SYNCED = "[00:01.00]First line\n[00:03.50]Second line\n[00:06.00]Third line\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- pure parts --------------------------------------------------------------------------


def test_lrc_lines_in_time_order_with_repeats_offsets_and_tags() -> None:
    text = ("[ar:Someone]\n[ti:Song]\n[offset:+500]\n[00:10.00][01:10.00]Chorus\n"
            "[00:02.5]Verse\nnot timed\n[00:05:25]Colon form\n[00:07.00]\n")
    assert parse_lrc(text) == (
        LyricLine(2.0, "Verse"), LyricLine(4.75, "Colon form"), LyricLine(6.5, ""),
        LyricLine(9.5, "Chorus"), LyricLine(69.5, "Chorus"))
    assert parse_lrc("") == () and parse_lrc("just words\nno times") == ()
    many = "".join(f"[00:{i % 60:02d}.00]{'x' * 500}\n" for i in range(5000))
    lines = parse_lrc(many)
    assert len(lines) == 1000 and all(len(line.text) == 300 for line in lines)


def test_the_line_sung_at_a_position() -> None:
    lyrics = Lyrics("Song", "Someone", "a\nb\nc", parse_lrc(SYNCED))
    assert lyrics.synced
    assert lyrics.line_at(0.5) is None
    assert lyrics.line_at(1.0) == 0 and lyrics.line_at(3.49) == 0
    assert lyrics.line_at(4.0) == 1 and lyrics.line_at(600) == 2
    assert lyrics.next_change(2.0) == pytest.approx(1.5)
    assert lyrics.next_change(6.0) is None
    assert lyrics.as_dict()["synced"][1] == {"at": 3.5, "text": "Second line"}


@pytest.mark.parametrize(("title", "artist", "song"), [
    ("Rick Astley - Never Gonna Give You Up (Official Music Video)", "Rick Astley",
     "Never Gonna Give You Up"),
    ("Daft Punk \u2013 Get Lucky [Official Audio] (feat. Pharrell)", "Daft Punk",
     "Get Lucky (feat. Pharrell)"),
    ("AURORA | Runaway (Lyrics) [4K]", "AURORA", "Runaway"),
    ("Bohemian Rhapsody (Remastered 2011)", "", "Bohemian Rhapsody"),
    ("well-known-song", "", "well-known-song"),
])
def test_what_is_asked_for_a_title(title: str, artist: str, song: str) -> None:
    query = query_for(title, 212.4)
    assert query == LyricsQuery(song, artist, 212.4)


def test_nothing_to_ask_and_unknown_durations() -> None:
    assert query_for("  [Official Video] ") is None
    assert query_for("Song", float("nan")) == LyricsQuery("Song")
    assert query_for("Song", 0) == LyricsQuery("Song")
    assert LyricsQuery("Song", "A", 100.2).key == LyricsQuery("song", "a", 99.8).key


def test_the_cache_is_bounded_and_forgets_by_kind() -> None:
    cache = LyricsCache(max_entries=2, found_ttl=100, none_ttl=10, failure_ttl=1)
    lyrics = Lyrics("s", "a", "words")
    cache.put("found", lyrics, 0)
    cache.put("none", None, 0)
    cache.put("failed", LyricsUnavailable("down"), 0)
    assert len(cache) == 2 and cache.get("found", 0) == (False, None)  # evicted, oldest
    known, answer = cache.get("failed", 0.5)
    assert known and isinstance(answer, LyricsUnavailable)
    assert cache.get("failed", 1.0) == (False, None)
    assert cache.get("none", 5) == (True, None)
    assert cache.get("none", 10) == (False, None)
    cache.put("found", lyrics, 0)
    assert cache.get("found", 99) == (True, lyrics)


def test_the_lyrics_address_setting_is_checked() -> None:
    assert GatewaySettings(lyrics_url="").lyrics_url == ""  # type: ignore[call-arg]
    for bad in ("ftp://lrclib.net", "lrclib.net", "https://lrclib.net/?q=1"):
        with pytest.raises(ValidationError, match="http"):
            GatewaySettings(lyrics_url=bad)  # type: ignore[call-arg]


# -- against the stand-in ----------------------------------------------------------------


def service(stand_in: LrclibStandIn, clock: Clock | None = None, *,
            timeout: float = 5.0, max_bytes: int = 512 * 1024) -> LyricsService:
    client = LrclibClient(stand_in.url, timeout=timeout, max_bytes=max_bytes)
    return LyricsService(client, clock=clock or Clock())


async def test_an_exact_match_with_synced_lines() -> None:
    async with LrclibStandIn([record("Song", "Someone", 200, synced=SYNCED,
                                     plain="First line\nSecond line\nThird line")]) as lrclib:
        lyrics = service(lrclib)
        try:
            found = await lyrics.for_track(Track("http://x", "Someone - Song (Official Video)",
                                                 201.0))
            assert found is not None and found.synced and found.track_name == "Song"
            assert found.lines[0] == LyricLine(1.0, "First line")
            assert lrclib.requests == [("/api/get", {"track_name": "Song",
                                                     "artist_name": "Someone",
                                                     "duration": "201"})]
            assert lrclib.agents[0].startswith("audiogate/")  # LRCLIB asks clients to say
            # Cached: the same track again costs nothing, and is known synchronously.
            again = await lyrics.for_track(Track("http://y", "someone - song", 200.6))
            assert again == found and len(lrclib.requests) == 1
            assert lyrics.cached(Track("http://y", "Someone - Song", 201.0)) == (True, found)
            assert lyrics.cache_hits == 1 and lyrics.lookups == 1
        finally:
            await lyrics.aclose()


async def test_a_title_alone_is_searched_and_the_closest_duration_wins() -> None:
    records = [record("Song", "Other", 300, plain="wrong one"),
               record("Song", "Someone", 181, synced=SYNCED),
               record("Song", "Plain Person", 180, plain="plain words")]
    async with LrclibStandIn(records) as lrclib:
        lyrics = service(lrclib)
        try:
            found = await lyrics.for_track(Track("http://x", "Song", 180.0))
            assert found is not None and found.artist_name == "Someone" and found.synced
            assert lrclib.paths() == ["/api/search"] and lrclib.requests[0][1] == {"q": "Song"}
            # A cut of another length keeps the words, not the times.
            longer = await lyrics.for_track(Track("http://x", "Someone - Song", 240.0))
            assert longer is not None and not longer.synced
            assert longer.plain == "First line\nSecond line\nThird line"
            assert lrclib.paths() == ["/api/search", "/api/get", "/api/search"]
        finally:
            await lyrics.aclose()


async def test_none_found_and_instrumentals() -> None:
    records = [record("Interlude", "Band", 60, instrumental=True),
               record("Empty", "Band", 60)]
    async with LrclibStandIn(records) as lrclib:
        lyrics = service(lrclib)
        try:
            assert await lyrics.for_track(Track("http://x", "Nobody - Nothing", 10.0)) is None
            assert await lyrics.for_track(Track("http://x", "Band - Empty", 60.0)) is None
            interlude = await lyrics.for_track(Track("http://x", "Band - Interlude", 60.0))
            assert interlude is not None and interlude.instrumental and interlude.plain == ""
            count = len(lrclib.requests)
            assert await lyrics.for_track(Track("http://x", "Nobody - Nothing", 10.0)) is None
            assert len(lrclib.requests) == count  # "none" is cached too
        finally:
            await lyrics.aclose()


async def test_failures_are_lyrics_unavailable_and_remembered_briefly() -> None:
    clock = Clock()
    async with LrclibStandIn([record("Song", "Someone", 200, synced=SYNCED)],
                             status=503) as lrclib:
        lyrics = service(lrclib, clock)
        track = Track("http://x", "Someone - Song", 200.0)
        try:
            with pytest.raises(LyricsUnavailable, match="HTTP 503"):
                await lyrics.for_track(track)
            lrclib.status = 200
            with pytest.raises(LyricsUnavailable):  # still remembered
                await lyrics.for_track(track)
            assert lyrics.cached(track) == (False, None)
            assert len(lrclib.requests) == 1 and lyrics.failures == 1
            clock.now += FAILURE_TTL
            assert await lyrics.for_track(track) is not None
            for body in (b"<html>not json</html>", b'{"a": 1}'):
                lrclib.body = body
                with pytest.raises(LyricsUnavailable, match="not"):
                    await lyrics.for_track(Track("http://x", f"Search {len(body)}", 1.0))
        finally:
            await lyrics.aclose()


async def test_slow_unreachable_and_oversized_answers_are_bounded() -> None:
    async with LrclibStandIn([record("Song", "Someone", 200, synced=SYNCED)],
                             delay=5.0) as lrclib:
        slow = service(lrclib, timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(LyricsUnavailable, match="timed out"):
                await slow.for_track(Track("http://x", "Someone - Song", 200.0))
            assert time.monotonic() - started < 2.0
        finally:
            await slow.aclose()
        lrclib.delay = 0.0
        lrclib.records = [record("Song", "Someone", 200, plain="x" * 5000)]
        small = service(lrclib, max_bytes=1000)
        try:
            with pytest.raises(LyricsUnavailable, match="longer than 1000 bytes"):
                await small.for_track(Track("http://x", "Someone - Song", 200.0))
        finally:
            await small.aclose()
    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    nowhere = LyricsService(LrclibClient(f"http://127.0.0.1:{port}", timeout=2.0))
    try:
        with pytest.raises(LyricsUnavailable):
            await nowhere.for_track(Track("http://x", "Someone - Song", 200.0))
    finally:
        await nowhere.aclose()


async def test_simultaneous_requests_share_one_lookup_that_outlives_a_caller() -> None:
    async with LrclibStandIn([record("Song", "Someone", 200, synced=SYNCED)],
                             delay=0.3) as lrclib:
        lyrics = service(lrclib)
        track = Track("http://x", "Someone - Song", 200.0)
        try:
            leaver = asyncio.create_task(lyrics.for_track(track))
            stayers = [asyncio.create_task(lyrics.for_track(track)) for _ in range(5)]
            await asyncio.sleep(0.1)
            leaver.cancel()
            answers = await asyncio.gather(*stayers)
            assert all(a is not None and a.synced for a in answers)
            assert len(lrclib.requests) == 1
            assert leaver.cancelled()
        finally:
            await lyrics.aclose()


async def test_lyrics_off_and_closing_with_a_lookup_under_way() -> None:
    off = LyricsService(None)
    assert not off.enabled
    assert await off.for_track(Track("http://x", "Someone - Song", 1.0)) is None
    assert off.cached(Track("http://x", "Someone - Song", 1.0)) == (True, None)
    await off.aclose()
    async with LrclibStandIn([record("Song", "Someone", 200, synced=SYNCED)],
                             delay=10.0) as lrclib:
        lyrics = service(lrclib)
        waiting = asyncio.create_task(lyrics.for_track(Track("http://x", "Someone - Song")))
        await asyncio.sleep(0.1)
        async with asyncio.timeout(2.0):
            await lyrics.aclose()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(LyricsUnavailable, match="stopping"):
            await lyrics.for_track(Track("http://x", "Someone - Other"))
