"""LRCLIB's two read endpoints, played on 127.0.0.1 (the real one is not reached from
the tests): ``/api/get`` and ``/api/search`` over a list of records, as its documentation
describes them, recording every request; it can also be slow, fail or answer nonsense."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["LrclibStandIn", "record"]


def record(track: str, artist: str, duration: float, *, synced: str = "", plain: str = "",
           instrumental: bool = False, album: str = "") -> dict[str, Any]:
    """One LRCLIB record (its JSON keys)."""
    return {"id": abs(hash((track, artist, duration))) % 10_000_000, "name": track,
            "trackName": track, "artistName": artist, "albumName": album,
            "duration": duration, "instrumental": instrumental,
            "plainLyrics": plain or None, "syncedLyrics": synced or None}


@dataclass
class LrclibStandIn:
    """The stand-in server. Set ``status`` to answer every request with that HTTP
    status, ``delay`` to wait that long first, ``body`` to answer those raw bytes."""

    records: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    body: bytes | None = None
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: The ``User-Agent`` of every request.
    agents: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    #: Set at close: slow answers stop waiting, so the server stops at once.
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/get", self._get)
        app.router.add_get("/api/search", self._search)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> LrclibStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    async def _prelude(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.path, dict(request.query)))
        self.agents.append(request.headers.get("User-Agent", ""))
        if self.delay:
            try:
                async with asyncio.timeout(self.delay):
                    await self._closing.wait()
            except TimeoutError:
                pass
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        if self.status != 200:
            return web.json_response({"code": self.status, "name": "Oops",
                                      "message": "stand-in failure"}, status=self.status)
        return None

    async def _get(self, request: web.Request) -> web.Response:
        early = await self._prelude(request)
        if early is not None:
            return early
        track = request.query.get("track_name", "").casefold()
        artist = request.query.get("artist_name", "").casefold()
        wanted = request.query.get("duration")
        for item in self.records:
            if (item["trackName"].casefold() == track and item["artistName"].casefold() == artist
                    and (wanted is None or abs(float(wanted) - item["duration"]) <= 2)):
                return web.json_response(item)
        return web.json_response({"code": 404, "name": "TrackNotFound",
                                  "message": "Failed to find specified track"}, status=404)

    async def _search(self, request: web.Request) -> web.Response:
        early = await self._prelude(request)
        if early is not None:
            return early
        words = request.query.get("q", "").casefold().split()
        found = [item for item in self.records
                 if words and all(w in f"{item['artistName']} {item['trackName']}".casefold()
                                  for w in words)]
        return web.Response(text=json.dumps(found[:20]), content_type="application/json")
