"""An engine API answered in-process (httpx ``MockTransport``), for the failures a
real engine cannot be made to produce on demand: a 500 from ``stop``, a play
whose connection is cut after the engine acted on it, a bug's exception.

It keeps the sessions it was told about, so status questions get true answers,
and a per-route script of faults: ``engine.fail("pause", 500, 500)`` makes the
next two pauses answer 500.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.engine_client import EngineClient

__all__ = ["ScriptedEngine"]

_ROUTE = re.compile(r"^/session/(?P<id>[^/]+)/(?P<op>play|stop|pause|resume|status|volume|seek"
                    r"|filters|crossfade|next|next/cancel)$")


@dataclass
class _Session:
    url: str
    play_id: int
    status: str = "streaming"
    volume: float = 1.0
    start_at: float = 0.0
    filters: dict[str, Any] = field(default_factory=dict)
    crossfade: float = 0.0
    #: The next track held: (play id, url).
    next: tuple[int, str] | None = None
    #: A "play now" track being opened: (play id, url).
    replacing: tuple[int, str] | None = None


@dataclass
class ScriptedEngine:
    """The engine's HTTP API in memory. ``features`` empty = a Go engine."""

    features: list[str] = field(default_factory=list)
    sessions: dict[str, _Session] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: Unreachable (connection refused) while True.
    down: bool = False
    _faults: dict[str, deque[int | str]] = field(default_factory=lambda: defaultdict(deque))
    _plays: int = 0

    def fail(self, op: str, *outcomes: int | str) -> None:
        """Script the next calls of *op*: an HTTP status, ``"cut"`` (the engine
        acts, then the connection breaks before the answer), ``"lost"`` (the
        connection breaks before the engine sees the request) or ``"raise"`` (an
        unexpected exception)."""
        self._faults[op].extend(outcomes)

    def calls(self, op: str) -> list[dict[str, Any]]:
        """Bodies of the calls of *op* that reached the engine, in order."""
        return [body for method, path, body in self.requests if path.endswith("/" + op)]

    def questions(self) -> int:
        """How often the engine was asked about a session (status or our
        ``/sessions/{id}``)."""
        return sum(1 for _, path, _ in self.requests
                   if path.endswith("/status") or path.startswith("/sessions/"))

    def client(self) -> EngineClient:
        """An ``EngineClient`` talking to this engine (no retry delays)."""
        return EngineClient("http://engine.test", transport=httpx.MockTransport(self.handle),
                            retries=1, backoff=0.001)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        if path == "/health":
            health: dict[str, Any] = {"status": "ok", "uptime_seconds": 1, "ram_mb": "1.00",
                                      "sessions_active": len(self.sessions),
                                      "sessions_playing": len(self.sessions)}
            if self.features:
                health["features"] = self.features
            return httpx.Response(200, json=health)
        if path.startswith("/sessions/") and self.features:
            self.requests.append((request.method, path, body))
            session = self.sessions.get(path.rsplit("/", 1)[1])
            if session is None:
                return httpx.Response(404, json={"message": "session not found"})
            return httpx.Response(200, json={
                "session_id": path.rsplit("/", 1)[1], "status": session.status,
                "play_id": session.play_id, "url": session.url,
                "position": session.start_at + 1.5})
        match = _ROUTE.match(path)
        if match is None:
            return httpx.Response(404, text="404 page not found")
        sid, op = match["id"], match["op"]
        fault = self._faults[op].popleft() if self._faults[op] else None
        if fault == "lost":
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if fault == "raise":
            raise RuntimeError("a bug in the engine client path")
        if isinstance(fault, int):
            self.requests.append((request.method, path, body))
            return httpx.Response(fault, json={"status": "error", "session_id": sid,
                                               "message": f"injected {fault}"})
        self.requests.append((request.method, path, body))
        response = self._answer(sid, op, body)
        if fault == "cut":
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response

    def _answer(self, sid: str, op: str, body: dict[str, Any]) -> httpx.Response:
        session = self.sessions.get(sid)
        match op:
            case "play":
                self._plays += 1
                self.sessions[sid] = _Session(body["url"], self._plays,
                                              volume=body.get("volume", 1.0),
                                              start_at=body.get("start_at", 0.0),
                                              filters=body.get("filters") or {},
                                              crossfade=body.get("crossfade", 0.0))
                headers = {"X-Play-Id": str(self._plays)} if self.features else {}
                return httpx.Response(200, json={"status": "playing", "session_id": sid},
                                      headers=headers)
            case "stop":
                self.sessions.pop(sid, None)
                return httpx.Response(200, json={"status": "stopped", "session_id": sid})
            case "pause" | "resume":
                if session is None:
                    return httpx.Response(404, json={"status": "error", "session_id": sid,
                                                     "message": "session not found"})
                session.status = "paused" if op == "pause" else "streaming"
                return httpx.Response(200, json={
                    "status": "paused" if op == "pause" else "playing", "session_id": sid})
            case "status":
                if session is None:
                    return httpx.Response(404, json={"session_id": sid, "status": "not_found",
                                                     "bytes_sent": 0})
                return httpx.Response(200, json={"session_id": sid, "status": session.status,
                                                 "bytes_sent": 1000, "url": session.url})
            case "volume" if self.features:
                if session is None:
                    return httpx.Response(404, json={"message": "session not found"})
                session.volume = body["volume"]
                return httpx.Response(200, json={"status": "ok", "session_id": sid})
            case "filters" | "crossfade" | "next" | "next/cancel" if (
                    op.split("/")[0].replace("next", "next_track") in self.features):
                if session is None:
                    return httpx.Response(404, json={"status": "error", "session_id": sid,
                                                     "message": "session not found"})
                if op == "filters":
                    session.filters = body
                    return httpx.Response(200, json={"status": "ok", "session_id": sid,
                                                     "filters": body})
                if op == "crossfade":
                    session.crossfade = body["crossfade"]
                    return httpx.Response(200, json={"status": "ok", "session_id": sid,
                                                     "crossfade": body["crossfade"]})
                if op == "next":
                    now = bool(body.get("now")) and "play_now" in self.features
                    self._plays += 1
                    if now:
                        session.replacing = (self._plays, body["url"])
                    else:
                        session.next = (self._plays, body["url"])
                    return httpx.Response(200, json={
                        "status": "replacing" if now else "queued", "session_id": sid,
                        "play_id": self._plays}, headers={"X-Play-Id": str(self._plays)})
                cancelled, session.next = session.next, None
                return httpx.Response(200, json={
                    "status": "ok", "session_id": sid,
                    "cancelled": cancelled[0] if cancelled else None})
            case _:
                return httpx.Response(404, text="404 page not found")

    def join(self, sid: str) -> tuple[int, int]:
        """The current track of *sid* ends and its next one joins the stream, as our
        engine does at the boundary: returns (ended play id, joined play id); the
        caller dispatches ``finished`` (reason end) and ``ready`` with them."""
        session = self.sessions[sid]
        assert session.next is not None, "no next track was set"
        ended = session.play_id
        session.play_id, session.url = session.next
        session.next = None
        session.start_at = 0.0
        return ended, session.play_id

    def replace(self, sid: str) -> tuple[int, int]:
        """The "play now" track of *sid* has audio and replaces the current one:
        returns (replaced play id, new play id); the caller dispatches ``finished``
        (reason replaced) and ``ready`` with them."""
        session = self.sessions[sid]
        assert session.replacing is not None, "no play now was sent"
        ended = session.play_id
        session.play_id, session.url = session.replacing
        session.replacing = session.next = None
        session.start_at = 0.0
        return ended, session.play_id

    def replacement_failed(self, sid: str) -> int:
        """The "play now" track of *sid* could not open: returns its play id (the
        caller dispatches its ``error``); the current play goes on."""
        session = self.sessions[sid]
        assert session.replacing is not None, "no play now was sent"
        failed = session.replacing[0]
        session.replacing = None
        return failed
