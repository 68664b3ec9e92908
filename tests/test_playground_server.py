"""The playground's server side against the real gateway and engine processes:
admission (identities per client address, sessions per address and in total,
released when nobody comes back), the origin check and the message parser's depth
limit.

Client addresses are real: the tests connect from 127.0.0.2, 127.0.0.3, ... (any
127/8 address reaches the gateway's 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
import websockets

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess

from .support.raw_websocket import RawWebSocket, frame_header
from .support.waiting import poll_until_async

pytestmark = pytest.mark.timeout(240)

ATTACKER = "127.0.0.2"


async def identity(gateway: GatewayProcess, source: str) -> httpx.Response:
    """GET / from *source* as a browser without cookies would."""
    [response] = await identities(gateway, source, 1)
    return response


async def identities(gateway: GatewayProcess, source: str, count: int) -> list[httpx.Response]:
    """*count* GETs of / from *source* one after another, each as a browser without
    cookies would: one client for all of them, its cookie jar emptied before each
    (a client per request cost 0.1-0.2 s to build, mostly its TLS context)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    answers = []
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as web:
        for _ in range(count):
            web.cookies.clear()
            answers.append(await web.get(gateway.url + "/"))
    return answers


@asynccontextmanager
async def tab(gateway: GatewayProcess, cookie: str, source: str
              ) -> AsyncIterator[websockets.ClientConnection]:
    """A WebSocket of the user *cookie*, from *source*."""
    async with websockets.connect(
        gateway.url.replace("http", "ws") + "/ws", local_addr=(source, 0),
        additional_headers={"Cookie": f"ag_user={cookie}"},
    ) as ws:
        yield ws


async def until(ws: websockets.ClientConnection, wanted: Callable[[Any], bool],
                timeout: float = 30.0) -> Any:
    """Read *ws* until a message satisfies *wanted* (binary frames are passed as
    bytes, text as parsed JSON); returns it."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            message = raw if isinstance(raw, bytes) else json.loads(raw)
            if wanted(message):
                return message


def is_error(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "error"


async def play_outcome(ws: websockets.ClientConnection, url: str) -> str:
    """Play *url*: "playing" once it is the playing track and its audio frames arrive
    (a track that replaces another keeps the old stream going until it has audio: the
    frames before then are the old track's), else the error's words."""
    await ws.send(json.dumps({"type": "play", "url": url}))
    frames = 0
    current = False

    def audio_or_error(message: Any) -> bool:
        nonlocal frames, current
        if isinstance(message, dict) and message.get("type") == "state":
            state = message["state"]
            current = (state["status"] == "playing" and state["current"] is not None
                       and state["current"]["url"] == url)
            return False
        if isinstance(message, bytes):
            frames += current
            return frames >= 10
        return is_error(message)

    outcome = await until(ws, audio_or_error)
    return "playing" if isinstance(outcome, bytes) else str(outcome["message"])


async def test_one_address_minting_identities_cannot_take_every_slot(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    env = {"GATEWAY_PLAYGROUND_MAX_SESSIONS": "6", "GATEWAY_ROOM_LINGER": "1"}
    with GatewayProcess(engine, env) as gateway:
        # 200 fresh identities from one address: ten are issued, the rest refused.
        answers = await identities(gateway, ATTACKER, 200)
        cookies = [r.cookies["ag_user"] for r in answers if "ag_user" in r.cookies]
        refused = [r for r in answers if r.status_code == 429]
        assert len(cookies) == 10 and len(refused) == 190
        assert all(r.status_code == 200 for r in answers if "ag_user" in r.cookies)
        assert "Too many new visitors from your network" in refused[0].text
        assert "Try again in about 1 minute" in refused[0].text
        assert int(refused[0].headers["retry-after"]) > 0
        assert "ag_user" not in refused[0].cookies

        # Each of the ten plays: four are let in, six refused in words.
        async with open_tabs(gateway, cookies, ATTACKER) as tabs:
            outcomes = [await play_outcome(t.ws, media_server.url("long_a.mp3")) for t in tabs]
            assert outcomes.count("playing") == 4, outcomes
            assert all("4 players are already in use from your network" in o
                       for o in outcomes if o != "playing"), outcomes
            # A refused user's socket stays usable.
            await tabs[-1].ws.send('{"type": "state"}')
            await until(tabs[-1].ws, lambda m: isinstance(m, dict) and m["type"] == "state")

            # Other people still play, up to the playground's share (6).
            honest = []
            for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
                response = await identity(gateway, source)
                assert response.status_code == 200
                honest.append(response.cookies["ag_user"])
            async with open_tabs(gateway, honest, None) as others:
                first, second, third = (t.ws for t in others)
                assert await play_outcome(first, media_server.url("long_b.mp3")) == "playing"
                assert await play_outcome(second, media_server.url("long_b.mp3")) == "playing"
                full = await play_outcome(third, media_server.url("long_b.mp3"))
                assert "the playground is full right now" in full

                # The attacker's tabs close: once the linger (1 s) is over their
                # rooms are released, their players unloaded and their engine
                # sessions stopped, and the slots are free again.
                playing = [t.user for t, o in zip(tabs, outcomes, strict=True)
                           if o == "playing"]
                await close_all(tabs)
                async with httpx.AsyncClient(base_url=engine.url) as api:
                    async def released() -> bool:
                        for user in playing:
                            answer = await api.get(f"/sessions/{user}")
                            if answer.status_code != 404:
                                return False
                        return True
                    await poll_until_async(released, timeout=20, interval=0.1)
                assert await play_outcome(third, media_server.url("long_b.mp3")) == "playing"
                for ws in (first, second, third):
                    await ws.send('{"type": "stop"}')

        async with httpx.AsyncClient() as client:
            metrics = (await client.get(gateway.url + "/metrics")).text
        for line in ("audiogate_gateway_playground_identities_issued_total 13.0",
                     'audiogate_gateway_playground_refused_total{reason="identity"} 190.0',
                     'audiogate_gateway_playground_refused_total{reason="address"} 6.0',
                     'audiogate_gateway_playground_refused_total{reason="full"} 1.0',
                     "audiogate_gateway_playground_session_cap 6.0"):
            assert line in metrics, line


@dataclass
class Tab:
    ws: websockets.ClientConnection
    user: str


@asynccontextmanager
async def open_tabs(gateway: GatewayProcess, cookies: list[str], source: str | None
                    ) -> AsyncIterator[list[Tab]]:
    """One tab per cookie, from *source* (None: each from its own address,
    127.0.0.3 onwards)."""
    opened: list[Tab] = []
    try:
        for index, cookie in enumerate(cookies):
            address = source or f"127.0.0.{3 + index}"
            ws = await websockets.connect(
                gateway.url.replace("http", "ws") + "/ws", local_addr=(address, 0),
                additional_headers={"Cookie": f"ag_user={cookie}"})
            hello = await until(ws, lambda m: isinstance(m, dict) and m["type"] == "hello")
            opened.append(Tab(ws, hello["user_id"]))
        yield opened
    finally:
        await close_all(opened)


async def close_all(tabs: list[Tab]) -> None:
    """Close every tab as a browser does, reading what still arrives until the
    server's close frame: a client that stopped reading (websockets stops once 16
    frames wait unread, and a playing tab gets 50 a second) never sees that frame
    and gives up only after its close timeout, 10 s."""

    async def close(ws: websockets.ClientConnection) -> None:
        async def drain() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        reading = asyncio.create_task(drain())
        try:
            await ws.close()
        finally:
            await reading

    await asyncio.gather(*(close(t.ws) for t in tabs), return_exceptions=True)


async def test_the_bot_always_finds_room_at_the_engine(
    engine_factory: Callable[..., AbstractContextManager[EngineProcess]],
    media_server: MediaServer,
) -> None:
    # The engine takes 4 sessions; by default the playground may hold half.
    with engine_factory(ENGINE_MAX_SESSIONS="4") as engine, GatewayProcess(engine) as gateway:
        cookies = [(await identity(gateway, f"127.0.0.{3 + i}")).cookies["ag_user"]
                   for i in range(3)]
        async with open_tabs(gateway, cookies, None) as tabs:
            assert await play_outcome(tabs[0].ws, media_server.url("long_a.mp3")) == "playing"
            assert await play_outcome(tabs[1].ws, media_server.url("long_a.mp3")) == "playing"
            full = await play_outcome(tabs[2].ws, media_server.url("long_a.mp3"))
            assert "the playground is full right now (2 people are listening)" in full
            async with httpx.AsyncClient(base_url=engine.url) as api:
                for guild in ("111111111111111111", "222222222222222222"):
                    answer = await api.post(f"/session/{guild}/play",
                                            json={"url": media_server.url("a.mp3")})
                    assert answer.status_code == 200, answer.text
                    await api.post(f"/session/{guild}/stop")
            for t in tabs:
                await t.ws.send('{"type": "stop"}')


async def _handshake(port: int, host_header: str, origin: str) -> str:
    """A WebSocket handshake with exactly these Host and Origin headers; the
    status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((
            f"GET /ws HTTP/1.1\r\nHost: {host_header}\r\nOrigin: {origin}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        await writer.drain()
        async with asyncio.timeout(10):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def test_the_origin_check_follows_configured_origins_not_the_host_header(
    engine: EngineProcess,
) -> None:
    with GatewayProcess(engine) as gateway:
        port = gateway.port
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                       f"HTTP://LOCALHOST:{port}", f"http://[::1]:{port}"):
            assert " 101 " in await _handshake(port, f"127.0.0.1:{port}", origin), origin
        for host, origin in (
            # DNS rebinding: the attacker's name, in Host and Origin alike.
            (f"evil.example:{port}", f"http://evil.example:{port}"),
            # An https page is not this http page.
            (f"127.0.0.1:{port}", f"https://127.0.0.1:{port}"),
            (f"127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"),
            (f"127.0.0.1:{port}", "null"),
        ):
            assert " 403 " in await _handshake(port, host, origin), origin
        assert "refused a WebSocket from origin 'http://evil.example:" in gateway.log()

    env = {"GATEWAY_ALLOWED_ORIGINS": "https://music.example, http://studio.example:8443"}
    with GatewayProcess(engine, env) as gateway:
        port = gateway.port
        assert " 101 " in await _handshake(port, "music.example", "https://music.example")
        assert " 101 " in await _handshake(port, "x", "http://studio.example:8443")
        for origin in ("http://music.example", f"http://127.0.0.1:{port}",
                       "https://music.example:8443"):
            assert " 403 " in await _handshake(port, "music.example", origin), origin

    bad = GatewayProcess(engine, {"GATEWAY_ALLOWED_ORIGINS": "music.example"})
    with pytest.raises(RuntimeError, match="exited early"):
        bad.start()
    assert "bad setting GATEWAY_ALLOWED_ORIGINS" in bad.log()
    assert "is not an origin like https://music.example.com" in bad.log()


async def test_a_deeply_nested_message_is_refused_and_the_connection_stays(
    engine: EngineProcess,
) -> None:
    with GatewayProcess(engine) as gateway:
        cookie = (await identity(gateway, "127.0.0.1")).cookies["ag_user"]
        async with tab(gateway, cookie, "127.0.0.1") as ws:
            await until(ws, lambda m: isinstance(m, dict) and m["type"] == "hello")
            for text in ("[" * 4000, '{"type": "play", "url": ' + "[" * 2000 + "}"):
                await ws.send(text)
                error = await until(ws, is_error)
                assert "nested too deeply" in error["message"]
            await ws.send('{"type": "state"}')
            state = await until(ws, lambda m: isinstance(m, dict) and m["type"] == "state")
            assert state["state"]["status"] == "idle"
        assert "RecursionError" not in gateway.log()


# -- messages that would fill the gateway's memory ----------------------------------------

#: What one address sends: 4 identities x 8 tabs (the most tabs an identity may have).
_ATTACK_TABS = 32
_HUGE = 16 * 1024 * 1024  # the WebSocket library's own default limit


class _Listener:
    """Another user's tab, counting the audio frames it receives."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[float] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.frames.append(time.monotonic())

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.frames if start <= at < end)


async def _attackers(gateway: GatewayProcess, cookies: list[str]) -> list[RawWebSocket]:
    return list(await asyncio.gather(*(
        RawWebSocket.open(gateway.port, cookies[i % len(cookies)], ATTACKER)
        for i in range(_ATTACK_TABS))))


async def _only_tabs(gateway: GatewayProcess, count: int) -> None:
    """Wait until the gateway has *count* tabs open."""
    async with httpx.AsyncClient() as client:
        async def settled() -> bool:
            metrics = (await client.get(gateway.url + "/metrics")).text
            return f"audiogate_gateway_websocket_connections {float(count)}" in metrics

        await poll_until_async(settled, timeout=60, interval=0.1)


async def test_huge_and_half_sent_messages_cost_the_gateway_no_memory(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    """32 tabs from one address each send a 16 MiB message, then 32 send half of
    one and stop, then 32 send half of a small one and stop: the gateway's RSS
    stays within 100 MB of where it was, the tabs are closed (at once, or at the
    message deadline), and another user's audio keeps coming at real time."""
    env = {"GATEWAY_WS_MESSAGE_TIMEOUT": "2"}
    with GatewayProcess(engine, env, log_level="INFO") as gateway:
        process = psutil.Process(gateway.pid)
        cookies = [r.cookies["ag_user"] for r in await identities(gateway, ATTACKER, 4)]
        honest = (await identity(gateway, "127.0.0.3")).cookies["ag_user"]
        async with tab(gateway, honest, "127.0.0.3") as ws:
            await until(ws, lambda m: isinstance(m, dict) and m["type"] == "hello")
            assert await play_outcome(ws, media_server.url("long_a.mp3")) == "playing"
            listener = _Listener(ws)
            await asyncio.sleep(1.0)
            baseline = process.memory_info().rss
            peak = baseline
            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, process.memory_info().rss)
                    await asyncio.sleep(0.02)

            sampler = asyncio.get_running_loop().create_task(sample())
            started = time.monotonic()
            payload = bytes(_HUGE)
            problems: list[str] = []

            async def attack(name: str, data: bytes, within: float) -> float:
                tabs = await _attackers(gateway, cookies)
                await asyncio.gather(*(t.send(data) for t in tabs))
                sent = time.monotonic()
                closed = await asyncio.gather(*(t.closed_by_server(within) for t in tabs))
                waited = time.monotonic() - sent
                for t in tabs:
                    t.close()
                if not all(closed):
                    problems.append(f"{closed.count(False)} tabs still open after {name}")
                await _only_tabs(gateway, 1)
                return waited

            try:
                await attack("16 MiB messages", frame_header(_HUGE) + payload, 5)
                await attack("half of 16 MiB", frame_header(_HUGE) + payload[:_HUGE // 2], 5)
                # Half of a small message, then nothing: closed at the deadline (2 s).
                waited = await attack("half of 4000 bytes", frame_header(4000) + b"x" * 2000,
                                      2 + 5)
                if waited < 1.5:
                    problems.append(f"small half-sent messages closed after {waited:.1f} s, "
                                    "before their deadline")
                await asyncio.sleep(1.0)
            finally:
                sampling = False
                await sampler
            ended = time.monotonic()
            growth = (peak - baseline) / 2**20
            assert growth <= 100 and not problems, f"gateway RSS grew {growth:.0f} MB; {problems}"
            # The other user heard real time throughout (50 frames a second).
            heard = listener.between(started, ended)
            expected = 50 * (ended - started)
            assert heard >= 0.85 * expected, f"{heard} frames in {ended - started:.1f} s"
            listener.task.cancel()
            await asyncio.gather(listener.task, return_exceptions=True)
            await ws.send('{"type": "state"}')
            state = await until(ws, lambda m: isinstance(m, dict) and m["type"] == "state")
            assert state["state"]["status"] == "playing"
            await ws.send('{"type": "stop"}')
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(gateway.url + "/metrics")).text
        for line in ('audiogate_gateway_websocket_messages_refused_total{reason="too_large"} 64.0',
                     'audiogate_gateway_websocket_messages_refused_total{reason="incomplete"} '
                     '32.0'):
            assert line in metrics, line


async def test_a_session_stays_charged_to_its_address_after_its_tabs_close(
    engine: EngineProcess, media_server: MediaServer
) -> None:
    """Closing tabs and minting new identities does not escape the per-address cap:
    a session is charged to the address that started it until it is released."""
    env = {"GATEWAY_PLAYGROUND_MAX_SESSIONS": "8", "GATEWAY_ROOM_LINGER": "120"}
    with GatewayProcess(engine, env) as gateway:
        cookies = [r.cookies["ag_user"] for r in await identities(gateway, ATTACKER, 10)]
        async with open_tabs(gateway, cookies[:4], ATTACKER) as first:
            for t in first:
                assert await play_outcome(t.ws, media_server.url("long_a.mp3")) == "playing"
            playing = [t.user for t in first]
        # Their tabs are closed; their sessions play on (the room lingers).
        await _only_tabs(gateway, 0)
        async with open_tabs(gateway, cookies[4:], ATTACKER) as fresh:
            outcomes = [await play_outcome(t.ws, media_server.url("long_a.mp3"))
                        for t in fresh]
            assert outcomes.count("playing") == 0, outcomes
            assert all("4 players are already in use from your network" in o
                       for o in outcomes), outcomes
            # Reopening a tab of a playing user changes nothing either.
            async with open_tabs(gateway, cookies[:1], ATTACKER):
                assert "4 players are already in use" in await play_outcome(
                    fresh[0].ws, media_server.url("long_a.mp3"))
            # Someone elsewhere is not told the playground is full.
            other = (await identity(gateway, "127.0.0.3")).cookies["ag_user"]
            async with open_tabs(gateway, [other], None) as tabs:
                assert await play_outcome(tabs[0].ws, media_server.url("long_b.mp3")) == \
                    "playing"
                await tabs[0].ws.send('{"type": "stop"}')
            # Stopping one of the four releases its charge: one more may play.
            async with open_tabs(gateway, cookies[:1], ATTACKER) as back:
                await back[0].ws.send('{"type": "stop"}')
                async with httpx.AsyncClient(base_url=engine.url) as api:
                    async def released() -> bool:
                        return (await api.get(f"/sessions/{playing[0]}")).status_code == 404
                    await poll_until_async(released, timeout=20, interval=0.1)
            assert await play_outcome(fresh[0].ws, media_server.url("long_a.mp3")) == "playing"
            for t in fresh:
                await t.ws.send('{"type": "stop"}')
        async with open_tabs(gateway, cookies[1:4], ATTACKER) as back:
            for t in back:
                await t.ws.send('{"type": "stop"}')
