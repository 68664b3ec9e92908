"""Lavalink v4's REST API and WebSocket on the engine's HTTP port.

Mounted by ``audio_engine.http.api`` when ``LAVALINK_SERVER_PASSWORD`` is set:

- ``GET /version``, ``GET /v4/info``, ``GET /v4/stats``;
- ``GET /v4/loadtracks?identifier=``, ``GET /v4/decodetrack?encodedTrack=``,
  ``POST /v4/decodetracks``;
- ``PATCH /v4/sessions/{sessionId}``; ``GET /v4/sessions/{sessionId}/players``;
  ``GET|PATCH|DELETE /v4/sessions/{sessionId}/players/{guildId}`` (``?noReplace=``);
- ``GET /v4/routeplanner/status`` (204: none is configured) and the two ``free``
  calls (500 ``Can't access disabled route planner``), as Lavalink answers without a
  route planner;
- ``/v4/websocket``: ``Authorization``, ``User-Id``, ``Client-Name``, ``Session-Id``
  (resume); ``ready``, ``playerUpdate`` every ``LAVALINK_SERVER_PLAYERUPDATEINTERVAL``
  seconds, ``stats`` every minute, events.

``LavalinkGate`` checks the password of every REST call on these paths as Lavalink's
filter does (no ``Authorization``: 401, a wrong one: 403, nothing else in either) and
adds Lavalink's ``Lavalink-Api-Version: 4`` header; the WebSocket handshake answers
401 for both, 400 without a ``User-Id``, as Lavalink's handshake interceptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import platform
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTasks
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from audio_engine.cluster.front import Front, Reply
from audio_engine.cluster.reports import VERSION
from audio_engine.lavalink.errors import LavalinkError, status_only
from audio_engine.lavalink.node import STATS_INTERVAL, LavalinkNode
from audio_engine.lavalink.player import OUTBOX, ClientSession
from lifecycle import Process, TaskOwner, declare
from protocol.lavalink import (
    MAX_ENCODED_TRACK_LENGTH,
    Git,
    Info,
    InvalidEncodedTrack,
    PlayerUpdate,
    SessionUpdate,
    Track,
    Version,
    decode_track,
)

__all__ = [
    "API_VERSION",
    "LAVALINK_VERSION",
    "LavalinkGate",
    "is_lavalink_path",
    "lavalink_router",
]

log = logging.getLogger(__name__)

_WS_OWNER = "a Lavalink WebSocket's handler (`_serve`)"
_WS_ENDS = ("the client leaves or its session is taken over by a resume (cancelled and "
            "awaited by the handler)")
WS_READER = declare(
    "lavalink-{key}-read", owner=_WS_OWNER, process=Process.ENGINE,
    what="reading a Lavalink client's WebSocket until it disconnects (v4 takes no "
         "messages)", ends=_WS_ENDS)
WS_WRITER = declare(
    "lavalink-{key}-write", owner=_WS_OWNER, process=Process.ENGINE,
    what="writing a Lavalink client session's messages to its WebSocket", ends=_WS_ENDS)
WS_TICK = declare(
    "lavalink-{key}-tick", owner=_WS_OWNER, process=Process.ENGINE,
    what="sending a Lavalink client its `stats` every minute and its players' "
         "`playerUpdate` on time", ends=_WS_ENDS)
WS_HANDED_OVER = declare(
    "lavalink-{key}-handed-over", owner=_WS_OWNER, process=Process.ENGINE,
    what="waiting for a Lavalink client session to be taken over by a newer WebSocket "
         "(a resume)", ends=_WS_ENDS)

#: What ``/version`` says: the Lavalink API we speak (clients read the major and
#: minor; mafic warns about a minor it does not know).
LAVALINK_VERSION: Final = "4.0.0"
#: The ``Lavalink-Api-Version`` header of every answer.
API_VERSION: Final = "4"
#: Largest request body: ``/v4/decodetracks`` takes many tracks at once (Lavalink
#: sets no limit of its own; a real queue is far below this).
_MAX_BODY: Final = 1024 * 1024
#: Source managers and filters ``/v4/info`` lists.
_SOURCES: Final = ("http", "local", "youtube", "soundcloud")
_FILTERS: Final = ("volume", "equalizer", "karaoke", "timescale", "tremolo", "vibrato",
                   "distortion", "rotation", "channelMix", "lowPass")


def is_lavalink_path(path: str) -> bool:
    """Whether *path* is Lavalink's (its password applies, not the Go API's token)."""
    return path == "/version" or path == "/v4" or path.startswith("/v4/")


class LavalinkGate:
    """Lavalink's password check and API version header (see the module docstring)."""

    def __init__(self, app: ASGIApp, password: str) -> None:
        self.app = app
        self._password = password.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_lavalink_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = dict(scope.get("headers") or []).get(b"authorization")
        if presented is None or not hmac.compare_digest(presented, self._password):
            answer = status_only(401 if presented is None else 403)
            answer.headers["Lavalink-Api-Version"] = API_VERSION
            await answer(scope, receive, send)
            return

        async def with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"lavalink-api-version", API_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, with_version)


async def _body(request: Request) -> Any:
    """The request's JSON body. Raises LavalinkError 400 (413 past ``_MAX_BODY``)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > _MAX_BODY:
            raise LavalinkError(413, f"the body is larger than {_MAX_BODY} bytes")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise LavalinkError(400, f"Failed to read request: {exc}") from exc


def _model(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise LavalinkError(400, f"Invalid request: {where}: {first['msg']}") from exc


def _decoded(encoded: str) -> dict[str, Any]:
    if len(encoded) > MAX_ENCODED_TRACK_LENGTH:
        raise LavalinkError(400, "Invalid encoded track: too long")
    try:
        return Track.from_decoded(decode_track(encoded), encoded=encoded).dump()
    except InvalidEncodedTrack as exc:
        raise LavalinkError(400, f"Invalid encoded track: {exc}") from exc


def _with_replies(front: Front, body: Any, replies: list[Reply], status: int = 200
                  ) -> Response:
    """*body* as JSON (None: no content); the engine holds the events of *replies*
    until this answer has been written."""
    tasks = BackgroundTasks()
    for reply in replies:
        tasks.add_task(front.replied, reply)
    if body is None:
        return Response(status_code=status, background=tasks)
    return JSONResponse(body, status_code=status, background=tasks)


def lavalink_router(node: LavalinkNode, *, password: str) -> APIRouter:
    """The Lavalink endpoints of *node* (the WebSocket checks *password* itself)."""
    front = node.front
    router = APIRouter(include_in_schema=False)

    @router.get("/version")
    async def version() -> Response:
        return PlainTextResponse(LAVALINK_VERSION)

    @router.get("/v4/info")
    async def info() -> Response:
        major, minor, patch = (int(part) for part in LAVALINK_VERSION.split("."))
        body = Info(
            version=Version(semver=LAVALINK_VERSION, major=major, minor=minor, patch=patch,
                            build=f"audiogate.{VERSION}"),
            build_time=0, git=Git(branch="", commit="", commit_time=0),
            jvm=f"none: audiogate {VERSION} on Python {platform.python_version()}",
            lavaplayer=f"none: audiogate {VERSION} (FFmpeg, libopus)",
            source_managers=_SOURCES, filters=_FILTERS, plugins=())
        return JSONResponse(body.dump())

    @router.get("/v4/stats")
    async def stats() -> Response:
        return JSONResponse(await node.stats(frame_stats=False))

    @router.get("/v4/loadtracks")
    async def load_tracks(request: Request) -> Response:
        identifier = request.query_params.get("identifier")
        if identifier is None:
            raise LavalinkError(400, "Required parameter 'identifier' is not present.")
        if len(identifier) > front.settings.max_url_length:
            raise LavalinkError(400, f"identifier is longer than "
                                f"{front.settings.max_url_length} characters")
        result = await node.loader.load(identifier, caller=_caller(request))
        return JSONResponse(result.dump())

    @router.get("/v4/decodetrack")
    async def decode_one(request: Request) -> Response:
        encoded = request.query_params.get("encodedTrack") or request.query_params.get("track")
        if not encoded:
            raise LavalinkError(400, "No track to decode provided")
        return JSONResponse(_decoded(encoded))

    @router.post("/v4/decodetracks")
    async def decode_many(request: Request) -> Response:
        data = await _body(request)
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise LavalinkError(400, "the body must be a JSON array of encoded tracks")
        if not data:
            raise LavalinkError(400, "No tracks to decode provided")
        return JSONResponse([_decoded(encoded) for encoded in data])

    @router.patch("/v4/sessions/{session_id}")
    async def update_session(session_id: str, request: Request) -> Response:
        session = node.session(session_id)
        update = _model(SessionUpdate, await _body(request))
        return JSONResponse(node.update_session(session, update).dump())

    @router.get("/v4/sessions/{session_id}/players")
    async def players(session_id: str) -> Response:
        session = node.session(session_id)
        return JSONResponse([node.player_json(p) for p in session.players.values()])

    @router.get("/v4/sessions/{session_id}/players/{guild_id}")
    async def player(session_id: str, guild_id: str) -> Response:
        session = node.session(session_id)
        return JSONResponse(node.player_json(node.player(session, guild_id)))

    @router.patch("/v4/sessions/{session_id}/players/{guild_id}")
    async def update_player(session_id: str, guild_id: str, request: Request) -> Response:
        session = node.session(session_id)
        no_replace = request.query_params.get("noReplace", "false").lower() == "true"
        update = _model(PlayerUpdate, await _body(request))
        body, replies = await node.update_player(session, guild_id, update,
                                                 no_replace=no_replace,
                                                 caller=_caller(request))
        return _with_replies(front, body, replies)

    @router.delete("/v4/sessions/{session_id}/players/{guild_id}")
    async def destroy_player(session_id: str, guild_id: str) -> Response:
        session = node.session(session_id)
        replies = await node.destroy_player(session, guild_id)
        return _with_replies(front, None, replies, status=204)

    @router.get("/v4/routeplanner/status")
    async def route_planner() -> Response:
        return status_only(204)  # no route planner: Lavalink's answer

    @router.post("/v4/routeplanner/free/address")
    async def free_address() -> Response:
        raise LavalinkError(500, "Can't access disabled route planner")

    @router.post("/v4/routeplanner/free/all")
    async def free_all() -> Response:
        raise LavalinkError(500, "Can't access disabled route planner")

    @router.websocket("/v4/websocket")
    async def websocket(ws: WebSocket) -> None:
        presented = ws.headers.get("authorization")
        if presented is None or not hmac.compare_digest(presented.encode(), password.encode()):
            await _deny(ws, 401)
            return
        user = ws.headers.get("user-id", "")
        if not user.isascii() or not user.isdigit() or int(user) == 0:
            await _deny(ws, 400)
            return
        session, resumed = node.connect(int(user), ws.headers.get("client-name", ""),
                                        ws.headers.get("session-id"))
        await ws.accept(headers=[(b"session-resumed", b"true" if resumed else b"false"),
                                 (b"lavalink-api-version", API_VERSION.encode())])
        outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX)
        node.attach(session, outbox, resumed)
        try:
            await _serve(ws, node, session, outbox)
        finally:
            node.detach(session, outbox)

    return router


def _caller(request: Request) -> str:
    """Whom a load is for (fair resolution slots): ``X-Caller`` when the client names
    one, else its address (as for the Go API's catalogue calls)."""
    named = request.headers.get("x-caller")
    if named:
        return named
    return request.client.host if request.client is not None else ""


async def _deny(ws: WebSocket, status: int) -> None:
    """Refuse the handshake with *status* and nothing else (a server without the ASGI
    denial extension can only answer 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(status_only(status))
    else:
        await ws.close()


async def _serve(ws: WebSocket, node: LavalinkNode, session: ClientSession,
                 outbox: asyncio.Queue[str]) -> None:
    """Write *session*'s messages, send its ``playerUpdate`` and ``stats`` on time, and
    read until the client leaves (Lavalink v4 takes no messages on its WebSocket)."""

    async def read() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass  # Lavalink v4 ignores messages, as its node does (with a warning)

    async def write() -> None:
        while True:
            await ws.send_text(await outbox.get())

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_stats, next_update = start, start + node.player_update_interval
        while True:
            now = loop.time()
            if now >= next_stats:
                session.send(await node.stats(frame_stats=True))
                next_stats += STATS_INTERVAL
            if now >= next_update:
                node.events.send_player_updates(session)
                next_update += node.player_update_interval
            await asyncio.sleep(max(0.0, min(next_stats, next_update) - loop.time()))

    taken_over = session.taken_over

    async def handed_over() -> None:
        await taken_over.wait()

    async def until_closed(job: Callable[[], Awaitable[None]]) -> None:
        """*job*, ended quietly by a WebSocket the client closed (the owner logs any
        other failure)."""
        try:
            await job()
        except Exception as exc:
            if not _closed_socket(exc):
                raise

    owner = TaskOwner(_WS_OWNER, logger=log)
    jobs = ((WS_READER, read), (WS_WRITER, write), (WS_TICK, tick),
            (WS_HANDED_OVER, handed_over))
    running = [owner.spawn(spec, until_closed(job), key=session.id) for spec, job in jobs]
    try:
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await owner.aclose()
        if ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(1000)


def _closed_socket(exc: Exception) -> bool:
    """A send on a WebSocket the client already closed (how a writer learns it)."""
    return isinstance(exc, WebSocketDisconnect | RuntimeError | OSError)
