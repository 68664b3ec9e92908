"""Waiting for a condition that cannot be awaited (an HTTP status, a file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["poll_until", "poll_until_async", "wait_until"]


def poll_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.02) -> None:
    """Check *predicate* every *interval* seconds until it holds.

    Raises:
        TimeoutError: if it does not hold within *timeout*.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def poll_until_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0,
                           interval: float = 0.02) -> None:
    """Async form of ``poll_until``."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)


async def wait_until(predicate: Callable[[], bool], seconds: float = 10.0,
                     interval: float = 0.01) -> None:
    """Re-check *predicate* every *interval* seconds on the loop (which keeps
    running the code under test) until it holds. For state with no awaitable of
    its own: a sink's frame count, a player's view.

    Raises:
        TimeoutError: if it does not hold within *seconds*.
    """
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(interval)
