"""An in-process gateway runtime against a real engine, and sinks that record."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.runtime import Gateway
from gateway.settings import GatewaySettings
from gateway.sinks import OpusSink
from loadtest.processes import EngineProcess
from protocol import OpusStreamStart

__all__ = ["RecordingSink", "running_gateway", "settings_for"]


class RecordingSink(OpusSink):
    """Keeps every frame with its arrival time (never drops: a large buffer)."""

    def __init__(self) -> None:
        super().__init__(capacity=100_000)
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.stream_starts: list[OpusStreamStart] = []

    def frame_ready(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.times.append(time.monotonic())

    def stream_started(self, start: OpusStreamStart) -> None:
        self.stream_starts.append(start)


def settings_for(engine: EngineProcess, **overrides: object) -> GatewaySettings:
    """Settings of a gateway using *engine*; lyrics are off (the tests reach nothing but
    127.0.0.1) unless a test points ``lyrics_url`` at its LRCLIB stand-in."""
    values: dict[str, object] = {"go_api_port": engine.port, "socket_path": engine.socket_path,
                                 "queue_db": ":memory:", "port": 0, "lyrics_url": ""}
    return GatewaySettings(**{**values, **overrides})  # type: ignore[arg-type]


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
