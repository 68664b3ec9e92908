"""Debian's Chromium, driven by playwright's Python package (never downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

__all__ = ["ARTIFACTS", "chromium"]

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
