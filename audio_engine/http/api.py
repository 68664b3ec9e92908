"""The engine's HTTP control API: the Go engine's endpoints, byte for byte, plus ours.

Go-compatible (PROTOCOL.md section 1): ``/session/{id}/play|stop|pause|resume|status``,
``/metadata``, ``/playlist``, ``/search``, ``/health``. Ours, under new paths:
``GET /ready`` (readiness: 503 with the reasons when not ready),
``GET /sessions``, ``GET /sessions/{id}``, ``POST /session/{id}/volume``,
``POST /session/{id}/seek``, ``GET|POST /session/{id}/filters`` (Lavalink's filters
object), ``POST /session/{id}/crossfade``, ``POST /session/{id}/next`` and
``POST /session/{id}/next/cancel`` (gapless queues), ``GET /metrics``, ``GET /stats``
(Lavalink's shape); and optional ``filters`` and ``crossfade`` in the play body, which
a Go client never sends. OpenAPI docs at ``/docs``.

The routers by resource: ``sessions`` (the session endpoints), ``catalogue``
(metadata, playlists, search), ``node`` (health, readiness, statistics, the session
list). Errors are mapped to the Go error body in one place (``errors``). Bodies are
rendered Go-style (``gojson``, typed ``application/json; charset=utf-8`` as gin types
them) and every answer carries the Go CORS headers. An unknown path, or a known path
with the wrong method, is gin's plain-text ``404 page not found``.

With a Lavalink node (``LAVALINK_SERVER_PASSWORD``), its API is mounted beside
(``audio_engine.lavalink``): ``/version`` and ``/v4/...`` answer as Lavalink does,
behind its own password (never ``ENGINE_API_TOKEN``), with its error body; a Go call
that would change a Lavalink player's session is refused with 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from audio_engine.cluster.front import Front
from audio_engine.http import errors
from audio_engine.http.bodies import CALLER_HEADER, MAX_VOLUME
from audio_engine.http.catalogue import catalogue_router
from audio_engine.http.gojson import GoCORSMiddleware, GoJSONResponse
from audio_engine.http.node import node_router
from audio_engine.http.sessions import PLAY_ID_HEADER, sessions_router
from audio_engine.lavalink import (
    LavalinkError,
    LavalinkGate,
    LavalinkNode,
    error_response,
    is_lavalink_path,
    lavalink_router,
)
from protocol.bearer import bearer_matches

__all__ = ["CALLER_HEADER", "MAX_VOLUME", "PLAY_ID_HEADER", "create_app"]


def create_app(front: Front, *, lavalink: LavalinkNode | None = None) -> GoCORSMiddleware:
    """Build the ASGI app of *front* (FastAPI wrapped in the Go CORS layer), with
    the Lavalink API of *lavalink* when given."""
    settings = front.settings
    app = FastAPI(
        title="audiogate engine",
        description="Go-compatible audio engine: sessions, Ogg Opus/PCM over a Unix socket.",
        version=front.version,
        default_response_class=GoJSONResponse,
    )
    errors.install(app)
    app.include_router(sessions_router(front))
    app.include_router(catalogue_router(front.resolver, max_url_length=settings.max_url_length))
    app.include_router(node_router(front))
    inner: Any = app
    password = settings.lavalink_password
    if lavalink is not None and password is not None:
        app.include_router(lavalink_router(lavalink, password=password))
        _lavalink_errors(app)
        inner = LavalinkGate(app, password)
    token = settings.api_token.get_secret_value() if settings.api_token else None
    guarded = _BearerToken(inner, token, lavalink=inner is not app) if token else inner
    return GoCORSMiddleware(guarded, extra_allow_headers="Authorization" if token else "")


def _lavalink_errors(app: FastAPI) -> None:
    """Lavalink's error body on its paths (the Go body everywhere else)."""

    @app.exception_handler(LavalinkError)
    async def lavalink_error(request: Request, exc: LavalinkError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def routing_failed(request: Request, exc: StarletteHTTPException) -> Response:
        if is_lavalink_path(request.url.path):
            return error_response(request, LavalinkError(exc.status_code, str(exc.detail)))
        return errors.go_routing_failed(exc)


#: What an orchestrator's probes reach without the token: they carry no secrets.
_OPEN_PATHS = frozenset({"/health", "/ready"})


class _BearerToken:
    """Requires ``Authorization: Bearer <token>`` on everything but the probes
    ``/health`` and ``/ready`` (and CORS preflights, answered before this layer)."""

    def __init__(self, app: Any, token: str, *, lavalink: bool = False) -> None:
        self.app = app
        self._token = token
        #: Lavalink's paths have its own password (``LavalinkGate``).
        self._lavalink = lavalink

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS or (
                self._lavalink and is_lavalink_path(scope["path"])):
            await self.app(scope, receive, send)
            return
        presented = dict(scope.get("headers") or []).get(b"authorization")
        if bearer_matches(presented, self._token):  # any case of "Bearer"
            await self.app(scope, receive, send)
            return
        response = GoJSONResponse(
            {"status": "error", "message": "unauthorized: a valid bearer token is required"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
