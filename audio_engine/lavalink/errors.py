"""Lavalink's error answers: its JSON error body with the right status, and the bare
401/403 of its password check.

Lavalink (Spring Boot) answers a failed request with ``{"timestamp", "status", "error",
"message", "path"}`` (and ``trace`` when the request asked with ``?trace=true``); a
missing password is a bare 401 and a wrong one a bare 403 on REST calls (its
``RequestAuthorizationFilter``), both 401 on the WebSocket handshake
(``HandshakeInterceptorImpl``).
"""

from __future__ import annotations

import time
import traceback
from http import HTTPStatus

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from protocol.lavalink import ErrorResponse

__all__ = ["LavalinkError", "error_response", "status_only"]


class LavalinkError(Exception):
    """An answer in Lavalink's error shape: *status* and *message* (for the client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(request: HTTPConnection, exc: LavalinkError) -> Response:
    """Lavalink's error body for *exc* raised while serving *request*."""
    trace = None
    if request.query_params.get("trace") == "true":
        trace = "".join(traceback.format_exception(exc)).strip() or exc.message
    body = ErrorResponse(timestamp=int(time.time() * 1000), status=exc.status,
                         error=HTTPStatus(exc.status).phrase, trace=trace,
                         message=exc.message, path=request.url.path)
    return JSONResponse(body.dump(), status_code=exc.status)


def status_only(status: int) -> Response:
    """A status and nothing else (the password check's answers, route planner's 204)."""
    return Response(status_code=status)
