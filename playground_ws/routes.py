"""The playground's HTTP and WebSocket endpoints, mounted on the gateway's app.

``GET /`` serves the page and gives a first-time browser its identity cookie;
``/ws`` is the WebSocket (protocol in docs/playground.md); ``/static`` holds the
page's script, styles and AudioWorklet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.engine_client import EngineError
from gateway.player import CommandError, Track
from gateway.runtime import Gateway
from playground_ws.identity import COOKIE_MAX_AGE, COOKIE_NAME, CookieIdentity, Identity
from playground_ws.messages import (
    Add,
    ClientMessage,
    Jump,
    Play,
    Remove,
    Search,
    Seek,
    Simple,
    Volume,
    parse_client_message,
)
from playground_ws.ratelimit import RateLimiter
from playground_ws.rooms import Connection, Room, Rooms

__all__ = ["HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT", "mount_playground"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Seconds between the server's pings, and of silence after which a tab is gone.
HEARTBEAT_INTERVAL = 15.0
HEARTBEAT_TIMEOUT = 45.0
#: Close codes (4000-4999 are the application's).
CLOSE_BAD_IDENTITY = 4401
CLOSE_BAD_ORIGIN = 4403
CLOSE_SILENT = 4408


def _check_url(url: str) -> str | None:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme in ("http", "https"):
        return None if parsed.hostname else "the URL has no host"
    if not parsed.scheme and url.startswith("/"):
        return None
    return "only http(s) links (or files in the server's media folder) can be played"


def _origin_allowed(websocket: WebSocket, allowed: set[str]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (tests, tools): cookies still decide who it is
    host = websocket.headers.get("host", "")
    netloc = urllib.parse.urlsplit(origin).netloc
    return netloc == host or origin in allowed


class _Playground:
    def __init__(self, gateway: Gateway, identity: Identity, demo_tracks: dict[str, Path],
                 allowed_origins: set[str]) -> None:
        self.gateway = gateway
        self.identity = identity
        self.demo_tracks = demo_tracks
        self.allowed_origins = allowed_origins
        self.rooms = Rooms(gateway, linger=gateway.settings.room_linger)
        self.limits = RateLimiter()
        self._names = itertools.count(1)
        gateway.socket.add_state_listener(self._engine_state)
        gateway.add_housekeeping(self.limits.sweep)

    def _engine_state(self, connected: bool) -> None:
        """Tell every tab when the engine goes away and comes back."""
        self.rooms.broadcast_all({"type": "engine", "connected": connected})

    # -- the page -------------------------------------------------------------------

    def page(self, request: Request) -> HTMLResponse:
        html = (STATIC_DIR / "index.html").read_text()
        demo = self.demo_tracks.get("opus")
        html = html.replace("{{DEMO_URL}}", str(demo) if demo else "")
        response = HTMLResponse(html)
        if self.identity.user_from_cookie(request.cookies.get(COOKIE_NAME)) is None:
            _, cookie = self.identity.new_user()
            response.set_cookie(COOKIE_NAME, cookie, max_age=COOKIE_MAX_AGE, httponly=True,
                                samesite="strict")
        return response

    # -- the socket -----------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        if not _origin_allowed(websocket, self.allowed_origins):
            await websocket.close(code=CLOSE_BAD_ORIGIN, reason="origin not allowed")
            return
        user = self.identity.user_from_cookie(websocket.cookies.get(COOKIE_NAME))
        await websocket.accept()
        if user is None:
            await websocket.send_text(json.dumps({
                "type": "error",
                "message": "your identity cookie is missing or invalid; reload the page",
            }))
            await websocket.close(code=CLOSE_BAD_IDENTITY, reason="invalid identity")
            return
        room = self.rooms.get(user)
        # The first state a tab sees is the user's stored queue, not an empty one.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await room.player.loaded()
        connection = Connection(websocket, f"t{next(self._names)}")
        connection.last_seen = asyncio.get_running_loop().time()
        room.join(connection)
        connection.send_json({**room.state_message(), "type": "hello",
                              "engine_connected": self.gateway.socket.connected.is_set()})
        writer = asyncio.get_running_loop().create_task(connection.writer())
        try:
            await self._receive(websocket, room, connection)
        finally:
            room.leave(connection)
            self.rooms.connection_closed(connection)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if websocket.application_state is WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close()

    async def _receive(self, websocket: WebSocket, room: Room, connection: Connection) -> None:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_INTERVAL):
                    message = await websocket.receive()
            except TimeoutError:
                if asyncio.get_running_loop().time() - connection.last_seen > HEARTBEAT_TIMEOUT:
                    await websocket.close(code=CLOSE_SILENT, reason="no heartbeat")
                    return
                connection.send_json({"type": "ping"})
                continue
            connection.last_seen = asyncio.get_running_loop().time()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                connection.send_json({"type": "error", "message": "binary messages are not "
                                      "accepted; send JSON text"})
                continue
            try:
                parsed = parse_client_message(text)
            except ValueError as exc:
                connection.send_json({"type": "error", "message": str(exc)})
                continue
            if parsed.type != "pong":
                refusal = self.limits.allow(room.user_id, parsed.type,
                                            asyncio.get_running_loop().time())
                if refusal is not None:
                    connection.send_json({"type": "error", "message": refusal})
                    continue
            try:
                await self._dispatch(parsed, room, connection)
            except CommandError as exc:
                connection.send_json({"type": "error", "message": str(exc)})
            except EngineError as exc:
                connection.send_json({"type": "error", "message": f"the engine said: {exc}"})

    async def _track(self, url: str) -> Track:
        url = url.strip()
        problem = _check_url(url)
        if problem is not None:
            raise CommandError(problem)
        title = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(url).path).stem)
        duration: float | None = None
        try:
            async with asyncio.timeout(5.0):
                metadata = await self.gateway.engine.metadata(url)
            title = metadata.title or title
            duration = metadata.duration or None
        except (EngineError, TimeoutError):
            pass  # the play itself will say what is wrong, if anything
        return Track(url=url, title=title, duration=duration)

    async def _dispatch(self, message: ClientMessage, room: Room, connection: Connection) -> None:
        player = room.player

        async def run(apply: Any) -> Any:
            return await player.command(apply)

        match message:
            case Play(url=url):
                track = await self._track(url)
                await run(lambda core, now: core.play_now(track, now))
            case Add(url=url):
                track = await self._track(url)
                position = await run(lambda core, now: core.enqueue(track, now))
                connection.send_json({"type": "queued", "position": position,
                                      "title": track.label})
            case Seek(seconds=seconds):
                await run(lambda core, now: core.seek(seconds, now))
            case Volume(volume=volume):
                await run(lambda core, now: core.set_volume(volume))
            case Remove(position=position):
                await run(lambda core, now: core.remove(position))
            case Jump(position=position):
                await run(lambda core, now: core.jump(position, now))
            case Search(query=query):
                result = await self.gateway.engine.search(query)
                connection.send_json({
                    "type": "search_results", "query": query,
                    "results": [r.model_dump() for r in result.results],
                })
            case Simple(type="pong"):
                pass
            case Simple(type="state"):
                connection.send_json(room.state_message())
            case Simple(type=kind):
                await run(_SIMPLE[kind])


_SIMPLE: dict[str, Any] = {
    "stop": lambda core, now: core.stop(),
    "pause": lambda core, now: core.pause(now),
    "resume": lambda core, now: core.resume(now),
    "skip": lambda core, now: core.skip(now),
    "previous": lambda core, now: core.previous(now),
    "clear": lambda core, now: core.clear(),
}


def mount_playground(
    app: FastAPI,
    gateway: Gateway,
    *,
    demo_tracks: dict[str, Path],
    identity: Identity | None = None,
    allowed_origins: set[str] | None = None,
) -> None:
    """Add the playground's routes to *app*."""
    if identity is None:
        from playground_ws.identity import load_or_create_secret

        settings = gateway.settings
        secret = (settings.cookie_secret.get_secret_value() if settings.cookie_secret
                  else load_or_create_secret(settings.data_dir / "cookie_secret"))
        identity = CookieIdentity(secret)
    playground = _Playground(gateway, identity, demo_tracks, allowed_origins or set())
    app.state.playground = playground

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return playground.page(request)

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        try:
            await playground.serve(websocket)
        except WebSocketDisconnect:
            pass

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

