"""A bare Lavalink v4 WebSocket client for the tests (the `websockets` library, not a
Lavalink client library): it connects with Lavalink's headers, keeps every message the
node sends, and lets a test wait for the ones it expects, checked with
``protocol.lavalink.parse_message`` (Lavalink's own message shapes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.lavalink import parse_message

__all__ = ["PASSWORD", "USER_ID", "LavalinkSocket"]

#: The node's password in the tests (LAVALINK_SERVER_PASSWORD).
PASSWORD = "youshallnotpass"
#: The bot's Discord user id (User-Id).
USER_ID = 170939974227541168


class LavalinkSocket:
    """One ``/v4/websocket`` connection. Use as ``async with``.

    Args:
        url: the engine's HTTP URL.
        session_id: a session to resume (``Session-Id``).
    """

    def __init__(self, url: str, *, session_id: str | None = None,
                 password: str = PASSWORD, user_id: int = USER_ID) -> None:
        self.url = url.replace("http://", "ws://") + "/v4/websocket"
        self.headers = {"Authorization": password, "User-Id": str(user_id),
                        "Client-Name": "audiogate-tests/1.0"}
        if session_id is not None:
            self.headers["Session-Id"] = session_id
        self.messages: list[dict[str, Any]] = []
        self.response_headers: dict[str, str] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        #: Set when the node closed the connection (not we).
        self.closed_by_node = asyncio.Event()
        self._closing = False

    async def __aenter__(self) -> LavalinkSocket:
        self._ws = await connect(self.url, additional_headers=self.headers, open_timeout=10)
        assert self._ws.response is not None
        self.response_headers = {k.lower(): v for k, v in self._ws.response.headers.items()}
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the WebSocket (the node sees the client leave)."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for text in self._ws:
                message = json.loads(text)
                parse_message(message)  # every message has Lavalink's shape
                self.messages.append(message)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            if not self._closing:
                self.closed_by_node.set()
            self._changed.set()

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], *, count: int = 1,
                       timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first *count* messages that *match*, once they arrived."""
        async with asyncio.timeout(timeout):
            while len(found := [m for m in self.messages if match(m)]) < count:
                self._changed.clear()
                await self._changed.wait()
        return found[:count]

    async def ready(self) -> dict[str, Any]:
        return (await self.wait_for(lambda m: m["op"] == "ready"))[0]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The ``event`` messages so far (of *kind*, e.g. ``TrackEndEvent``)."""
        return [m for m in self.messages
                if m["op"] == "event" and (kind is None or m["type"] == kind)]

    async def event(self, kind: str, *, count: int = 1, timeout: float = 15.0
                    ) -> list[dict[str, Any]]:
        return await self.wait_for(lambda m: m["op"] == "event" and m["type"] == kind,
                                   count=count, timeout=timeout)
