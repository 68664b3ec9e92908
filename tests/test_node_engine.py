"""An engine as a node: the socket framing on loopback TCP behind a token in the
hello (optionally TLS), and admission by projected cost (the complexity steps
down first, then 503 with Retry-After and an ``error`` event after the reply).

Real engine processes; the cost is made deterministic with the test aid
``session_cpu`` (``tests/support/engine_hooks``: a plain transcoding session costs a
fixed share of a core), so the steps and the refusal happen at known session counts
whatever else the machine is doing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.processes import EngineProcess, free_port
from protocol import ConsumerOrder, EventType, Hello

from .conftest import TONES
from .support.consumer import SocketConsumer
from .support.hooks import hook_env
from .support.media import decode_opus_packets, dominant_frequency
from .support.tls import make_certificates
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(120)

TOKEN = "node-secret-1"


def _hello(token: str | None) -> Hello:
    extra = {"token": token} if token is not None else {}
    return Hello("test-pool", ConsumerOrder.ANY, extra)


@pytest.fixture(scope="module")
def node(media_dir: Path) -> Iterator[EngineProcess]:
    with EngineProcess(media_dir=media_dir, allow_private=True, node_token=TOKEN,
                       log_level="INFO") as process:
        yield process


@pytest.fixture
async def api(node: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=30.0) as client:
        yield client


async def _tone_of(consumer: SocketConsumer, session_id: str) -> float:
    packets = consumer.opus_packets(session_id)
    return await asyncio.to_thread(
        lambda: dominant_frequency(decode_opus_packets(packets)[0]))


async def test_a_tcp_consumer_with_the_token_gets_the_stream(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path) -> None:
    assert node.tcp_port is not None
    async with SocketConsumer(("127.0.0.1", node.tcp_port), hello=_hello(TOKEN)) as consumer:
        await poll_until_async(
            lambda: _consumer_count(api, 1), timeout=10)
        reply = await api.post("/session/tcp-ok/play",
                               json={"url": str(media_dir / "a.mp3"), "format": "opus"})
        assert reply.status_code == 200
        await consumer.wait_event("tcp-ok", EventType.READY, timeout=20)
        await consumer.wait_packets("tcp-ok", 60, timeout=20)
        assert abs(await _tone_of(consumer, "tcp-ok") - TONES["a"]) < 10
        await api.post("/session/tcp-ok/stop")


async def _consumer_count(api: httpx.AsyncClient, count: int) -> bool:
    return bool((await api.get("/health")).json()["consumers"] == count)


@pytest.mark.parametrize(
    ("label", "first_bytes"),
    [
        ("wrong token", bytes(_hello("not-the-token"))),
        ("no token", bytes(_hello(None))),
        ("not a hello", b'{"type":"ready","session_id":"x"}\n'),
        ("silence", b""),
    ],
)
async def test_a_consumer_without_the_token_gets_not_one_byte(
        node: EngineProcess, api: httpx.AsyncClient, media_dir: Path,
        label: str, first_bytes: bytes) -> None:
    """While a session streams to a good consumer, a bad one is closed having
    read nothing at all (not a header page, not an event line)."""
    assert node.tcp_port is not None
    session = f"bad-{label.replace(' ', '-')}"
    async with SocketConsumer(("127.0.0.1", node.tcp_port), hello=_hello(TOKEN)) as good:
        await poll_until_async(lambda: _consumer_count(api, 1), timeout=10)
        await api.post(f"/session/{session}/play",
                       json={"url": str(media_dir / "long_b.mp3"), "format": "opus"})
        await good.wait_packets(session, 10, timeout=20)
        reader, writer = await asyncio.open_connection("127.0.0.1", node.tcp_port)
        try:
            if first_bytes:
                writer.write(first_bytes)
            received = b""
            async with asyncio.timeout(15):  # the hello deadline is 2 s
                while chunk := await _read_or_reset(reader):
                    received += chunk
            assert received == b"", f"{label}: the engine sent {len(received)} bytes"
        finally:
            writer.close()
        # The good consumer kept streaming meanwhile; the bad one never counted.
        before = len(good.packets(session))
        await good.wait_packets(session, before + 25, timeout=10)
        assert (await api.get("/health")).json()["consumers"] == 1
        await api.post(f"/session/{session}/stop")
    metrics = (await api.get("/metrics")).text
    reason = "hello_timeout" if label == "silence" else "unauthorized"
    assert f'audiogate_engine_consumer_disconnects_total{{reason="{reason}"}}' in metrics


async def _read_or_reset(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except ConnectionResetError:  # the engine aborts a refused consumer
        return b""


async def test_tls_node_serves_only_tls_clients_that_know_the_token(
        media_dir: Path, tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    env = {"ENGINE_TLS_CERT": str(certificates.cert), "ENGINE_TLS_KEY": str(certificates.key)}
    with EngineProcess(env, media_dir=media_dir, allow_private=True, node_token=TOKEN,
                       log_level="INFO") as node:
        assert node.tcp_port is not None and "tls://127.0.0.1:" in node.log()
        address = ("127.0.0.1", node.tcp_port)
        tls = certificates.client_context()
        async with httpx.AsyncClient(base_url=node.url, timeout=30.0) as api, \
                SocketConsumer(address, hello=_hello(TOKEN), tls=tls) as good, \
                SocketConsumer(address, hello=_hello("guess"), tls=tls) as wrong:
            await api.post("/session/tls-a/play",
                           json={"url": str(media_dir / "c.mp3"), "format": "opus"})
            await good.wait_packets("tls-a", 50, timeout=20)
            assert abs(await _tone_of(good, "tls-a") - TONES["c"]) < 10
            await asyncio.wait_for(wrong.closed.wait(), 10)
            assert wrong.bytes_read == 0
            # Plain TCP on the TLS port: the handshake fails, nothing is served.
            reader, writer = await asyncio.open_connection(*address)
            writer.write(bytes(_hello(TOKEN)))
            async with asyncio.timeout(15):
                while chunk := await _read_or_reset(reader):
                    assert not chunk.startswith(b"\x00\x00"), "audio reached a plain client"
            writer.close()


def _disconnects(metrics: str, reason: str) -> float:
    name = f'audiogate_engine_consumer_disconnects_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith(name))


async def test_tls_handshakes_that_stall_or_fail_are_counted_as_disconnects(
        media_dir: Path, tmp_path: Path) -> None:
    """A client that connects to the TLS port and never completes the handshake is
    closed at the hello deadline and counted (``hello_timeout``), as on plain TCP; a
    client that speaks plain TCP there is counted too (``tls_failed``)."""
    certificates = make_certificates(tmp_path)
    env = {"ENGINE_TLS_CERT": str(certificates.cert), "ENGINE_TLS_KEY": str(certificates.key),
           "ENGINE_HELLO_TIMEOUT": "1"}
    with EngineProcess(env, media_dir=media_dir, allow_private=True, node_token=TOKEN,
                       log_level="INFO") as node:
        assert node.tcp_port is not None
        async with httpx.AsyncClient(base_url=node.url, timeout=30.0) as api:
            silent = [await asyncio.open_connection("127.0.0.1", node.tcp_port)
                      for _ in range(3)]
            half = await asyncio.open_connection("127.0.0.1", node.tcp_port)
            half[1].write(b"\x16\x03\x01\x02\x00\x01\x00")  # a ClientHello cut short
            plain = await asyncio.open_connection("127.0.0.1", node.tcp_port)
            plain[1].write(bytes(_hello(TOKEN)))
            for reader, writer in (*silent, half, plain):
                async with asyncio.timeout(10):  # the deadline is 1 s
                    while await _read_or_reset(reader):
                        pass
                writer.close()

            async def counted() -> bool:
                metrics = (await api.get("/metrics")).text
                return (_disconnects(metrics, "hello_timeout") == 4
                        and _disconnects(metrics, "tls_failed") == 1)

            try:
                await poll_until_async(counted, timeout=10)
            except TimeoutError:
                metrics = (await api.get("/metrics")).text
                pytest.fail(f"hello_timeout {_disconnects(metrics, 'hello_timeout')}, "
                            f"tls_failed {_disconnects(metrics, 'tls_failed')}")
            assert (await api.get("/health")).json()["consumers"] == 0


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, "error: bad settings: ENGINE_TCP_PORT is set but neither ENGINE_NODE_TOKEN nor "
             "ENGINE_API_TOKEN is: a TCP socket needs a token"),
        ({"ENGINE_NODE_TOKEN": "t", "ENGINE_TLS_CERT": "/no/cert.pem"},
         "error: bad settings: ENGINE_TLS_CERT and ENGINE_TLS_KEY go together"),
        ({"ENGINE_NODE_TOKEN": "t", "ENGINE_TLS_CERT": "/no/cert.pem",
          "ENGINE_TLS_KEY": "/no/key.pem"},
         "error: the TLS file /no/cert.pem does not exist; set ENGINE_TLS_CERT"),
        ({"ENGINE_NODE_TOKEN": "t", "ENGINE_TLS_CERT": "/etc/hostname",
          "ENGINE_TLS_KEY": "/etc/hostname"},
         "error: the TLS files are not a PEM certificate (chain) and its matching private key"),
    ],
)
def test_unusable_tcp_settings_are_one_line_and_78(env: dict[str, str], line: str,
                                                   tmp_path: Path) -> None:
    socket_path = tmp_path / "engine.sock"
    result = subprocess.run(
        [sys.executable, "-m", "audio_engine"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "GO_API_PORT": str(free_port()), "ENGINE_TCP_PORT": str(free_port()),
             "SOCKET_PATH": str(socket_path), **env})
    assert result.returncode == 78
    assert result.stderr.startswith(line), result.stderr
    assert not socket_path.exists()


# -- admission by load ---------------------------------------------------------------


def _steps(metrics: str, direction: str) -> float:
    """``audiogate_engine_complexity_steps_total`` for *direction*."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (sample.name == "audiogate_engine_complexity_steps_total"
                    and sample.labels == {"direction": direction}):
                return float(sample.value)
    return 0.0


async def test_admission_steps_the_complexity_down_then_refuses(
        media_dir: Path) -> None:
    """Budget 1 core, 0.1 core per transcoding session at complexity 10 (0.0925 at 8,
    0.081 at 5), at most 75 %: seven sessions at 10; the eighth steps it to 8 (74 %),
    the ninth to 5 (73 %); the tenth would make 81 %: 503 with Retry-After, nothing
    started, and an ``error`` event for it after the reply. Replacing a live session
    adds no load; once sessions stop, a play is taken again and the complexity goes
    back up."""
    env = {"ENGINE_CPU_BUDGET": "1", "ENGINE_MAX_LOAD": "0.75",
           **hook_env(session_cpu=0.1, restore_after=1.0)}
    with EngineProcess(env, media_dir=media_dir, allow_private=True, log_level="INFO") as node:
        async with httpx.AsyncClient(base_url=node.url, timeout=30.0) as api, \
                SocketConsumer(node.socket_path) as listener:
            body = {"url": str(media_dir / "long_a.mp3"), "format": "opus"}

            async def complexity() -> int:
                return int((await api.get("/stats")).json()["headroom"]["opusComplexity"])

            for index in range(7):
                reply = await api.post(f"/session/load-{index}/play", json=body)
                assert reply.status_code == 200, reply.text
            assert await complexity() == 10
            assert (await api.post("/session/load-7/play", json=body)).status_code == 200
            assert await complexity() == 8
            assert (await api.post("/session/load-8/play", json=body)).status_code == 200
            assert await complexity() == 5
            stats = (await api.get("/stats")).json()
            assert stats["headroom"]["admitting"] is False
            refused = await api.post("/session/load-9/play", json=body)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "10"
            message = refused.json()["message"]
            assert message.startswith("the engine is at capacity")
            # The Node front reads no status: the event tells it, after the reply.
            error = await listener.wait_event("load-9", EventType.ERROR)
            assert error.message == message and error.extra["reason"] == "refused"
            assert error.extra["play"] == int(refused.headers["X-Play-Id"])
            assert (await api.get("/session/load-9/status")).status_code == 404
            replaced = await api.post("/session/load-0/play", json=body)
            assert replaced.status_code == 200
            await api.post("/session/load-1/stop")
            again = await api.post("/session/load-9/play", json=body)
            assert again.status_code == 200
            metrics = (await api.get("/metrics")).text
            assert 'audiogate_engine_plays_refused_total{reason="load"} 1.0' in metrics
            # 10 -> 8 -> 5; a third step down is the governor's too: between the stop
            # and the next play it may step back up (the load fell for 1 s on a slow
            # host) and down again.
            assert _steps(metrics, "down") >= 2
            for index in range(2, 10):
                await api.post(f"/session/load-{index}/stop")

            # Room again (one session left): back to 8, then 10, each after the
            # load stayed low for a while (1 s here).
            async def restored() -> bool:
                return await complexity() == 10

            await poll_until_async(restored, timeout=15)
            metrics = (await api.get("/metrics")).text
            assert _steps(metrics, "up") >= 2  # 5 -> 8 -> 10, a level at a time
            assert "audiogate_engine_opus_complexity 10.0" in metrics
            await api.post("/session/load-0/stop")


async def test_stats_carry_the_penalty_inputs(api: httpx.AsyncClient) -> None:
    stats = (await api.get("/stats")).json()
    assert {"players", "playingPlayers", "cpu", "frameStats", "headroom"} <= stats.keys()
    room = stats["headroom"]
    assert {"load", "sessionCost", "admitting", "tickLatenessMs", "poolLagMs", "nulled",
            "deficit", "cpuBudget", "maxLoad"} <= room.keys()
    assert room["admitting"] is True
