"""State that survives: the real gateway process (``python -m gateway``) is stopped
with SIGTERM and started again on the same data directory; every user finds their
track, position, queue and pause state back. A damaged queue database costs the
saved queues, not the start."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .conftest import TONES
from .support.media import decode_opus_packets, dominant_frequency
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


class Tab:
    """One playground tab: a WebSocket with the user's cookie, recording what
    arrives (JSON messages, and when each audio frame came)."""

    def __init__(self, gateway: GatewayProcess, cookie: str) -> None:
        self.url = gateway.url.replace("http", "ws") + "/ws"
        self.cookie = cookie
        self.messages: list[dict[str, Any]] = []
        self.frames: list[bytes] = []
        self.frame_times: list[float] = []

    async def __aenter__(self) -> Tab:
        self.ws = await websockets.connect(self.url,
                                           additional_headers={"Cookie": f"ag_user={self.cookie}"})
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await wait_until(lambda: any(m["type"] == "hello" for m in self.messages))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.ws.close()

    async def _read(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                self.frames.append(message)
                self.frame_times.append(time.monotonic())
            else:
                self.messages.append(json.loads(message))

    async def send(self, **message: object) -> None:
        await self.ws.send(json.dumps(message))

    def state(self) -> dict[str, Any]:
        """The latest full state (hello or state message)."""
        return next(m["state"] for m in reversed(self.messages)
                    if m["type"] in ("hello", "state"))

    def position(self) -> tuple[float, float]:
        """(position, when) from the latest progress message."""
        for message in reversed(self.messages):
            if message["type"] == "progress":
                return float(message["position"]), float(message["time"])
        return 0.0, 0.0

    def wait(self, predicate: Callable[[], bool], seconds: float = 20.0) -> Any:
        return wait_until(predicate, seconds)


async def cookie_of(gateway: GatewayProcess) -> str:
    async with httpx.AsyncClient(base_url=gateway.url) as web:
        return (await web.get("/")).cookies["ag_user"]


async def tone(frames: list[bytes]) -> float:
    return await asyncio.to_thread(lambda: dominant_frequency(decode_opus_packets(frames)[0]))


def titles(state: dict[str, Any]) -> list[str]:
    return [t["title"] for t in state["queue"]]


async def test_sigterm_keeps_every_queue_position_and_pause(
        engine: EngineProcess, media_server: MediaServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"GATEWAY_DATA_DIR": str(data), "GATEWAY_QUEUE_DB": str(data / "queues.sqlite3"),
           "GATEWAY_LOG_LEVEL": "INFO"}
    gateway = await asyncio.to_thread(GatewayProcess(engine, env).start)
    try:
        alice, bob = await cookie_of(gateway), await cookie_of(gateway)
        async with Tab(gateway, alice) as a, Tab(gateway, bob) as b:
            await a.send(type="play", url=media_server.url("long_a.mp3"))
            await a.send(type="add", url=media_server.url("c.mp3"))
            await a.send(type="add", url=media_server.url("b.mp3"))
            await b.send(type="play", url=media_server.url("long_b.mp3"))
            await a.wait(lambda: a.position()[0] >= 2.0 and len(titles(a.state())) == 2)
            await b.wait(lambda: b.position()[0] >= 1.0)
            await b.send(type="pause")
            await b.wait(lambda: b.state()["paused"] and b.state()["status"] == "paused")
            bob_position = b.state()["position"]
            alice_user = a.messages[0]["user_id"]
        # The tabs are gone; the gateway stops with SIGTERM right after.
        position, at = a.position()
        stopped_at = time.time()
        assert await asyncio.to_thread(gateway.terminate) == 0
        alice_expected = position + (stopped_at - at)
        log = gateway.log()
        assert "saving 2 players" in log
        # Their engine sessions were released, not left playing to nobody.
        async with httpx.AsyncClient(base_url=engine.url) as api:
            status = (await api.get(f"/session/{alice_user}/status")).json()["status"]
            assert status in ("not_found", "stopped")

        gateway = await asyncio.to_thread(GatewayProcess(engine, env).start)
        async with Tab(gateway, alice) as a, Tab(gateway, bob) as b:
            # Bob: paused where he paused, with his track.
            state = b.state()
            assert state["current"]["title"] == "long_b" and state["paused"]
            assert abs(state["position"] - bob_position) < 0.1
            # Alice: her track, her queue, her position, and playing on.
            state = a.messages[0]["state"]
            assert state["current"]["title"] == "long_a"
            assert titles(state) == ["c", "b"]
            assert abs(state["position"] - alice_expected) < 1.0, (state, alice_expected)
            await a.wait(lambda: a.state()["status"] == "playing" and len(a.frames) > 60)
            assert abs(await tone(a.frames[-50:]) - TONES["a"]) < 3
            assert titles(a.state()) == ["c", "b"]
            await asyncio.sleep(0.5)
            assert not b.frames and b.state()["paused"]
            await a.send(type="stop")
            await b.send(type="stop")
            await a.wait(lambda: a.state()["status"] == "idle")
    finally:
        await asyncio.to_thread(gateway.terminate)


async def test_a_damaged_queue_database_is_moved_aside_at_start(
        engine: EngineProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "queues.sqlite3").write_bytes(b"\x00garbage\xff" * 500)
    env = {"GATEWAY_DATA_DIR": str(data), "GATEWAY_QUEUE_DB": str(data / "queues.sqlite3")}
    gateway = await asyncio.to_thread(GatewayProcess(engine, env).start)
    try:
        lines = [line for line in gateway.log().splitlines() if "damaged" in line]
        assert len(lines) == 1 and "moved it to queues.sqlite3.corrupt-" in lines[0]
        assert "Traceback" not in gateway.log()
        async with httpx.AsyncClient(base_url=gateway.url) as web:
            assert (await web.get("/health")).status_code == 200
    finally:
        await asyncio.to_thread(gateway.terminate)


async def test_a_killed_gateway_brings_a_listener_back_near_where_they_were(
        engine: EngineProcess, media_server: MediaServer, tmp_path: Path) -> None:
    """SIGKILL after 10 s of play with no user action: the position saved in the
    background (every 4 s) brings the user back at most 5 s before the kill, not at 0.
    (10 s is enough for two background saves, and puts the earliest accepted
    position, 5 s, well past a save made only when the play began.)"""
    data = tmp_path / "data"
    env = {"GATEWAY_DATA_DIR": str(data), "GATEWAY_QUEUE_DB": str(data / "queues.sqlite3")}
    gateway = await asyncio.to_thread(GatewayProcess(engine, env).start)
    try:
        alice = await cookie_of(gateway)
        async with Tab(gateway, alice) as a:
            await a.send(type="play", url=media_server.url("long_a.mp3"))
            await a.wait(lambda: a.position()[0] >= 10.0, 30.0)
            position, at = a.position()
            killed_at = time.time()
            await asyncio.to_thread(gateway.kill)
        reached = position + (killed_at - at)

        gateway = await asyncio.to_thread(GatewayProcess(engine, env).start)
        async with Tab(gateway, alice) as a:
            state = a.messages[0]["state"]
            assert state["current"]["title"] == "long_a"
            assert reached - 5.0 <= state["position"] <= reached + 0.5, (state, reached)
            # And it plays on from there.
            await a.wait(lambda: a.state()["status"] == "playing" and len(a.frames) > 25)
            await a.wait(lambda: a.position()[0] > state["position"])
            assert abs(await tone(a.frames[-20:]) - TONES["a"]) < 3
            await a.send(type="stop")
            await a.wait(lambda: a.state()["status"] == "idle")
    finally:
        await asyncio.to_thread(gateway.terminate)
