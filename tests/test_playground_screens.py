"""The playground page in five states (idle, playing, a queue of three, filters, an
error) at 1280 and 390 px, photographed into test-artifacts/playground/ (gitignored)
for people to look at; in each, the player bar sits at the bottom of the window with
its controls, nothing scrolls sideways and the console stays clean."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.async_api import Page

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .support.browser import ARTIFACTS, chromium, open_player, wait_for
from .support.playground import (
    bar_placement,
    command,
    new_screen,
    sideways_overflow,
    tagged_tone,
)

pytestmark = pytest.mark.timeout(240)

SHOTS = ARTIFACTS / "playground"
TRACKS = {"first.ogg": ("First Light", 550.0), "second.ogg": ("Second Wind", 660.0),
          "third.ogg": ("Third Stone", 880.0), "fourth.ogg": ("Fourth Wall", 440.0)}


@pytest.fixture(scope="module")
def screen_media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    root = tmp_path_factory.mktemp("screen-media")
    for name, (title, frequency) in TRACKS.items():
        tagged_tone(root / name, title, frequency, 20.0)
    with MediaServer(root) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(engine) as process:
        yield process


async def photograph(page: Page, name: str) -> None:
    """Check the page as it is now, then save it as *name*."""
    placement = await bar_placement(page)
    assert abs(placement["bottom"] - placement["height"]) < 1, (name, placement)
    for control, box in placement["controls"].items():
        assert box is not None and box["top"] >= placement["top"] - 1, (name, control, box)
        assert box["bottom"] <= placement["height"] + 1, (name, control, box)
    assert await sideways_overflow(page) == 0, name
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.mark.parametrize("width", [1280, 390])
async def test_five_states_of_the_page(gateway: GatewayProcess, screen_media: MediaServer,
                                       width: int) -> None:
    async with chromium() as browser:
        page = await open_player(await new_screen(browser, width), gateway.url)
        await wait_for(page, "s.pill === 'connected'")
        await photograph(page, f"idle-{width}")

        await command(page, {"type": "play", "url": screen_media.url("first.ogg")})
        await wait_for(page, "s.status === 'playing' && s.playedMs > 1500")
        await photograph(page, f"playing-{width}")

        for name in ("second.ogg", "third.ogg", "fourth.ogg"):
            await command(page, {"type": "add", "url": screen_media.url(name)})
        await wait_for(page, "s.queue.length === 3")
        await page.locator("#queue-heading").scroll_into_view_if_needed()
        await page.evaluate("document.getElementById('queue-heading')"
                            ".closest('section').scrollIntoView({block: 'start'})")
        await photograph(page, f"queue-{width}")

        await page.get_by_role("button", name="Nightcore").click()
        band = page.get_by_label("equalizer band 100 Hz")
        await band.focus()
        for _ in range(4):
            await page.keyboard.press("ArrowRight")
        await page.wait_for_function(
            "document.getElementById('fx-current').textContent === 'filter: custom'")
        await page.evaluate("document.getElementById('filters-panel')"
                            ".scrollIntoView({block: 'start'})")
        await photograph(page, f"filters-{width}")

        await page.evaluate("window.scrollTo(0, 0)")
        unreachable = "http://127.0.0.1:9/no-server-here.ogg"
        await page.fill("#url", unreachable)
        await page.click("#play")
        await page.locator("#url-error").wait_for()
        words = await page.locator("#url-error .error-text").inner_text()
        assert words.startswith("could not play no-server-here: "), words
        await wait_for(page, f"s.title === {json.dumps('First Light')} "
                             "&& s.status === 'playing'")
        await page.evaluate("window.scrollTo(0, 0)")
        await photograph(page, f"error-{width}")
        await command(page, {"type": "stop"})
        assert not page.console_errors  # type: ignore[attr-defined]
