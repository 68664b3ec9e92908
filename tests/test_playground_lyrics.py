"""The playground's ``lyrics`` message against a real gateway process and engine, with
LRCLIB as a stand-in on 127.0.0.1: the gateway's lyrics reach a page in plain values,
and every other answer is words."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .support.lrclib import LrclibStandIn, record
from .test_playground_server import identity, is_error, play_outcome, tab, until

pytestmark = pytest.mark.timeout(120)

SOURCE = "127.0.0.9"
T = TypeVar("T")


def is_lyrics(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "lyrics"


async def ask(ws: Any) -> Any:
    """Send ``lyrics``; the answer, or the error it got."""
    await ws.send(json.dumps({"type": "lyrics"}))
    return await until(ws, lambda m: is_lyrics(m) or is_error(m))


async def paced(action: Callable[[], Awaitable[T]]) -> T:
    """*action*, again after a while when the playground's rate limit refused it
    (``lyrics`` counts among the costly actions, as ``play`` does)."""
    while True:
        outcome = await action()
        words = outcome if isinstance(outcome, str) else (
            outcome.get("message", "") if is_error(outcome) else "")
        if not words.startswith("slow down"):
            return outcome
        await asyncio.sleep(0.5)  # the real limiter refills with time only


async def test_a_page_asks_for_the_lyrics_of_its_track(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    synced = "[00:00.50]first line\n[00:02.00]second line\n"
    async with LrclibStandIn([record("long_a", "Tone Band", 40.0, synced=synced)]) as lrclib:
        with GatewayProcess(engine, {"GATEWAY_LYRICS_URL": lrclib.url}) as gateway:
            cookie = (await identity(gateway, SOURCE)).cookies["ag_user"]
            async with tab(gateway, cookie, SOURCE) as ws:
                idle = await ask(ws)
                assert (idle["found"], idle["lyrics"], idle["message"]) == (
                    False, None, "nothing is playing")

                assert await play_outcome(ws, media_server.url("long_a.mp3")) == "playing"
                answer = await ask(ws)
                assert answer["found"] and answer["track_id"]
                assert answer["lyrics"]["artist"] == "Tone Band"
                assert answer["lyrics"]["synced"] == [{"at": 0.5, "text": "first line"},
                                                      {"at": 2.0, "text": "second line"}]

                assert await paced(lambda: play_outcome(ws, media_server.url("c.mp3"))) == (
                    "playing")
                none = await paced(lambda: ask(ws))
                assert not none["found"]
                assert none["message"] == "no lyrics were found for this track"

                lrclib.status = 503
                assert await paced(lambda: play_outcome(ws, media_server.url("b.mp3"))) == (
                    "playing")
                down = await paced(lambda: ask(ws))
                assert down["message"] == "the lyrics service cannot be reached right now"
                await ws.send(json.dumps({"type": "lyrics", "track": 1}))
                wrong = await until(ws, lambda m: isinstance(m, dict) and m["type"] == "error")
                assert wrong["message"] == "lyrics does not take 'track'"
                await ws.send(json.dumps({"type": "stop"}))
            assert [path for path, _ in lrclib.requests] == [
                "/api/search", "/api/search", "/api/search"]


def test_asking_for_lyrics_is_a_costly_action() -> None:
    from playground_ws.messages import LyricsRequest, parse_client_message
    from playground_ws.ratelimit import RateLimiter

    assert isinstance(parse_client_message('{"type": "lyrics"}'), LyricsRequest)
    limits = RateLimiter()
    assert all(limits.allow("u", "lyrics", 0.0) is None for _ in range(5))
    assert limits.allow("u", "lyrics", 0.0) == ("slow down: at most 1 lyrics per second "
                                                "(bursts of 5)")
    assert limits.allow("u", "lyrics", 1.0) is None
