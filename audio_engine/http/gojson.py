"""JSON bodies and CORS headers exactly as the Go engine writes them.

Go's ``encoding/json`` writes compact JSON with keys in struct order, escapes
``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\uXXXX``, leaves other non-ASCII text
as UTF-8, and prints a float64 that holds a whole number without a fraction
(``120``, not ``120.0``). Node parses these bodies; keeping them byte-identical
means nothing on that side can tell the engines apart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import Response

__all__ = [
    "CORS_HEADERS",
    "NOT_FOUND_BODY",
    "GoCORSMiddleware",
    "GoJSONResponse",
    "go_json",
    "go_not_found",
]

#: Headers every engine response carries (PROTOCOL.md section 1).
CORS_HEADERS = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type"),
)

_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _go_values(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {key: _go_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_go_values(item) for item in value]
    return value


def go_json(value: Any) -> bytes:
    """Serialise *value* the way Go's ``json.Marshal`` would (dict order is kept)."""
    text = json.dumps(_go_values(value), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)
    # These characters can only occur inside strings, so replacing them
    # everywhere is exact.
    for raw, escaped in _GO_ESCAPES:
        text = text.replace(raw, escaped)
    return text.encode("utf-8")


class GoJSONResponse(Response):
    """A JSON response rendered by ``go_json``, typed as gin types its JSON."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        """Render *content* Go-style."""
        return go_json(content)


#: gin's answer to an unknown path, and to a known path with the wrong method (gin
#: does not answer 405 unless told to): this body, no newline, typed
#: ``text/plain`` (gin's ``serveError``).
NOT_FOUND_BODY = b"404 page not found"


def go_not_found() -> Response:
    """The 404 gin writes for a route it does not have."""
    # Set as a header: Starlette would append "; charset=utf-8" to a text/ media type.
    return Response(NOT_FOUND_BODY, status_code=404, headers={"content-type": "text/plain"})


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class GoCORSMiddleware:
    """Adds the Go engine's CORS headers to every response, and answers
    ``OPTIONS`` on any path with 204 and no body, before routing."""

    def __init__(self, app: ASGIApp, extra_allow_headers: str = "") -> None:
        self.app = app
        extra = f", {extra_allow_headers}".encode() if extra_allow_headers else b""
        allow = b"Content-Type" + extra
        self.headers = [
            (name, allow if name == b"access-control-allow-headers" else value)
            for name, value in CORS_HEADERS
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": self.headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [h for h in self.headers if h[0] not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)
