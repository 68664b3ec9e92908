"""Nobody let in: the API token, the URL policy, the socket's mode, the playground's
origin check and rate limits, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess, GatewayProcess
from protocol import EventType

from .support.consumer import SocketConsumer

pytestmark = pytest.mark.timeout(180)

TOKEN = "tok-3f9a1c77e2"


@pytest.fixture(scope="module")
def token_engine(media_dir: Path) -> Iterator[EngineProcess]:
    """One engine behind the API token for the module's token tests (each uses its
    own session ids; its log, read for the token, holds all of theirs)."""
    with EngineProcess({"ENGINE_API_TOKEN": TOKEN}, media_dir=media_dir,
                       allow_private=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def strict_engine(media_dir: Path) -> Iterator[EngineProcess]:
    """An engine with the default URL policy (no loopback or private hosts; local
    files from the media directory only) and a socket mode of its own."""
    with EngineProcess({"ENGINE_SOCKET_MODE": "600"}, media_dir=media_dir) as engine:
        yield engine


def test_the_api_token_guards_everything_but_health(
    token_engine: EngineProcess, media_server: MediaServer,
) -> None:
    engine = token_engine
    with httpx.Client(base_url=engine.url) as api:
        assert api.get("/health").status_code == 200
        for method, path in (("POST", "/session/s1/play"), ("POST", "/session/s1/stop"),
                             ("GET", "/session/s1/status"), ("GET", "/sessions"),
                             ("GET", "/metrics"), ("GET", "/openapi.json")):
            refused = api.request(method, path, json={"url": media_server.url("a.mp3")})
            assert refused.status_code == 401, path
            assert refused.json()["message"] == "unauthorized: a valid bearer token is required"
            assert refused.headers["access-control-allow-origin"] == "*"
        wrong = api.post("/session/s1/play", json={"url": "http://x/a.mp3"},
                         headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = api.post("/session/s1/play", json={"url": media_server.url("a.mp3")},
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200
        preflight = api.options("/session/s1/play")
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-headers"] == "Content-Type, Authorization"
        api.post("/session/s1/stop", headers={"Authorization": f"Bearer {TOKEN}"})
        assert TOKEN not in engine.log()


async def test_a_gateway_with_the_token_plays_and_never_logs_secrets(
    token_engine: EngineProcess, media_server: MediaServer
) -> None:
    discord_token = "MTIz.fake-discord-token.zzz"
    engine = token_engine
    gateway = GatewayProcess(engine, {"ENGINE_API_TOKEN": TOKEN,
                                      "DISCORD_TOKEN": discord_token}).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as web:
            cookie = (await web.get("/")).cookies["ag_user"]
        async with websockets.connect(gateway.url.replace("http", "ws") + "/ws",
                                      additional_headers={"Cookie": f"ag_user={cookie}"}) as ws:
            await ws.send(json.dumps({"type": "play", "url": media_server.url("a.mp3")}))
            frames = 0
            async with asyncio.timeout(30):
                while frames < 20:
                    if isinstance(await ws.recv(), bytes):
                        frames += 1
            await ws.send('{"type": "stop"}')
        await asyncio.sleep(1.0)  # the bot's (offline) login attempt has been logged
    finally:
        gateway.terminate()
    for log in (gateway.log(), engine.log()):
        assert TOKEN not in log
        assert discord_token not in log
    assert "Discord bot starting" in gateway.log()


async def test_private_and_local_addresses_and_outside_files_are_refused(
    strict_engine: EngineProcess, media_server: MediaServer, media_dir: Path
) -> None:
    # The default policy: no loopback/private hosts; local files from the media dir only.
    engine = strict_engine
    async with httpx.AsyncClient(base_url=engine.url) as api, \
            SocketConsumer(engine.socket_path) as consumer:
        cases = {
            "p-loop": (media_server.url("a.mp3"), "127.0.0.1 is not allowed"),
            "p-name": (media_server.url("a.mp3").replace("127.0.0.1", "localhost"),
                       "localhost resolves to"),
            "p-private": ("http://10.1.2.3/a.mp3", "10.1.2.3 is not allowed"),
            "p-v6": ("http://[::1]:9/a.mp3", "::1 is not allowed"),
            "p-link": ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            "p-outside": ("/etc/hostname", "local files can only be played from"),
            "p-escape": (f"{media_dir}/../../etc/hostname",
                         "local files can only be played from"),
        }
        for sid, (url, _) in cases.items():
            response = await api.post(f"/session/{sid}/play", json={"url": url})
            assert response.status_code == 200
        for sid, (_, words) in cases.items():
            event = await consumer.wait_event(sid, EventType.ERROR)
            assert words in event.message, (sid, event.message)
        await api.post("/session/p-ok/play", json={"url": str(media_dir / "a.mp3")})
        await consumer.wait_event("p-ok", EventType.READY)
        await api.post("/session/p-ok/stop")
        metadata = await api.get("/metadata", params={"url": media_server.url("a.mp3")})
        # A URL the engine cannot handle is a 400, as the Go engine answers it.
        assert metadata.status_code == 400 and "not allowed" in metadata.json()["error"]


def test_the_socket_file_mode_is_restrictive_and_configurable(
    engine: EngineProcess, strict_engine: EngineProcess,
) -> None:
    # The shared engine runs with the default mode, the strict one with its own.
    assert "ENGINE_SOCKET_MODE" not in engine.env
    assert stat.S_IMODE(os.stat(engine.socket_path).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(strict_engine.socket_path).st_mode) == 0o600


async def test_the_playground_checks_the_origin_and_limits_each_user(
    engine: EngineProcess,
) -> None:
    with GatewayProcess(engine) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as web:
            cookie = (await web.get("/")).cookies["ag_user"]
        url = gateway.url.replace("http", "ws") + "/ws"
        headers = {"Cookie": f"ag_user={cookie}"}
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=headers,
                                          origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(url, additional_headers=headers,
                                      origin=gateway.url) as ws:
            for _ in range(40):
                await ws.send('{"type": "state"}')
            for _ in range(8):
                await ws.send('{"type": "search", "query": "anything"}')
            errors: list[str] = []
            async with asyncio.timeout(30):
                while not any("search per second" in e for e in errors) or \
                        not any("actions per second" in e for e in errors):
                    message = await ws.recv()
                    if isinstance(message, str):
                        data = json.loads(message)
                        if data["type"] == "error":
                            errors.append(data["message"])
            assert any(e.startswith("slow down") for e in errors)


# -- bearer tokens: the scheme in any case, the token exactly ---------------------------------

def test_the_bearer_scheme_is_case_insensitive_and_the_token_exact() -> None:
    from protocol.bearer import bearer_matches

    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}",
                   f"Bearer   {TOKEN}", f"  bEaReR {TOKEN}  ".encode()):
        assert bearer_matches(header, TOKEN), header
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN.upper()}",
                   f"Bearer {TOKEN}x", f"Bearer{TOKEN}", "Bearer ", f"Token {TOKEN}"):
        assert not bearer_matches(header, TOKEN), header
    assert not bearer_matches("Bearer ", "")


def test_the_engine_api_takes_the_bearer_scheme_in_any_case(
    token_engine: EngineProcess,
) -> None:
    with httpx.Client(base_url=token_engine.url) as api:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = api.get("/sessions", headers={"Authorization": f"{scheme} {TOKEN}"})
            assert answer.status_code == 200, (scheme, answer.text)
        assert api.get("/sessions", headers={"Authorization": f"bearer {TOKEN}x"}
                       ).status_code == 401


async def test_the_gateway_admin_calls_say_why_there_is_nothing_to_administer(
    engine: EngineProcess,
) -> None:
    from gateway.app import create_app

    from .support.gateway_harness import running_gateway, settings_for

    async def ask(settings: object, headers: dict[str, str]) -> list[httpx.Response]:
        async with running_gateway(settings) as gateway:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=create_app(gateway))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as admin:
                return [await admin.get("/admin/nodes", headers=headers),
                        await admin.post("/admin/nodes/a/drain", headers=headers)]

    # No admin token: the surface is off, and says how to turn it on.
    for answer in await ask(settings_for(engine), {}):
        assert answer.status_code == 404
        assert answer.json()["error"] == ("the admin calls are off: set GATEWAY_ADMIN_TOKEN "
                                          "to use them")
    # A token but one engine (no GATEWAY_NODES): the token is still checked (any case
    # of the scheme), then the answer says there is no pool.
    settings = settings_for(engine, admin_token="admin-secret")
    for answer in await ask(settings, {"Authorization": "bearer wrong"}):
        assert answer.status_code == 401
    for answer in await ask(settings, {"Authorization": "bearer admin-secret"}):
        assert answer.status_code == 404
        assert "GATEWAY_NODES" in answer.json()["error"], answer.text
