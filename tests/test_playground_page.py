"""The playground page as people use it, in real headless Chromium: one sound per
user, keyboard seeking and shortcuts, titles and thumbnails, reordering, history,
errors, a narrow phone screen and an insecure address.

Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, Page

from loadtest.media import encode_blocks, write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .conftest import TONES
from .support.browser import ARTIFACTS, chromium, open_player, stats, wait_for

# One event loop for the module, so that one browser serves its tests.
pytestmark = [pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]

TAGGED = {"first.ogg": ("First Light", 550.0), "second.ogg": ("Second Wind", 660.0),
          "third.ogg": ("Third Stone", 880.0)}
COVER_PAGE_TITLE = "A Tone With A Cover"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _tagged_tone(path: Path, title: str, frequency: float, seconds: float) -> None:
    index = np.arange(int(48_000 * seconds))
    wave = (0.5 * np.sin(2 * np.pi * frequency * index / 48_000)).astype(np.float32)
    blocks = (np.tile(wave[i:i + 4800], (2, 1)) for i in range(0, wave.size, 4800))
    encode_blocks(path, blocks, rate=48_000, layout="stereo", container_format="ogg",
                  codec="libopus", title=title)


@pytest.fixture(scope="module")
def page_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page-media")
    for name, (title, frequency) in TAGGED.items():
        _tagged_tone(root / name, title, frequency, 30.0)
    # 440 Hz for 10 s, then 880 Hz for 30 s: where a seek lands is audible.
    write_tone(root / "steps.mp3", 440.0, 10.0, then=(880.0, 30.0))
    (root / "cover.png").write_bytes(_png(32, 32, (200, 60, 90)))
    return root


@pytest.fixture(scope="module")
def page_server(page_media: Path) -> Iterator[MediaServer]:
    with MediaServer(page_media) as server:
        # A web page yt-dlp's generic extractor reads: its audio and its picture.
        (page_media / "cover.html").write_text(
            "<!doctype html><html><head><title>cover</title>"
            f'<meta property="og:title" content="{COVER_PAGE_TITLE}">'
            f'<meta property="og:image" content="{server.url("cover.png", type="image/png")}">'
            '</head><body><audio src="/first.ogg"></audio></body></html>')
        yield server



@pytest.fixture(scope="module")
def gateway(engine: EngineProcess) -> Iterator[GatewayProcess]:
    # yt-dlp reads a web page's title in a fresh worker process: seconds on a busy
    # machine, so the catalogue gets longer than the default here.
    env = {"GATEWAY_PLAYGROUND_METADATA_TIMEOUT": "30"}
    with GatewayProcess(engine, env) as process:
        yield process


async def send(page: Page, message: dict[str, Any]) -> None:
    await page.evaluate(f"window.playground.send({json.dumps(message)})")


def hears(tone: float) -> str:
    """A stats condition: this tab plays *tone* (and has for a moment)."""
    return f"s.playedMs > 500 && Math.abs(s.dominantHz - {tone}) < 4"


async def test_two_tabs_of_one_user_make_one_sound(gateway: GatewayProcess,
                                                   media_server: MediaServer,
                                                   browser: Browser) -> None:
    context = await browser.new_context()
    first = await open_player(context, gateway.url)
    await send(first, {"type": "play", "url": media_server.url("long_a.mp3")})
    await wait_for(first, hears(TONES["a"]))

    # A second tab, opened and clicked last: the sound moves there.
    second = await open_player(context, gateway.url)
    await wait_for(second, f"s.audioHere && {hears(TONES['a'])}")
    await wait_for(first, "!s.audioHere && s.dominantHz === 0")
    received = (await stats(first))["framesReceived"]
    await asyncio.sleep(1.0)
    assert (await stats(first))["framesReceived"] == received  # no audio sent there
    assert await first.is_visible("#output")
    assert "another tab" in await first.inner_text("#output")
    await first.screenshot(path=str(ARTIFACTS / "playground-other-tab.png"))
    assert not await second.is_visible("#output")

    # The silent tab shows the same state, and its controls work.
    assert (await stats(first))["title"] == "long_a"
    await first.click("#pause")
    for page in (first, second):
        await wait_for(page, "s.status === 'paused'")
    await first.click("#pause")
    await wait_for(second, f"s.status === 'playing' && {hears(TONES['a'])}")
    assert not (await stats(first))["audioHere"]

    # The person asks for the sound in the first tab: it follows.
    await first.get_by_role("button", name="Play the sound here").click()
    await wait_for(first, f"s.audioHere && {hears(TONES['a'])}")
    await wait_for(second, "!s.audioHere && s.dominantHz === 0")

    # The browser focuses the second tab (switching to it): the sound follows.
    await second.evaluate("window.dispatchEvent(new FocusEvent('focus'))")
    await wait_for(second, f"s.audioHere && {hears(TONES['a'])}")
    await wait_for(first, "!s.audioHere && s.dominantHz === 0")

    # The sounding tab closes: the other one takes over.
    await second.close()
    await wait_for(first, f"s.audioHere && s.tabs === 1 && {hears(TONES['a'])}")
    await send(first, {"type": "stop"})
    assert not [e for e in first.console_errors]  # type: ignore[attr-defined]


async def test_keyboard_seeking_and_shortcuts(gateway: GatewayProcess,
                                              page_server: MediaServer,
                                              browser: Browser) -> None:
    page = await open_player(await browser.new_context(), gateway.url)
    await send(page, {"type": "play", "url": page_server.url("steps.mp3")})
    await wait_for(page, f"s.status === 'playing' && {hears(440.0)}")
    slider = page.get_by_role("slider", name="position in the track")
    assert await slider.get_attribute("aria-valuemin") == "0"
    assert await slider.get_attribute("aria-valuemax") == "40"
    assert await slider.get_attribute("aria-disabled") == "false"

    # Tab to the slider, Home, then three steps of 5 s: 15 s, in the 880 Hz part.
    await slider.focus()
    await page.keyboard.press("Home")
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
    assert await slider.get_attribute("aria-valuenow") == "15"
    assert await slider.get_attribute("aria-valuetext") == "15 seconds of 40 seconds"
    await wait_for(page, f"s.position >= 14.5 && s.position < 20 && {hears(880.0)}")

    # Anywhere on the page (not in a field): left arrow and J go back, 5 + 15 s.
    await page.click("h1")
    await page.keyboard.press("ArrowLeft")
    await page.keyboard.press("j")
    await wait_for(page, f"s.position < 10 && {hears(440.0)}")

    # Space pauses and resumes, but not while typing in a field.
    await page.keyboard.press("Space")
    await wait_for(page, "s.status === 'paused'")
    await page.focus("#url")
    await page.keyboard.press("End")
    await page.keyboard.press("Space")
    await page.keyboard.press("k")
    await asyncio.sleep(0.5)
    assert (await stats(page))["status"] == "paused"
    assert (await page.input_value("#url")).endswith(" k")
    await page.click("h1")
    await page.keyboard.press("k")
    await wait_for(page, "s.status === 'playing'")

    # M mutes and unmutes.
    await page.keyboard.press("m")
    await wait_for(page, "s.volume === 0")
    await page.keyboard.press("m")
    await wait_for(page, "s.volume === 1")
    await send(page, {"type": "stop"})


async def test_titles_thumbnails_reordering_and_history(gateway: GatewayProcess,
                                                        page_server: MediaServer,
                                                        browser: Browser) -> None:
    page = await open_player(await browser.new_context(), gateway.url)
    await send(page, {"type": "play", "url": page_server.url("steps.mp3")})
    await wait_for(page, "s.status === 'playing'")
    for name in TAGGED:
        await send(page, {"type": "add", "url": page_server.url(name)})
    titles = [title for title, _ in TAGGED.values()]
    await wait_for(page, f"s.queue.join('|') === {json.dumps('|'.join(titles))}")

    # Buttons say which track they act on.
    for title in titles:
        for verb in ("play", "remove"):
            assert await page.get_by_role("button", name=f"{verb} {title}",
                                          exact=True).count() == 1

    # Keyboard users reorder with buttons; focus stays on the moved track's button.
    await page.get_by_role("button", name="move Third Stone up").click()
    await wait_for(page, "s.queue.join() === 'First Light,Third Stone,Second Wind'")
    focused = await page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == "move Third Stone up"
    await page.keyboard.press("Enter")
    await wait_for(page, "s.queue.join() === 'Third Stone,First Light,Second Wind'")

    # Drag and drop: the dragged track takes the place of the one it is dropped on.
    items = page.locator("#queue li")
    await items.nth(0).drag_to(items.nth(2))
    await wait_for(page, "s.queue.join() === 'First Light,Second Wind,Third Stone'")

    # A web page's title and picture, through the engine's catalogue (yt-dlp).
    await send(page, {"type": "add", "url": page_server.url("cover.html", type="text/html")})
    await wait_for(page, f"s.queue.length === 4 && s.queue[3].startsWith("
                         f"{json.dumps(COVER_PAGE_TITLE)})", timeout=60)
    thumb = page.locator("#queue li").nth(3).locator("img.thumb")
    await thumb.wait_for()
    assert (await thumb.get_attribute("src") or "").startswith(page_server.url("cover.png"))
    await page.wait_for_function(
        "document.querySelectorAll('#queue img.thumb')[0].naturalWidth === 32")
    # Play it now: the cover is the current track's picture too.
    cover_title = (await stats(page))["queue"][3]
    await page.get_by_role("button", name=f"play {cover_title}", exact=True).click()
    await wait_for(page, f"s.title === {json.dumps(cover_title)} && s.status === 'playing'",
                   timeout=40)
    await page.wait_for_function(
        "document.getElementById('cover').tagName === 'IMG'"
        " && document.getElementById('cover').naturalWidth === 32")

    # What played (or was jumped over) is listed, newest first, with a button to
    # play it again.
    await wait_for(page, "s.history.length === 4")
    shown = await page.evaluate("Array.from(document.querySelectorAll('#history .name'))"
                                ".map((e) => e.firstChild.textContent)")
    assert shown == ["Third Stone", "Second Wind", "First Light", "steps"]
    again = page.get_by_role("button", name="play steps again", exact=True)
    await again.click()
    await wait_for(page, "s.title === 'steps' && s.status === 'playing'")
    await page.screenshot(path=str(ARTIFACTS / "playground-queue.png"), full_page=True)
    await send(page, {"type": "stop"})


async def test_errors_stay_beside_the_field_in_plain_words(
    gateway: GatewayProcess, engine: EngineProcess, media_dir: Path, browser: Browser
) -> None:
    context = await browser.new_context()
    # The page's timers run on a clock the test moves (no waiting for real time).
    await context.clock.install()
    page = await open_player(context, gateway.url)
    box = page.locator("#url-error")
    for url in (str(media_dir / "corrupt.mp3"), str(media_dir / "missing.mp3"),
                "/etc/passwd", "http://127.0.0.1:9/nothing-listens.mp3"):
        await page.fill("#url", url)
        await page.click("#play")
        await page.wait_for_function(
            "!document.getElementById('url-error').hidden && "
            "document.querySelector('#url-error .error-text').textContent !== ''",
            timeout=30_000)
        text = await box.locator(".error-text").inner_text()
        for secret in (str(media_dir), "/tmp/", engine.url, str(engine.socket_path),
                       "Traceback", "Errno"):
            assert secret not in text, (url, text)
        await page.click("#url-error .dismiss")
        assert await box.is_hidden()
        assert await page.evaluate("document.activeElement.id") == "url"

    # The box sits right under the field, and stays until dismissed.
    await page.fill("#url", "ftp://example.com/song.mp3")
    await page.click("#play")
    await box.wait_for()
    text = await box.locator(".error-text").inner_text()
    assert "only http(s) links" in text
    field, message = await page.locator("#url").bounding_box(), await box.bounding_box()
    assert field and message and 0 <= message["y"] - (field["y"] + field["height"]) < 80
    await page.clock.fast_forward(9_000)  # the old page hid errors after 8 s
    assert await box.is_visible()
    await page.screenshot(path=str(ARTIFACTS / "playground-error.png"))


async def test_a_phone_screen_fits_without_sideways_scrolling(gateway: GatewayProcess,
                                                              page_server: MediaServer,
                                                              browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844},
                                        device_scale_factor=2, is_mobile=True,
                                        has_touch=True)
    page = await open_player(context, gateway.url)
    long_name = "a-very-long-file-name-without-any-spaces-" * 3 + ".mp3"
    await send(page, {"type": "play", "url": page_server.url("steps.mp3")})
    await wait_for(page, "s.status === 'playing'")
    for name in ("first.ogg", long_name):
        await send(page, {"type": "add", "url": page_server.url(name)})
    await wait_for(page, "s.queue.length === 2")
    await page.fill("#url", page_server.url(long_name))
    await page.click("#play")   # an error with a long URL in it
    await page.locator("#url-error").wait_for()
    await page.click("#details summary")
    await page.click("#shortcuts summary")
    overflow = await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], overflow
    await page.screenshot(path=str(ARTIFACTS / "playground-390.png"), full_page=True)
    await send(page, {"type": "stop"})


async def test_developer_counters_are_behind_details(gateway: GatewayProcess,
                                                     browser: Browser) -> None:
    page = await open_player(await browser.new_context(), gateway.url)
    assert not await page.is_visible("#underruns")
    await page.click("#details summary")
    assert await page.is_visible("#underruns")
    assert await page.is_visible("#tone")


async def test_an_insecure_address_says_to_use_https_or_localhost(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    process = GatewayProcess(engine)
    process.env["GATEWAY_ALLOWED_ORIGINS"] = f"http://playground.test:{process.port}"
    with process:
        rules = "--host-resolver-rules=MAP playground.test 127.0.0.1, MAP rebind.test 127.0.0.1"
        async with chromium([rules]) as browser:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"http://playground.test:{process.port}/")
            await wait_for(page, "s.connected && !s.secure")
            banner = page.locator("#insecure")
            assert await banner.is_visible()
            words = await banner.inner_text()
            assert "HTTPS" in words and "localhost" in words and "WebCodecs" not in words
            # Everything but the sound works: play, and the page follows.
            await page.click("h1")
            await send(page, {"type": "play", "url": media_server.url("a.mp3")})
            await wait_for(page, "s.status === 'playing'")
            assert (await stats(page))["audioState"] == "none"
            assert await page.is_hidden("#url-error")
            await page.screenshot(path=str(ARTIFACTS / "playground-insecure.png"))
            await send(page, {"type": "stop"})
            assert not errors

            # The same gateway under a name it was not configured for (DNS
            # rebinding): Host and Origin agree, and the socket is still refused.
            rebound = await browser.new_page()
            await rebound.goto(f"http://rebind.test:{process.port}/")
            outcome = await rebound.evaluate("""() => new Promise((resolve) => {
                const socket = new WebSocket(`ws://${location.host}/ws`);
                socket.onopen = () => resolve("open");
                socket.onclose = (e) => resolve(`closed ${e.code}`);
            })""")
            assert outcome == "closed 1006", outcome
