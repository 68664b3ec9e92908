"""The playground's player as people use it, in real headless Chromium against a real
gateway and engine: the bar stays at the bottom however far the page scrolls, fingers
reach every control at 390 px and only a mouse is offered dragging, idle looks idle,
stop keeps the queue and a clear can be undone, loop and shuffle, the pill says when
the engine is away, lengths are real or "unknown", and a track that fails reads the
same everywhere and is no history; the demo is a link of the server, never a path."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess, free_port

from .support.browser import open_player, stats, wait_for
from .support.media import write_vorbis_tone
from .support.playground import (
    bar_placement,
    command,
    new_screen,
    small_targets,
    tagged_tone,
)

pytestmark = pytest.mark.timeout(180)

#: The async tests share the module's event loop, so that one browser serves them all.
module_loop = pytest.mark.asyncio(loop_scope="module")

TRACKS = {"alpha.ogg": ("Alpha", 440.0), "bravo.ogg": ("Bravo", 550.0),
          "charlie.ogg": ("Charlie", 660.0), "delta.ogg": ("Delta", 880.0)}


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    root = tmp_path_factory.mktemp("player-media")
    for name, (title, frequency) in TRACKS.items():
        tagged_tone(root / name, title, frequency, 30.0)
    # 30 s at a fraction of its declared 160 kb/s: from that rate, FFmpeg guesses 6 s.
    write_vorbis_tone(root / "long_vorbis.ogg", 330.0, 30.0, nominal_bit_rate=160_000)
    (root / "other_vorbis.ogg").write_bytes((root / "long_vorbis.ogg").read_bytes())
    with MediaServer(root) as server:
        yield server



@pytest.fixture(scope="module")
def gateway(engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(engine) as process:
        yield process


async def play_queue(page: Page, tracks: MediaServer, *names: str) -> None:
    """Play the first of *names*, queue the others, and wait until it plays."""
    await command(page, {"type": "play", "url": tracks.url(names[0])})
    for name in names[1:]:
        await command(page, {"type": "add", "url": tracks.url(name)})
    await wait_for(page, f"s.status === 'playing' && s.queue.length === {len(names) - 1}")


async def disabled(page: Page, *ids: str) -> list[bool]:
    return [await page.locator(f"#{id}").is_disabled() for id in ids]


@module_loop
@pytest.mark.parametrize("width", [1280, 390])
async def test_the_player_bar_stays_at_the_bottom_however_far_the_page_scrolls(
        gateway: GatewayProcess, tracks: MediaServer, browser: Browser, width: int) -> None:
    page = await open_player(await new_screen(browser, width), gateway.url)
    await play_queue(page, tracks, "alpha.ogg", "bravo.ogg")
    await page.click("#shortcuts summary")
    await page.click("#details summary")
    length = await page.evaluate("document.documentElement.scrollHeight")
    assert length > (await bar_placement(page))["height"] + 400  # a page to scroll
    for y in (0, length // 3, length // 2, length):
        await page.evaluate(f"window.scrollTo(0, {y})")
        bar = await bar_placement(page)
        # Flush with the window's bottom edge, every control inside it and shown.
        assert abs(bar["bottom"] - bar["height"]) < 1, (y, bar)
        for name, box in bar["controls"].items():
            assert box is not None, (y, name)
            assert bar["top"] - 1 <= box["top"] and box["bottom"] <= bar["height"] + 1
            assert 0 <= box["left"] and box["right"] <= bar["width"], (y, name, box)
    # Scrolled to the end, the page's last card is above the bar, not under it.
    last = await page.evaluate(
        "document.querySelector('main').lastElementChild.getBoundingClientRect().bottom")
    assert last <= bar["top"], (last, bar)
    assert await page.inner_text("#title") == "Alpha"
    await command(page, {"type": "stop"})


@module_loop
async def test_fingers_reach_every_control_at_390_and_only_a_mouse_is_offered_dragging(
        gateway: GatewayProcess, tracks: MediaServer, browser: Browser) -> None:
    phone = await open_player(await new_screen(browser, 390), gateway.url)
    await play_queue(phone, tracks, "alpha.ogg", "bravo.ogg", "charlie.ogg")
    # Every kind of control on screen at once: queue buttons, the undo of a
    # clear, an error with its dismiss button, the open details.
    await phone.click("#clear")
    await phone.locator("#undo-clear").wait_for()
    await command(phone, {"type": "add", "url": tracks.url("delta.ogg")})
    await wait_for(phone, "s.queue.length === 1")
    await phone.click("#play")  # an empty link field: an error beside it
    await phone.locator("#url-error").wait_for()
    await phone.click("#shortcuts summary")
    await phone.click("#details summary")
    assert await small_targets(phone) == []
    # A finger cannot drag a track: no drag, and the hint says to use the arrows.
    assert not await phone.locator("#queue li").first.evaluate("li => li.draggable")
    assert await phone.is_hidden(".drag-hint")
    assert "arrow buttons" in await phone.inner_text(".touch-hint")

    desk = await open_player(await new_screen(browser, 1280), gateway.url)
    await play_queue(desk, tracks, "alpha.ogg", "bravo.ogg")
    assert await desk.locator("#queue li").first.evaluate("li => li.draggable")
    assert await desk.is_visible(".drag-hint") and await desk.is_hidden(".touch-hint")
    for page in (phone, desk):
        await command(page, {"type": "stop"})


@module_loop
async def test_idle_looks_idle_stop_keeps_the_queue_and_a_clear_can_be_undone(
        gateway: GatewayProcess, tracks: MediaServer, browser: Browser) -> None:
    context = await new_screen(browser, 1280)
    # The page's own timers (the undo's offer) run on a clock the test moves.
    await context.clock.install()
    page = await open_player(context, gateway.url)
    # Idle: nothing playing, play shown but disabled, nothing to stop or skip.
    assert await page.inner_text("#title") == "nothing playing"
    assert await page.get_attribute("#pause", "aria-label") == "play"
    assert await disabled(page, "pause", "skip", "stop", "previous") == [True] * 4
    assert await page.get_attribute("#seek", "aria-disabled") == "true"
    assert await page.inner_text("#duration") == "\u2013:\u2013\u2013"  # no time
    assert await page.is_hidden("#clear")  # no "clear the queue" on an empty queue

    await play_queue(page, tracks, "alpha.ogg", "bravo.ogg", "charlie.ogg")
    assert await disabled(page, "pause", "skip", "stop") == [False] * 3
    assert await page.get_attribute("#pause", "aria-label") == "pause"

    # Stop: nothing plays, and nothing is forgotten.
    await page.click("#stop")
    await wait_for(page, "s.status === 'idle' && s.queue.join() === 'Alpha,Bravo,Charlie'")
    assert await page.inner_text("#title") == "nothing playing"
    assert await page.inner_text("#status") == "stopped · 3 tracks waiting"
    assert await disabled(page, "pause", "skip", "stop") == [False, True, True]
    assert await page.get_attribute("#pause", "aria-label") == "play"
    # Play goes on with the track that was stopped, from its start.
    await page.click("#pause")
    await wait_for(page, "s.title === 'Alpha' && s.status === 'playing' "
                         "&& s.queue.join() === 'Bravo,Charlie' && s.position < 3")

    # Clear, separately, with an undo.
    await page.click("#clear")
    await wait_for(page, "s.queue.length === 0 && s.undoClear === 2")
    assert await page.is_hidden("#clear")
    assert await page.inner_text("#undo-text") == "2 tracks cleared from the queue."
    await page.click("#undo-clear")
    await wait_for(page, "s.queue.join() === 'Bravo,Charlie' && s.undoClear === 0")
    assert await page.is_hidden("#undo")
    assert (await stats(page))["title"] == "Alpha"  # the track played on

    # The offer goes when the server's window does (30 s, on the page's clock).
    await page.click("#clear")
    await page.locator("#undo-clear").wait_for()
    await page.clock.fast_forward(29_000)
    assert await page.is_visible("#undo")
    await page.clock.fast_forward(2_000)
    await page.locator("#undo").wait_for(state="hidden")
    await command(page, {"type": "stop"})
    assert not page.console_errors  # type: ignore[attr-defined]


@module_loop
async def test_loop_cycles_through_its_modes_and_shuffle_reorders_the_queue(
        gateway: GatewayProcess, tracks: MediaServer, browser: Browser) -> None:
    page = await open_player(await new_screen(browser, 1280), gateway.url)
    assert await page.inner_text("#loop-text") == "loop: off"
    assert await page.is_disabled("#shuffle")  # nothing to shuffle
    await play_queue(page, tracks, "alpha.ogg", "bravo.ogg", "charlie.ogg", "delta.ogg")
    for mode, pressed in (("queue", "true"), ("track", "true"), ("off", "false")):
        await page.click("#loop")
        await wait_for(page, f"s.loop === {json.dumps(mode)}")
        assert await page.inner_text("#loop-text") == f"loop: {mode}"
        assert await page.get_attribute("#loop", "aria-pressed") == pressed

    states = len(await page.evaluate("window.playground.messages()"))
    await page.click("#shuffle")
    await page.wait_for_function(
        f"window.playground.messages().slice({states}).some((m) => m.type === 'state')")
    assert sorted((await stats(page))["queue"]) == ["Bravo", "Charlie", "Delta"]
    assert not [m for m in await page.evaluate("window.playground.messages()")
                if m["type"] == "error"]
    await command(page, {"type": "remove", "position": 1})
    await command(page, {"type": "remove", "position": 1})
    await wait_for(page, "s.queue.length === 1")
    assert await page.is_disabled("#shuffle")
    await command(page, {"type": "stop"})


@module_loop
async def test_the_pill_says_when_the_engine_or_the_server_is_away(
        engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
        browser: Browser) -> None:
    with engine_factory() as engine, GatewayProcess(engine) as gateway:
        page = await open_player(await new_screen(browser, 1280), gateway.url)
        await wait_for(page, "s.pill === 'connected'")
        assert "online" in (await page.get_attribute("#connection", "class") or "")
        engine.terminate()
        # The page is still connected, but what the server plays with is gone.
        await wait_for(page, "s.connected && s.pill === 'audio engine unavailable'")
        assert "offline" in (await page.get_attribute("#connection", "class") or "")
        assert await page.is_visible("#notice")
        gateway.terminate()
        await wait_for(page, "!s.connected && s.pill === 'reconnecting…'")


@module_loop
async def test_lengths_are_real_or_unknown_and_a_failed_track_is_one_message_not_history(
        gateway: GatewayProcess, tracks: MediaServer, browser: Browser) -> None:
    page = await open_player(await new_screen(browser, 1280), gateway.url)
    # A server without byte ranges: the length is unknown, and said so.
    await command(page, {"type": "play", "url": tracks.url("long_vorbis.ogg", ranges=0)})
    await wait_for(page, "s.status === 'playing' && s.duration === null")
    assert await page.inner_text("#duration") == "unknown"
    assert "length unknown" in (await page.get_attribute("#seek", "aria-valuetext") or "")
    # The same file from a server with ranges: its real length, in the queue too.
    await command(page, {"type": "add", "url": tracks.url("missing.ogg")})
    await command(page, {"type": "add", "url": tracks.url("other_vorbis.ogg")})
    await wait_for(page, "s.queue.length === 2")
    lengths = await page.evaluate("Array.from(document.querySelectorAll('#queue .name'))"
                                  ".map((e) => e.querySelector('small')?.textContent ?? '')")
    assert lengths == ["", "0:30"]

    # Skip: the missing file fails, the queue moves on to the next track.
    await page.click("#skip")
    await wait_for(page, "s.title === 'other_vorbis' && s.status === 'playing'")
    await page.locator("#url-error").wait_for()
    words = await page.inner_text("#url-error .error-text")
    assert words.startswith("could not play missing: "), words
    assert await page.inner_text("#duration") == "0:30"
    # What failed is no history: only what played is listed.
    assert (await stats(page))["history"] == ["long_vorbis"]
    assert await page.locator("#history li").count() == 1
    # The state's words, once: the engine's own event text is not shown beside it.
    state_errors = [m["state"]["error"] for m in
                    await page.evaluate("window.playground.messages()")
                    if m["type"] == "state" and m["state"]["error"]]
    assert state_errors and set(state_errors) == {words}

    # The same failure again is told again, though its words are the same.
    await page.click("#url-error .dismiss")
    await command(page, {"type": "play", "url": tracks.url("missing.ogg")})
    await page.locator("#url-error").wait_for()
    assert await page.inner_text("#url-error .error-text") == words
    await wait_for(page, "s.title === 'other_vorbis' && s.status === 'playing'")
    await command(page, {"type": "stop"})


def test_the_media_fixture_really_misleads_a_guess(tracks: MediaServer, tmp_path: Path) -> None:
    """The Vorbis file declares far more than it takes: a length from the declared
    rate would be about a fifth of the real one (what the page once showed)."""
    import av

    with av.open(tracks.url("long_vorbis.ogg", ranges=0)) as container:
        assert container.duration is not None and container.duration < 10_000_000
    with av.open(tracks.url("long_vorbis.ogg")) as container:
        assert container.duration == pytest.approx(30_000_000, abs=100_000)


@module_loop
async def test_the_demo_track_is_offered_as_a_link_of_the_server_never_a_path(
        browser: Browser) -> None:
    """``audiogate run``: the link field holds the demo as a link of the page's own
    server, which plays it (and serves it to a browser); no server path shows."""
    directory = Path(tempfile.mkdtemp(prefix="ag-"))
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GO_API_PORT": str(free_port()),
           "SOCKET_PATH": str(directory / "engine.sock"),
           "GATEWAY_DATA_DIR": str(directory / "data"), "GATEWAY_QUEUE_DB": ":memory:"}
    url = f"http://127.0.0.1:{port}"
    with (directory / "stack.log").open("wb") as log:
        stack = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "audiogate", "run", env=env, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as web:
            await poll_ready(web, stack)
            html = (await web.get("/")).text
            assert str(directory) not in html
            served = await web.get("/demo/demo.opus")
            assert served.status_code == 200 and served.headers["content-type"] == "audio/ogg"
            assert served.content[:4] == b"OggS"
            for other in ("/demo/nothing.opus", "/demo/..%2Fcookie_secret", "/demo/"):
                assert (await web.get(other)).status_code == 404, other
        page = await open_player(await new_screen(browser, 1280), url)
        assert await page.input_value("#url") == f"{url}/demo/demo.opus"
        await page.fill("#url", "")
        await page.click("#demo")  # the button puts it back
        assert await page.input_value("#url") == f"{url}/demo/demo.opus"
        await page.click("#play")
        await wait_for(page, "s.title === 'audiogate demo' && s.status === 'playing' "
                             "&& s.playedMs > 500", timeout=30)
        assert str(directory) not in await page.content()
        await command(page, {"type": "stop"})
    finally:
        stack.terminate()
        async with asyncio.timeout(30):
            await stack.wait()


async def poll_ready(web: httpx.AsyncClient, stack: asyncio.subprocess.Process) -> None:
    """Until the stack's gateway says it is ready (its engine child too), 60 s at most."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert stack.returncode is None, "the stack exited"
        try:
            if (await web.get("/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail("the stack did not become ready")
