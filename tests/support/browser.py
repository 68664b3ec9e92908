"""Debian's Chromium, driven by playwright's Python package (never downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

__all__ = ["ARTIFACTS", "chromium", "close_contexts", "open_player", "stats", "wait_for"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _executable() -> str:
    for candidate in _CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("Debian's chromium is not installed (make test installs it)")
    return found


@asynccontextmanager
async def chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """Headless Chromium; *extra_args* are more command-line switches (say,
    ``--host-resolver-rules`` to serve a page under a host name)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=_executable(),
                                                   args=[*_FLAGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


async def close_contexts(browser: Browser) -> None:
    """Close every context of *browser* (their pages, sockets and audio): what a
    test leaves behind in a browser the module shares goes with the test."""
    for context in list(browser.contexts):
        await context.close()


async def stats(page: Page) -> dict[str, Any]:
    return await page.evaluate("window.playground.stats()")  # type: ignore[no-any-return]


async def wait_for(page: Page, condition: str, timeout: float = 20.0) -> None:
    """Wait until the JS expression *condition* (over ``s`` = stats) holds."""
    await page.wait_for_function(
        f"(() => {{ const s = window.playground.stats(); return {condition}; }})()",
        timeout=timeout * 1000,
    )


async def open_player(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(url)
    await page.click("h1")  # a user gesture: the page starts its AudioContext
    await wait_for(page, "s.connected && s.audioState === 'running'")
    page.console_errors = errors  # type: ignore[attr-defined]
    return page
