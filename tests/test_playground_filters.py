"""The playground's ``filters`` and ``crossfade`` messages: checked with clear errors,
applied through the user's player to the real engine, and the page's filters panel in
Chromium (labelled, keyboard-driven)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page
from websockets.sync.client import ClientConnection, connect

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess
from playground_ws.messages import Crossfade, Filters, parse_client_message
from protocol.filter_presets import EQUALIZER_BANDS, Preset

from .support.browser import chromium

pytestmark = pytest.mark.timeout(180)


# -- the messages, checked ----------------------------------------------------------------


def test_filter_messages_are_checked_in_words() -> None:
    preset = parse_client_message('{"type": "filters", "preset": "8d"}')
    assert isinstance(preset, Filters) and preset.preset is Preset.EIGHT_D
    custom = parse_client_message(json.dumps({"type": "filters", "filters": {
        "equalizer": [{"band": 0, "gain": 0.3}, {"band": 14, "gain": -0.25}],
        "timescale": {"speed": 1.1, "pitch": 0.9}, "lowPass": {"smoothing": 20}}}))
    assert isinstance(custom, Filters) and custom.filters is not None
    assert custom.filters.lavalink() == {
        "equalizer": [{"band": 0, "gain": 0.3}, {"band": 14, "gain": -0.25}],
        "timescale": {"speed": 1.1, "pitch": 0.9, "rate": 1.0},
        "lowPass": {"smoothing": 20.0}}
    fade = parse_client_message('{"type": "crossfade", "seconds": 5}')
    assert isinstance(fade, Crossfade) and fade.seconds == 5
    for raw, words in [
        ('{"type": "filters"}', "give either a preset or a filters object"),
        ('{"type": "filters", "preset": "reset", "filters": {}}', "either a preset or"),
        ('{"type": "filters", "preset": "loud"}', "'bassboost', 'nightcore'"),
        ('{"type": "filters", "filters": {"equalizer": [{"band": 15, "gain": 0}]}}',
         "band: Input should be less than or equal to 14"),
        ('{"type": "filters", "filters": {"equalizer": [{"band": 2, "gain": 1.5}]}}',
         "gain: Input should be less than or equal to 1"),
        ('{"type": "filters", "filters": {"timescale": {"speed": 0}}}',
         "speed: Input should be greater than or equal to 0.25"),
        ('{"type": "filters", "filters": {"echo": {}}}', "does not take 'filters.echo'"),
        ('{"type": "crossfade", "seconds": 12.5}', "less than or equal to 12"),
        ('{"type": "crossfade"}', "crossfade needs 'seconds'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_client_message(raw)


# -- through the gateway to the engine ------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(engine) as process:
        yield process


def replies(ws: ClientConnection, until: Any, seconds: float = 15.0) -> dict[str, Any]:
    """The first text message for which ``until(message)`` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        raw = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(raw, bytes):
            continue
        message: dict[str, Any] = json.loads(raw)
        if until(message):
            return message
    pytest.fail("no such message")


def test_websocket_filters_and_crossfade_reach_the_engine(
        gateway: GatewayProcess, engine: EngineProcess, media_server: MediaServer) -> None:
    with httpx.Client(base_url=gateway.url) as web:
        cookie = web.get("/").cookies["ag_user"]
    url = gateway.url.replace("http", "ws") + "/ws"
    with connect(url, additional_headers={"Cookie": f"ag_user={cookie}"},
                 open_timeout=10) as ws, httpx.Client(base_url=engine.url) as api:
        hello = replies(ws, lambda m: m["type"] == "hello")
        user = hello["user_id"]
        ws.send(json.dumps({"type": "play", "url": media_server.url("long_a.mp3")}))
        replies(ws, lambda m: m["type"] == "state" and m["state"]["status"] == "playing")

        ws.send('{"type": "filters", "preset": "bassboost"}')
        state = replies(ws, lambda m: m["type"] == "state" and m["state"]["filter"])["state"]
        assert state["filter"] == "bassboost" and state["filters"]["equalizer"][0]["band"] == 0

        def active() -> list[str]:
            answer = api.get(f"/session/{user}/filters")
            assert answer.status_code == 200, answer.text
            return list(answer.json()["active"])

        def eventually(check: Any) -> None:
            deadline = time.monotonic() + 10
            while not check():
                assert time.monotonic() < deadline, active()
                time.sleep(0.05)

        eventually(lambda: "equalizer" in active())
        custom = {"equalizer": [{"band": 5, "gain": 0.5}],
                  "timescale": {"speed": 1.2, "pitch": 1.0, "rate": 1.0}}
        ws.send(json.dumps({"type": "filters", "filters": custom}))
        state = replies(ws, lambda m: m["type"] == "state"
                        and m["state"]["filter"] == "custom")["state"]
        assert state["filters"] == custom
        eventually(lambda: {"equalizer", "timescale"} <= set(active()))

        ws.send('{"type": "filters", "filters": {"equalizer": [{"band": 99, "gain": 0}]}}')
        error = replies(ws, lambda m: m["type"] == "error")
        assert "band" in error["message"] and "14" in error["message"]

        ws.send('{"type": "crossfade", "seconds": 3}')
        state = replies(ws, lambda m: m["type"] == "state"
                        and m["state"]["crossfade"] == 3)["state"]
        eventually(lambda: api.get(f"/sessions/{user}").json()["crossfade"] == 3)
        ws.send('{"type": "crossfade", "seconds": 40}')
        error = replies(ws, lambda m: m["type"] == "error")
        assert "crossfade" in error["message"] and "12" in error["message"]

        ws.send('{"type": "filters", "preset": "reset"}')
        replies(ws, lambda m: m["type"] == "state" and m["state"]["filter"] == "")
        eventually(lambda: not {"equalizer", "timescale"} & set(active()))
        ws.send('{"type": "stop"}')
        replies(ws, lambda m: m["type"] == "state" and m["state"]["status"] == "idle")


# -- the panel in Chromium -------------------------------------------------------------------


async def filter_state(page: Page) -> dict[str, Any]:
    states = [m for m in await page.evaluate("window.playground.messages()")
              if m["type"] in ("state", "hello")]
    return states[-1]["state"] if states else {}


async def test_the_filters_panel_is_labelled_and_works_from_the_keyboard(
        gateway: GatewayProcess) -> None:
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(gateway.url)
        await page.wait_for_function("window.playground && window.playground.stats().connected",
                                     timeout=20_000)
        # Every control has a name: 15 bands at Lavalink's frequencies, speed, pitch.
        for frequency in EQUALIZER_BANDS:
            name = f"{frequency / 1000:g} kHz" if frequency >= 1000 else f"{frequency} Hz"
            band = page.get_by_label(f"equalizer band {name}")
            assert await band.get_attribute("min") == "-0.25"
            assert await band.get_attribute("max") == "1"
        for label in ("speed", "pitch", "crossfade"):
            assert await page.get_by_label(label, exact=True).count() == 1
        assert await page.get_by_role("group", name="filter presets").count() == 1

        # A preset from the keyboard: Tab to it, press Enter.
        nightcore = page.get_by_role("button", name="Nightcore")
        await nightcore.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_function(
            "document.querySelector('[data-preset=nightcore]')"
            ".getAttribute('aria-pressed') === 'true'", timeout=10_000)
        assert await page.input_value("#fx-speed") == "1.25"
        assert (await filter_state(page))["filter"] == "nightcore"

        # An equalizer band from the keyboard: arrow keys move it and send it.
        band = page.get_by_label("equalizer band 100 Hz")
        await band.focus()
        for _ in range(4):
            await page.keyboard.press("ArrowRight")
        await page.wait_for_function(
            "document.getElementById('fx-current').textContent === 'filter: custom'",
            timeout=10_000)
        state = await filter_state(page)
        assert {"band": 3, "gain": 0.2} in state["filters"]["equalizer"]
        assert state["filters"]["timescale"]["speed"] == 1.25  # the preset's speed stays
        assert await band.get_attribute("aria-valuetext") == "+0.20"

        # Reset clears everything.
        await page.get_by_role("button", name="reset: no filters").click()
        await page.wait_for_function(
            "document.getElementById('fx-current').textContent === 'no filter'",
            timeout=10_000)
        assert await page.input_value("#fx-band-3") == "0"
        assert await page.input_value("#fx-speed") == "1"
        assert not [e for e in errors if "favicon" not in e]
