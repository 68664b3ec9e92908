"""Whether the gateway can serve: the engine's API answering, and checks of others.

``EngineWatch`` asks the engine's ``/health`` every few seconds (and at once
when the engine socket connects or drops), so ``/ready`` answers from memory
and a crowd of probes never becomes a crowd of engine requests. A readiness
check is any callable that returns None when its part is ready, or the reason
it is not, in words for an operator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.engine_client import EngineClient, EngineError, EngineHealth, EngineUnavailable

__all__ = ["EngineWatch", "ReadinessCheck"]

log = logging.getLogger(__name__)

#: None when ready, else why not.
ReadinessCheck = Callable[[], str | None]


class EngineWatch:
    """Remembers whether the engine's API answered its latest ``/health``.

    Args:
        client: the engine's API client.
        interval: seconds between checks.
        timeout: seconds a check may take before it counts as a failure.
    """

    def __init__(self, client: EngineClient, *, interval: float = 2.0,
                 timeout: float = 2.0) -> None:
        self.client = client
        self.interval = interval
        self.timeout = timeout
        #: The engine's latest ``/health`` answer, or None while it does not answer.
        self.health: EngineHealth | None = None
        #: Why the latest check failed ("" after a success or before any check).
        self.problem = ""
        self.checks = 0
        self.checked_at: float | None = None
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Check now rather than at the next interval (the socket changed state)."""
        self._wake.set()

    def readiness(self) -> str | None:
        """None when the latest check succeeded, else the reason."""
        if self.checked_at is None:
            return "the engine API has not been checked yet"
        if self.health is None:
            return f"the engine API does not answer: {self.problem}"
        return None

    async def check(self) -> None:
        """Ask the engine once and remember the answer. Never raises (but
        cancelling is safe)."""
        try:
            async with asyncio.timeout(self.timeout):
                health = await self.client.health()
        except TimeoutError:
            self._failed(f"no answer within {self.timeout:g} s", "timed out")
        except EngineUnavailable as exc:
            self._failed("unreachable", str(exc))
        except EngineError as exc:
            self._failed(f"it answered HTTP {exc.status or 'with a bad body'}", str(exc))
        else:
            if self.health is None and self.checked_at is not None:
                log.info("the engine API answers again")
            self.health = health
            self.problem = ""
        self.checks += 1
        self.checked_at = time.monotonic()

    def _failed(self, problem: str, detail: str) -> None:
        # *problem* may be shown on a public port: no addresses. *detail* is logged.
        if self.health is not None or self.checked_at is None:
            log.warning("the engine API does not answer: %s", detail)
        self.health = None
        self.problem = problem

    async def run(self) -> None:
        """Check every ``interval`` seconds (or when nudged) until cancelled."""
        while True:
            self._wake.clear()
            await self.check()
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
