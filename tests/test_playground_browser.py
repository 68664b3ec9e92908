"""The playground in real headless Chromium: two users, their tones, their controls."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .conftest import TONES
from .support.browser import ARTIFACTS, chromium, open_player, stats, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def gateway(engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(engine) as process:
        yield process


@pytest.mark.realtime
async def test_two_users_hear_only_their_own_tone(gateway: GatewayProcess,
                                                  media_server: MediaServer) -> None:
    async with chromium() as browser:
        alice_context = await browser.new_context()
        bob_context = await browser.new_context()
        alice = await open_player(alice_context, gateway.url)
        bob = await open_player(bob_context, gateway.url)
        alice_id = (await stats(alice))["userId"]
        bob_id = (await stats(bob))["userId"]
        assert alice_id and bob_id and alice_id != bob_id

        await alice.evaluate(f"window.playground.send({{type: 'play', url: "
                             f"{json.dumps(media_server.url('long_a.mp3'))}}})")
        await bob.evaluate(f"window.playground.send({{type: 'play', url: "
                           f"{json.dumps(media_server.url('long_b.mp3'))}}})")
        for page in (alice, bob):
            await wait_for(page, "s.framesDecoded > 150 && s.playedMs > 2000")
        alice_stats, bob_stats = await stats(alice), await stats(bob)
        assert abs(alice_stats["dominantHz"] - TONES["a"]) < 4, alice_stats
        assert abs(bob_stats["dominantHz"] - TONES["b"]) < 4, bob_stats
        assert alice_stats["title"] == "long_a" and alice_stats["status"] == "playing"

        # Bob stops: Alice keeps decoding, with no new underruns.
        before = await stats(alice)
        await bob.evaluate("window.playground.send({type: 'stop'})")
        await wait_for(bob, "s.status === 'idle'")
        await asyncio.sleep(2.0)
        after = await stats(alice)
        assert after["framesDecoded"] - before["framesDecoded"] > 80
        assert after["underruns"] == before["underruns"]
        assert after["playedMs"] - before["playedMs"] > 1500
        assert abs(after["dominantHz"] - TONES["a"]) < 4

        # A second tab of Alice shows Alice's state (and gets her audio).
        second = await open_player(alice_context, gateway.url)
        await wait_for(second, "s.title === 'long_a' && s.framesDecoded > 50")
        assert (await stats(second))["userId"] == alice_id

        # A queue, a skip, volume: controls work and show.
        await alice.evaluate(f"window.playground.send({{type: 'add', url: "
                             f"{json.dumps(media_server.url('c.mp3'))}}})")
        await wait_for(alice, "s.queue.length === 1 && s.queue[0] === 'c'")
        await wait_for(second, "s.queue.length === 1")
        await alice.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
        await alice.evaluate("window.playground.send({type: 'skip'})")
        await wait_for(alice, "s.title === 'c' && s.status === 'playing'")
        await alice.evaluate("window.playground.send({type: 'stop'})")
        for page in (alice, bob, second):
            assert not [e for e in page.console_errors if "favicon" not in e]  # type: ignore[attr-defined]


async def test_invalid_messages_get_an_error_and_change_nothing(
    gateway: GatewayProcess,
) -> None:
    async with chromium() as browser:
        page = await open_player(await browser.new_context(), gateway.url)
        for raw, words in [
            ("not json", "not valid JSON"),
            ('{"type": "bogus"}', "unknown message type 'bogus'"),
            ('{"type": "seek"}', "seek needs 'seconds'"),
            ('{"type": "volume", "volume": 9}', "volume"),
            ('{"type": "remove", "position": 3}', "the queue is empty"),
            ('{"type": "play", "url": "ftp://x/y.mp3"}', "only http(s) links"),
            ('{"type": "skip"}', "nothing is playing"),
            ('{"type": "play", "url": "x", "extra": 1}', "does not take 'extra'"),
        ]:
            count = len(await page.evaluate("window.playground.messages()"))
            await page.evaluate(f"window.playground.sendRaw({json.dumps(raw)})")
            await page.wait_for_function(
                f"window.playground.messages().length > {count}", timeout=10_000)
            errors = [m for m in await page.evaluate("window.playground.messages()")
                      if m["type"] == "error"]
            assert errors and words in errors[-1]["message"], (raw, errors[-1:])
        assert (await stats(page))["status"] == "idle"
        assert await page.is_visible("#url-error")


async def test_a_forged_or_tampered_cookie_is_refused(gateway: GatewayProcess) -> None:
    async with chromium() as browser:
        honest = await browser.new_context()
        page = await honest.new_page()
        await page.goto(gateway.url)
        await wait_for(page, "s.connected")
        cookie = next(c for c in await honest.cookies() if c["name"] == "ag_user")
        payload, signature = cookie["value"].rsplit(".", 1)
        other_user = base64.urlsafe_b64encode(b'"u-0000000000000000"').rstrip(b"=").decode()
        for forged in (
            "u-0000000000000000",                      # an id without a signature
            f"{payload}.{signature[:-2]}xx",           # a tampered signature
            f"{other_user}.{signature}",               # another id under this signature
        ):
            context = await browser.new_context()
            await context.add_cookies([{**cookie, "value": forged}])
            intruder = await context.new_page()
            # A same-origin page that sets no cookie, then a socket from it: the
            # browser presents the forged cookie, and the gateway refuses it.
            await intruder.goto(gateway.url + "/static/style.css")
            outcome = await intruder.evaluate("""() => new Promise((resolve) => {
                const messages = [];
                const socket = new WebSocket(`ws://${location.host}/ws`);
                socket.onmessage = (e) => messages.push(JSON.parse(e.data));
                socket.onclose = (e) => resolve({code: e.code, messages});
            })""")
            assert outcome["code"] == 4401, outcome
            assert [m["type"] for m in outcome["messages"]] == ["error"]
            assert "identity cookie is missing or invalid" in outcome["messages"][0]["message"]
            await context.close()
