"""Errors of the engine's API, in the Go engine's shape, mapped in one place.

A handler raises; ``install`` turns each exception into the Go error body
``{"status":"error","session_id":ID,"message":M}`` with its status:

| raised | status |
|---|---|
| ``GoError`` (bad input, said in words) | its own (400, 404, 409, 413, ...) |
| ``SessionNotFound`` | 404 ``session not found`` |
| ``SessionConflict`` (a Lavalink player's guild) | 409, saying so |
| ``WorkerUnavailable`` (a worker restarting) | 503, ``Retry-After: 1`` |
| ``CallFailed`` from a worker | 409 (``not_playable``), 400 (``bad_format``), else 500 |
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from audio_engine.cluster.front import SessionConflict, SessionNotFound, WorkerUnavailable
from audio_engine.cluster.peer import CallFailed
from audio_engine.http.gojson import GoJSONResponse, go_not_found

__all__ = ["GoError", "go_error", "go_routing_failed", "install"]

_CALL_STATUS = {"not_playable": 409, "bad_format": 400, "not_found": 404}


class GoError(Exception):
    """An answer in the Go engine's error shape: *message* is for the user."""

    def __init__(self, session_id: str, message: str, status: int,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.message = message
        self.status = status
        self.headers = headers or {}


def go_error(session_id: str, message: str, status: int,
             headers: dict[str, str] | None = None) -> GoJSONResponse:
    """The Go engine's error body."""
    return GoJSONResponse({"status": "error", "session_id": session_id, "message": message},
                          status_code=status, headers=headers)


def _session_id(request: Request) -> str:
    return str(request.path_params.get("session_id", ""))


def go_routing_failed(exc: StarletteHTTPException) -> Response:
    """What the Go engine (gin) answers when routing fails: its plain-text 404 for an
    unknown path and for a wrong method too."""
    if exc.status_code in (404, 405):
        return go_not_found()
    return GoJSONResponse({"status": "error", "message": str(exc.detail)},
                          status_code=exc.status_code)


def install(app: FastAPI) -> None:
    """Register the mapping on *app*."""

    @app.exception_handler(GoError)
    async def go(request: Request, exc: GoError) -> Response:
        return go_error(exc.session_id, exc.message, exc.status, exc.headers)

    @app.exception_handler(SessionNotFound)
    async def not_found(request: Request, exc: SessionNotFound) -> Response:
        return go_error(_session_id(request), "session not found", 404)

    @app.exception_handler(SessionConflict)
    async def conflict(request: Request, exc: SessionConflict) -> Response:
        return go_error(_session_id(request), str(exc), 409)

    @app.exception_handler(WorkerUnavailable)
    async def unavailable(request: Request, exc: WorkerUnavailable) -> Response:
        return go_error(_session_id(request), str(exc), 503, {"Retry-After": "1"})

    @app.exception_handler(CallFailed)
    async def call_failed(request: Request, exc: CallFailed) -> Response:
        return go_error(_session_id(request), exc.failure.message,
                        _CALL_STATUS.get(exc.kind, 500))

    @app.exception_handler(StarletteHTTPException)
    async def routing_failed(request: Request, exc: StarletteHTTPException) -> Response:
        return go_routing_failed(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = str(error["loc"][-1]) if error["loc"] else "request"
        return GoJSONResponse(
            {"status": "error", "message": f"invalid request: {field}: {error['msg']}"},
            status_code=400,
        )
