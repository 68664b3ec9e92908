"""Honest health: ``/ready`` of both processes says what is missing (503 with
the reasons) and recovers; ``READY`` is printed only once every socket
accepts; the Discord login retries with backoff and a refused token is final."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from bot import BotService, BotState
from gateway.app import readiness
from loadtest.processes import EngineProcess, GatewayProcess, free_port

from .support.discord_api import FakeDiscord, discord_gateway
from .support.gateway_harness import running_gateway, settings_for
from .support.waiting import poll_until, poll_until_async

pytestmark = pytest.mark.timeout(180)


def test_ready_is_printed_only_when_both_engine_sockets_accept() -> None:
    with tempfile.TemporaryDirectory(prefix="ag-") as directory:
        path = Path(directory) / "engine.sock"
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "audio_engine"], stderr=subprocess.PIPE, text=True,
            env={**os.environ, "GO_API_PORT": str(port), "SOCKET_PATH": str(path)})
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith("ENGINE READY"):
                    break
            else:
                pytest.fail("the engine ended without READY")
            # At once, no retry: both accept, and the engine says it is ready.
            with socket.socket(socket.AF_UNIX) as consumer:
                consumer.connect(str(path))
            assert httpx.get(f"http://127.0.0.1:{port}/ready").json() == \
                {"status": "ready", "reasons": []}
        finally:
            process.terminate()
            assert process.wait(30) == 0
        assert not path.exists()


def test_the_gateway_is_ready_only_with_its_engine(media_dir: Path) -> None:
    engine = EngineProcess(media_dir=media_dir)  # not started yet
    with GatewayProcess(engine, {"GATEWAY_ENGINE_CHECK_INTERVAL": "0.5"}) as gateway:

        def ready() -> httpx.Response:
            return httpx.get(f"{gateway.url}/ready", timeout=5)

        refused = ready()
        assert refused.status_code == 503
        reasons = refused.json()["reasons"]
        assert "not connected to the engine socket" in reasons
        assert any(r.startswith("the engine API") for r in reasons), reasons
        assert all(engine.socket_path.name not in r for r in reasons)  # no server paths
        health = httpx.get(f"{gateway.url}/health").json()
        assert health["status"] == "ok" and health["ready"] is False

        engine.start()
        poll_until(lambda: ready().status_code == 200, timeout=30, interval=0.1)
        assert httpx.get(f"{gateway.url}/health").json()["ready"] is True

        engine.kill()
        poll_until(lambda: ready().status_code == 503, timeout=30, interval=0.1)
        assert "not connected to the engine socket" in ready().json()["reasons"]

        engine = EngineProcess(port=engine.port, socket_path=engine.socket_path,
                               media_dir=media_dir).start()
        try:
            poll_until(lambda: ready().status_code == 200, timeout=30, interval=0.1)
        finally:
            engine.terminate()


def test_the_engine_is_not_ready_while_every_worker_clock_stalls(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
) -> None:
    with engine_factory(ENGINE_WORKERS="2") as engine, \
            httpx.Client(base_url=engine.url) as api:
        pids = api.get("/health").json()["worker_pids"]
        assert len(pids) == 2

        def ready() -> httpx.Response:
            return api.get("/ready")

        # One stalled worker: the other one ticks, so the engine takes work.
        os.kill(pids[0], signal.SIGSTOP)
        try:
            time.sleep(2.0 + 0.5)  # past the stall threshold, on purpose
            assert ready().status_code == 200
            os.kill(pids[1], signal.SIGSTOP)
            try:
                poll_until(lambda: ready().status_code == 503, timeout=10, interval=0.1)
                reasons = ready().json()["reasons"]
                assert len(reasons) == 1 and reasons[0].startswith(
                    "the clock has not ticked for"), reasons
            finally:
                os.kill(pids[1], signal.SIGCONT)
        finally:
            os.kill(pids[0], signal.SIGCONT)
        poll_until(lambda: ready().status_code == 200, timeout=10, interval=0.1)
        assert api.get("/health").json()["worker_pids"] == pids  # nobody restarted


async def _async_true(value: bool) -> bool:
    return value


async def test_a_refused_discord_token_is_final_and_reported(engine: EngineProcess) -> None:
    fake = FakeDiscord(refuse_token=True)
    await fake.start()
    try:
        with discord_gateway(fake.port):
            async with running_gateway(settings_for(engine)) as gateway:
                bot = BotService(gateway, "refused-token", backoff_initial=0.05)
                async with asyncio.timeout(20):
                    await bot.run()  # returns by itself: nothing left to try
                assert bot.state is BotState.REFUSED
                assert (bot.attempts, fake.logins) == (1, 1)
                reason = bot.readiness()
                assert reason is not None and "Discord refused the token" in reason
                assert "DISCORD_TOKEN" in reason and "refused-token" not in reason
                assert reason in readiness(gateway, [bot.readiness])
    finally:
        await fake.close()


async def test_the_discord_login_is_retried_with_backoff_until_it_works(
    engine: EngineProcess,
) -> None:
    port = free_port()  # nothing listens there yet: Discord is "unreachable"
    with discord_gateway(port):
        async with running_gateway(settings_for(engine)) as gateway:
            bot = BotService(gateway, "good-token", backoff_initial=0.05, backoff_max=0.4)
            run = asyncio.create_task(bot.run())
            fake = None
            try:
                await poll_until_async(lambda: _async_true(bot.failures >= 3), timeout=20)
                reason = bot.readiness()
                assert reason is not None and "Discord is unreachable" in reason
                fake = FakeDiscord()
                await fake.start(port)
                await poll_until_async(lambda: _async_true(bot.readiness() is None),
                                       timeout=30, interval=0.05)
                assert fake.identifies == 1
                assert bot.attempts == bot.failures + 1
                metrics = gateway.metrics.registry.get_sample_value(
                    "audiogate_gateway_discord_connected")
                assert metrics == 1
                # Failed attempts' clients left no metrics behind: each family once.
                families = [line for line in generate_latest(gateway.metrics.registry)
                            .decode().splitlines() if line.startswith("# HELP")]
                assert len(families) == len(set(families))
            finally:
                await bot.close()
                async with asyncio.timeout(20):
                    await run
                if fake is not None:
                    await fake.close()
            assert bot.state is BotState.STOPPED
            assert bot.readiness() == "the Discord bot has stopped"


def test_the_probes_need_no_api_token(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
) -> None:
    with engine_factory(ENGINE_API_TOKEN="tok-probe-1") as engine:
        assert httpx.get(f"{engine.url}/ready").status_code == 200
        assert httpx.get(f"{engine.url}/health").status_code == 200
        assert httpx.get(f"{engine.url}/sessions").status_code == 401
