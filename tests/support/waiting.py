"""Waiting for a condition that cannot be awaited (an HTTP status, a file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["poll_until", "poll_until_async"]


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
