"""What the playground page tests share: tagged tones, the two screens the page is
judged on, and measurements of the page (where the player bar is, what a finger can
press, whether anything scrolls sideways)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Browser, BrowserContext, Page

from loadtest.media import encode_blocks

__all__ = [
    "PHONE",
    "WIDE",
    "bar_placement",
    "command",
    "new_screen",
    "sideways_overflow",
    "small_targets",
    "tagged_tone",
]

#: A desktop window and a phone (touch, 390 px wide), the widths the issue names.
WIDE: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                         "is_mobile": True, "has_touch": True}


async def new_screen(browser: Browser, width: int) -> BrowserContext:
    """A browser context with the window of *width* (1280 or 390)."""
    return await browser.new_context(**(WIDE if width == 1280 else PHONE))


def tagged_tone(path: Path, title: str, frequency: float, seconds: float) -> Path:
    """An Ogg Opus tone whose title tag is *title* (the catalogue reads it)."""
    index = np.arange(int(48_000 * seconds))
    wave = (0.5 * np.sin(2 * np.pi * frequency * index / 48_000)).astype(np.float32)
    blocks = (np.tile(wave[i:i + 4800], (2, 1)) for i in range(0, wave.size, 4800))
    return encode_blocks(path, blocks, rate=48_000, layout="stereo", container_format="ogg",
                         codec="libopus", title=title)


async def command(page: Page, message: dict[str, Any]) -> None:
    """Send *message* on the page's own socket."""
    await page.evaluate(f"window.playground.send({json.dumps(message)})")


async def bar_placement(page: Page) -> dict[str, Any]:
    """Where the player bar and its controls are, in the window now: the bar's
    top and bottom, the window's height, and each control's box (or None when not
    shown)."""
    return await page.evaluate("""() => {
        const box = (el) => {
            if (!el || !el.getClientRects().length) return null;
            const r = el.getBoundingClientRect();
            return {top: r.top, bottom: r.bottom, left: r.left, right: r.right};
        };
        const bar = document.getElementById("player").getBoundingClientRect();
        const controls = {};
        for (const id of ["title", "seek", "previous", "pause", "skip", "volume"]) {
            controls[id] = box(document.getElementById(id));
        }
        return {top: bar.top, bottom: bar.bottom, height: window.innerHeight,
                width: window.innerWidth, controls};
    }""")  # type: ignore[no-any-return]


async def small_targets(page: Page, least: float = 44.0) -> list[str]:
    """The controls shown on the page that are smaller than *least* CSS pixels in
    width or height (each named by its id, label or text, with its size)."""
    return await page.evaluate("""(least) => {
        const selector = "button, summary, a[href], input, select, textarea, "
            + "[role=slider], [tabindex]:not([tabindex='-1'])";
        const misses = [];
        for (const el of document.querySelectorAll(selector)) {
            if (!el.getClientRects().length) continue;            // not shown
            const style = getComputedStyle(el);
            if (style.visibility === "hidden") continue;
            const r = el.getBoundingClientRect();
            if (r.width + 0.5 < least || r.height + 0.5 < least) {
                const name = el.id || el.getAttribute("aria-label") || el.textContent.trim();
                misses.push(`${name}: ${r.width.toFixed(0)}x${r.height.toFixed(0)}`);
            }
        }
        return misses;
    }""", least)  # type: ignore[no-any-return]


async def sideways_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0: none)."""
    wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return max(0, int(wide))
