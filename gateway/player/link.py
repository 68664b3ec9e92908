"""What every player shares about the engine: is its socket up, what can it do, and
when was it last lost.

The runtime updates one ``EngineLink`` from the socket client's state and from
``GET /health``; players read it (capabilities, the time the link was lost) and
wait on it when the engine cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from gateway.engine_client import (
    GO_ENGINE,
    EngineCapabilities,
    FiltersResult,
    Format,
    NextResult,
    PlayResult,
    SessionInfo,
    SessionStatus,
)
from protocol.filters import Filters

__all__ = ["EngineApi", "EngineLink", "LinkView"]


class EngineApi(Protocol):
    """The engine calls a player makes: an ``EngineClient``, or the binding of a
    player to an engine node of a pool (``gateway.nodes``)."""

    async def play(self, session_id: str, url: str, *, format: Format = "opus",
                   start_at: float = 0.0, duration: float = 0.0,
                   volume: float | None = None, filters: Filters | None = None,
                   crossfade: float | None = None) -> PlayResult: ...

    async def stop(self, session_id: str) -> None: ...

    async def pause(self, session_id: str) -> None: ...

    async def resume(self, session_id: str) -> None: ...

    async def status(self, session_id: str) -> SessionStatus | None: ...

    async def session_info(self, session_id: str) -> SessionInfo | None: ...

    async def set_volume(self, session_id: str, volume: float) -> None: ...

    async def set_filters(self, session_id: str,
                          filters: Filters) -> FiltersResult: ...

    async def set_crossfade(self, session_id: str, seconds: float) -> float: ...

    async def set_next(self, session_id: str, url: str, *, start_at: float = 0.0,
                       duration: float = 0.0, filters: Filters | None = None,
                       now: bool = False) -> NextResult: ...

    async def cancel_next(self, session_id: str) -> int | None: ...


class LinkView(Protocol):
    """What a player reads of its engine connection (``EngineLink``, or a pool
    binding that follows the player's node)."""

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def connected(self) -> bool: ...

    @property
    def discovered(self) -> bool: ...

    @property
    def generation(self) -> int: ...

    @property
    def lost_at(self) -> float | None: ...

    async def wait_change(self, seconds: float) -> None: ...


class EngineLink:
    """The gateway's view of its engine connection.

    Attributes:
        capabilities: what the engine announced (``GO_ENGINE`` until it did).
        discovered: True once ``/health`` answered since the last connect.
        connected: the socket is connected.
        generation: connects so far (a new value means the engine may have
            restarted: play ids start again, sessions may be gone).
        lost_at: clock time the socket was last lost (None before any loss).
    """

    def __init__(self) -> None:
        self.capabilities: EngineCapabilities = GO_ENGINE
        self.discovered = False
        self.connected = False
        self.generation = 0
        self.lost_at: float | None = None
        self._pulse = asyncio.Event()

    def mark_connected(self) -> None:
        """The socket connected (capabilities are discovered again)."""
        self.connected = True
        self.discovered = False
        self.generation += 1
        self._fire()

    def mark_lost(self, now: float) -> None:
        """The socket was lost at *now*."""
        self.connected = False
        self.lost_at = now
        self._fire()

    def set_capabilities(self, capabilities: EngineCapabilities) -> None:
        """``/health`` answered with these features."""
        self.capabilities = capabilities
        self.discovered = True
        self._fire()

    async def wait_change(self, seconds: float) -> None:
        """Return after the next connect, loss or discovery, or after *seconds*.
        Cancelling is safe."""
        pulse = self._pulse
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await pulse.wait()

    def _fire(self) -> None:
        # Wake everyone waiting now; later waiters wait for the next change.
        self._pulse.set()
        self._pulse = asyncio.Event()
