"""Both HTTP servers close connections that do not deliver a whole request in
time: half-sent request lines, dripped headers, half-sent bodies, and a crowd of
1500 of them, over raw sockets against the real processes. Complete requests
(and WebSockets) are not affected."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest
import websockets

from loadtest.processes import EngineProcess, GatewayProcess

pytestmark = pytest.mark.timeout(240)

#: The deadline the processes under test get (seconds), and how late a close
#: may come on a loaded 2-core machine before the test calls it held.
DEADLINE = 2.0
SLACK = 15.0
CROWD = 1500


@pytest.fixture(scope="module")
def deadline_engine(media_dir: object) -> Iterator[EngineProcess]:
    with EngineProcess({"ENGINE_HTTP_REQUEST_TIMEOUT": str(DEADLINE),
                        "ENGINE_LOG_LEVEL": "INFO"}, log_level="INFO") as engine:
        yield engine


@pytest.fixture(scope="module")
def deadline_gateway(deadline_engine: EngineProcess) -> Iterator[GatewayProcess]:
    with GatewayProcess(deadline_engine, {"GATEWAY_HTTP_REQUEST_TIMEOUT": str(DEADLINE)},
                        log_level="INFO") as gateway:
        yield gateway


def _closed_count(server: EngineProcess | GatewayProcess) -> float:
    """The server's count of connections closed for an incomplete request."""
    kind = "engine" if isinstance(server, EngineProcess) else "gateway"
    name = f"audiogate_{kind}_http_incomplete_requests_closed_total "
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.split()[1])
    raise AssertionError(f"no {name.strip()} in /metrics")


@pytest.fixture(params=["engine", "gateway"])
def server(request: pytest.FixtureRequest) -> EngineProcess | GatewayProcess:
    fixture = "deadline_engine" if request.param == "engine" else "deadline_gateway"
    process: EngineProcess | GatewayProcess = request.getfixturevalue(fixture)
    return process


def _enough_descriptors(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 512
    if soft < wanted:
        assert hard == resource.RLIM_INFINITY or hard >= wanted, \
            f"this test needs {wanted} open files; the hard limit is {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from *started* until the server closed the connection."""
    async with asyncio.timeout(DEADLINE + SLACK):
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
    return time.monotonic() - started


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_a_crowd_of_half_sent_requests_is_closed_and_others_are_served(
    server: EngineProcess | GatewayProcess,
) -> None:
    _enough_descriptors(CROWD)
    closed_before = await asyncio.to_thread(_closed_count, server)
    connections = []
    for start in range(0, CROWD, 250):  # in bursts, as a flood arrives
        opened = time.monotonic()
        batch = await asyncio.gather(*(_connect(server.port)
                                       for _ in range(start, min(CROWD, start + 250))))
        for reader, writer in batch:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            connections.append((reader, writer, opened))
    # While all of them are held, a complete request is still answered.
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/health")).status_code == 200
    waits = await asyncio.gather(*(_closed_after(r, opened) for r, _, opened in connections))
    for _, writer, _ in connections:
        writer.close()
    assert len(waits) == CROWD
    assert max(waits) < DEADLINE + SLACK
    assert min(waits) >= DEADLINE - 0.5  # not closed before their time
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/health")).status_code == 200
    assert await asyncio.to_thread(_closed_count, server) - closed_before == CROWD


async def test_dripping_bytes_does_not_extend_the_deadline(
    server: EngineProcess | GatewayProcess,
) -> None:
    reader, writer = await _connect(server.port)
    started = time.monotonic()
    closed = asyncio.ensure_future(_closed_after(reader, started))
    for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n":
        if closed.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.2)
    waited = await closed
    assert DEADLINE - 0.5 <= waited < DEADLINE + SLACK
    writer.close()


async def test_a_half_sent_body_is_closed(deadline_engine: EngineProcess) -> None:
    reader, writer = await _connect(deadline_engine.port)
    writer.write(b"POST /session/body-1/play HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"url\": ")
    waited = await _closed_after(reader, time.monotonic())
    assert DEADLINE - 0.5 <= waited < DEADLINE + SLACK
    writer.close()
    async with httpx.AsyncClient(base_url=deadline_engine.url) as client:
        status = await client.get("/session/body-1/status")
    assert status.status_code == 404  # the half request never became a play


async def test_a_keep_alive_connection_gets_a_new_deadline_per_request(
    deadline_engine: EngineProcess,
) -> None:
    reader, writer = await _connect(deadline_engine.port)
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for _ in range(3):  # complete requests, each well inside its own deadline
        writer.write(request[:20])
        await asyncio.sleep(DEADLINE / 4)
        writer.write(request[20:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE + SLACK)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
    writer.write(request[:20])  # then half of one: closed at its deadline
    waited = await _closed_after(reader, time.monotonic())
    assert DEADLINE - 0.5 <= waited < DEADLINE + SLACK
    writer.close()


async def test_a_websocket_outlives_the_request_deadline(
    deadline_gateway: GatewayProcess,
) -> None:
    async with httpx.AsyncClient(base_url=deadline_gateway.url) as web:
        cookie = (await web.get("/")).cookies["ag_user"]
    url = deadline_gateway.url.replace("http", "ws") + "/ws"
    async with websockets.connect(url, additional_headers={"Cookie": f"ag_user={cookie}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await asyncio.sleep(DEADLINE * 2)
        await ws.send('{"type": "state"}')
        async with asyncio.timeout(10):
            while json.loads(await ws.recv())["type"] != "state":
                pass


def test_the_deadline_is_a_setting(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
) -> None:
    # 4 s: still open after 3 s, past the 2 s the other servers here are given.
    with engine_factory(ENGINE_HTTP_REQUEST_TIMEOUT="4") as engine:
        with socket.create_connection(("127.0.0.1", engine.port)) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\n")
            raw.settimeout(3.0)
            with pytest.raises(TimeoutError):  # still open after 3 s of 4
                raw.recv(1)
            raw.settimeout(DEADLINE + SLACK)
            assert raw.recv(1) == b""


def test_a_message_in_progress_is_seen_at_every_byte_of_it() -> None:
    """``message_in_progress`` against websockets' own parser: fed one byte at a
    time, it holds inside every frame and fragmented message and nowhere else
    (a websockets upgrade that changed its parser would show here)."""
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    from audiogate.websocket_limits import message_in_progress

    server = ServerProtocol(max_size=1 << 20)
    server.receive_data(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    [request] = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    assert not message_in_progress(server)

    def wire(frame: Frame) -> bytes:
        return frame.serialize(mask=True)

    messages = [
        [wire(Frame(Opcode.TEXT, b"hello"))],
        [wire(Frame(Opcode.PING, b""))],
        [wire(Frame(Opcode.BINARY, b"b" * 300))],  # a 16-bit length
        [wire(Frame(Opcode.TEXT, b"x" * 70_000))],  # a 64-bit length
        # Fragmented, with a ping between its fragments: one message.
        [wire(Frame(Opcode.TEXT, b"part one ", fin=False)), wire(Frame(Opcode.PING, b"p")),
         wire(Frame(Opcode.CONT, b"part two"))],
    ]
    for parts in messages:
        data = b"".join(parts)
        for index in range(len(data)):
            server.receive_data(data[index:index + 1])
            last = index == len(data) - 1
            assert message_in_progress(server) is not last, (parts, index)
        assert server.events_received()
