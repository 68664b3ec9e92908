"""Per-identity state is bounded: 10 000 playground identities (fresh signed
cookies, as anyone gets from ``GET /``) each open a real WebSocket, ask for their
state and leave. Their rooms, players (and player tasks) and rate-limit buckets
are released once idle, and the gateway's tasks and memory come back to where
they were."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import pytest
import uvicorn
import websockets
from fastapi import FastAPI

from gateway.player import controller
from gateway.runtime import Gateway
from loadtest.processes import EngineProcess
from playground_ws import mount_playground, routes
from protocol import pad_session_id, unpad_session_id, validate_session_id

from .support.gateway_harness import settings_for
from .support.waiting import wait_until

pytestmark = pytest.mark.timeout(600)

#: 2500 in the suite: a leak of one allocated block per identity (2500) still exceeds the
#: 2000-block bound below, with the noise on top (measured: 583 blocks more after 3000
#: identities than before them); AG_TEST_IDENTITIES=10000 for the full-size run.
IDENTITIES = int(os.environ.get("AG_TEST_IDENTITIES", "2500"))
#: Connections open at once (a crowd, not a queue).
CONCURRENCY = 24


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (pytest owns them)."""

    def capture_signals(self) -> Any:
        return nullcontext()


@asynccontextmanager
async def playground(engine: EngineProcess) -> AsyncIterator[tuple[Gateway, Any, str]]:
    gateway = Gateway(settings_for(engine, player_idle_timeout=3.0, room_linger=0.05))
    await gateway.start()
    app = FastAPI()
    mount_playground(app, gateway, demo_tracks={})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started)
        yield gateway, app.state.playground, f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        await gateway.stop()


async def visit(url: str, cookie: str) -> None:
    """One identity: open the page's socket, ask for the state, leave."""
    async with websockets.connect(url, additional_headers={"Cookie": f"ag_user={cookie}"}) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await ws.send('{"type":"state"}')
        while json.loads(await ws.recv())["type"] != "state":
            pass


async def crowd(url: str, cookies: Iterator[str], sample: Any) -> None:
    """Visit with every cookie, ``CONCURRENCY`` at a time (the cookies are made as
    they are used: the test itself keeps nothing per identity)."""
    queue = cookies

    async def worker() -> None:
        for cookie in queue:
            await visit(url, cookie)
            sample()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def measure(gateway: Gateway, playground_state: Any) -> dict[str, int]:
    # The protocol's session-id caches are bounded (4096 ids) by design; empty
    # them so that what is counted is state that would grow without a bound.
    for cached in (validate_session_id, pad_session_id, unpad_session_id):
        cached.cache_clear()
    gc.collect()
    return {
        "tasks": len(asyncio.all_tasks()),
        "blocks": sys.getallocatedblocks(),
        "players": len(gateway.players.players),
        "rooms": len(playground_state.rooms),
        "buckets": len(playground_state.limits),
        "listeners": len(gateway.router._listeners),
        "sinks": gateway.router.sink_count,
    }


async def test_thousands_of_identities_leave_nothing_behind(
        engine: EngineProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # Cancelled timers stay on the loop's heap until they would have fired: the
    # heartbeat's (15 s) would be counted as memory. Two seconds here.
    monkeypatch.setattr(routes, "HEARTBEAT_INTERVAL", 2.0)
    expire = max(routes.HEARTBEAT_INTERVAL, controller.CLOSE_TIMEOUT) + 0.5
    async with playground(engine) as (gateway, state, url):
        await gateway.socket.connected.wait()
        idle = {"players": 0, "rooms": 0, "buckets": 0, "listeners": 0, "sinks": 0}

        def settled_back() -> bool:
            now = measure_cheap(gateway, state)
            return all(now[k] == 0 for k in idle)

        start_tasks = len(asyncio.all_tasks())
        # Warm up caches (imports, codecs, pools) with a few hundred visits.
        await crowd(url, (state.identity.new_user()[1] for _ in range(300)), lambda: None)
        await wait_until(settled_back, 30)
        await wait_until(lambda: len(asyncio.all_tasks()) <= start_tasks, 30)
        await asyncio.sleep(expire)
        baseline = measure(gateway, state)

        peak = {"players": 0, "rooms": 0, "tasks": 0, "blocks": 0}

        def sample() -> None:
            peak["players"] = max(peak["players"], len(gateway.players.players))
            peak["rooms"] = max(peak["rooms"], len(state.rooms))
            peak["tasks"] = max(peak["tasks"], len(asyncio.all_tasks()))
            peak["blocks"] = max(peak["blocks"], sys.getallocatedblocks())

        started = time.monotonic()
        await crowd(url, (state.identity.new_user()[1] for _ in range(IDENTITIES)), sample)
        elapsed = time.monotonic() - started
        during = measure(gateway, state)
        await wait_until(settled_back, 60)
        await wait_until(lambda: len(asyncio.all_tasks()) <= start_tasks, 30)
        await asyncio.sleep(expire)
        after = measure(gateway, state)

        print(f"\n{IDENTITIES} identities in {elapsed:.1f} s; baseline {baseline}; "
              f"right after {during}; peak {peak}; after {after}")
        assert gateway.players.stats.evictions >= IDENTITIES + 300
        # Real state was built (a player per visitor, unloaded with its room once
        # the room's linger is over, so the peak follows the crowd)...
        assert peak["players"] >= CONCURRENCY and peak["rooms"] >= CONCURRENCY
        assert peak["tasks"] > baseline["tasks"] + 2 * CONCURRENCY
        assert peak["blocks"] - baseline["blocks"] > 3_000
        # ... and it is all gone again.
        assert {k: after[k] for k in idle} == idle
        assert after["tasks"] <= baseline["tasks"]
        # Memory: back to the baseline, within interpreter noise (one leaked object
        # per identity would be 10 000 blocks).
        assert after["blocks"] - baseline["blocks"] < 2_000, (baseline, after)


def measure_cheap(gateway: Gateway, state: Any) -> dict[str, int]:
    return {
        "players": len(gateway.players.players),
        "rooms": len(state.rooms),
        "buckets": len(state.limits),
        "listeners": len(gateway.router._listeners),
        "sinks": gateway.router.sink_count,
    }
