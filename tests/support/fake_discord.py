"""A stand-in for Discord's servers on 127.0.0.1: the REST calls a bot makes to
log in and sync its commands, and a gateway WebSocket that says hello and ready.

Only what discord.py's real ``Client.start`` needs, so the bot's login, retry
and readiness run for real without leaving this machine. ``pointed_at`` aims
discord.py's REST base and gateway URL at it for the duration of a test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

__all__ = ["FakeDiscord", "pointed_at"]

_USER = {"id": "4242", "username": "audiogate", "discriminator": "0", "global_name": None,
         "avatar": None, "bot": True}
_APPLICATION = {"id": "777", "name": "audiogate", "description": "", "icon": None,
                "bot_public": True, "bot_require_code_grant": False, "owner": _USER,
                "verify_key": "00", "flags": 0}


def _json(value: object, status: int = 200) -> web.Response:
    # discord.py parses a body only when its Content-Type is exactly this.
    return web.Response(body=json.dumps(value).encode(), status=status,
                        headers={"Content-Type": "application/json"})


class FakeDiscord:
    """Serves on *port* (0: any). ``refuse_token`` answers the login with 401."""

    def __init__(self, *, refuse_token: bool = False) -> None:
        self.refuse_token = refuse_token
        self.logins = 0
        self.identifies = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_put("/api/v10/applications/{app}/commands", self._commands)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands",
                           self._commands)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = port or int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _me(self, request: web.Request) -> web.Response:
        self.logins += 1
        if self.refuse_token:
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return _json(_USER)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(_APPLICATION)

    async def _commands(self, request: web.Request) -> web.Response:
        return _json([])

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Text frames: discord.py decompresses only binary ones.
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}}))
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            payload: dict[str, Any] = json.loads(message.data)
            if payload.get("op") == 2:  # IDENTIFY
                self.identifies += 1
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": {
                    "v": 10, "user": _USER, "guilds": [], "session_id": "fake-session",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": _APPLICATION["id"], "flags": 0},
                }}))
            elif payload.get("op") == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
        return ws


@contextmanager
def pointed_at(port: int) -> Iterator[None]:
    """Send discord.py's REST calls and gateway connection to 127.0.0.1:*port*."""
    rest = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")
    try:
        yield
    finally:
        discord.http.Route.BASE = rest
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
