"""The engine's HTTP control API: the Go engine's endpoints, byte for byte, plus ours.

Go-compatible (PROTOCOL.md section 1): ``/session/{id}/play|stop|pause|resume|status``,
``/metadata``, ``/playlist``, ``/search``, ``/health``. Ours, under new paths:
``GET /sessions``, ``GET /sessions/{id}``, ``POST /session/{id}/volume``,
``POST /session/{id}/seek``, ``GET /metrics``, ``GET /stats`` (Lavalink's shape).
OpenAPI docs at ``/docs``.

Bodies are rendered Go-style (``gojson``) and every answer carries the Go CORS
headers. Invalid input is a 4xx with a message saying what is wrong; it never
touches another session.
"""

from __future__ import annotations

import hmac
import json
import math
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from audio_engine.formats import OutputFormat
from audio_engine.gojson import GoCORSMiddleware, GoJSONResponse
from audio_engine.manager import NotPlayable, TooManySessions
from audio_engine.resolver import ResolveError
from audio_engine.session import PlayRequest, Session
from protocol import InvalidSessionId, validate_session_id

if TYPE_CHECKING:
    from audio_engine.engine import Engine

__all__ = ["MAX_VOLUME", "PLAY_ID_HEADER", "create_app"]

M = TypeVar("M", bound=BaseModel)

#: Largest volume accepted: double gain (samples are clipped).
MAX_VOLUME = 2.0
#: Response header of a play naming the play id its events will carry as ``"play"``.
PLAY_ID_HEADER = "X-Play-Id"


class PlayBody(BaseModel):
    """Body of ``POST /session/{id}/play``."""

    model_config = ConfigDict(strict=True, extra="ignore")

    url: str = Field(description="media URL (http/https, direct or any site yt-dlp knows) "
                     "or local file path")
    format: str = Field("", description="opus (128 kb/s Ogg Opus), web (256 kb/s Ogg "
                        "Opus) or anything else for s16le PCM")
    start_at: float = Field(0.0, description="seconds to seek to before playing")
    duration: float = Field(0.0, description="track length hint, seconds")
    volume: float = Field(1.0, description="initial gain, 0 to 2 (ours)")


class VolumeBody(BaseModel):
    """Body of ``POST /session/{id}/volume``."""

    model_config = ConfigDict(strict=True, extra="ignore")
    volume: float = Field(ge=0.0, le=MAX_VOLUME, description="gain, 0 (mute) to 2")


class SeekBody(BaseModel):
    """Body of ``POST /session/{id}/seek``."""

    model_config = ConfigDict(strict=True, extra="ignore")
    position: float = Field(ge=0.0, description="seconds from the start of the track")


SessionIdPath = Annotated[str, Path(description="1-24 printable ASCII characters, no spaces")]


def _error(session_id: str, message: str, status: int) -> GoJSONResponse:
    return GoJSONResponse(
        {"status": "error", "session_id": session_id, "message": message}, status_code=status
    )


def _describe_validation(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    match first["type"]:
        case "missing":
            return f"{field} is required"
        case "string_type":
            return f"{field} must be a string"
        case "float_type" | "float_parsing":
            return f"{field} must be a number"
        case _:
            return f"{field}: {first['msg']}"


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge(limit)
    return bytes(body)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


async def _json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object; raises ValueError with the reason."""
    raw = await _read_body(request, limit)
    if not raw.strip():
        raise ValueError("body is empty")
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    return document


async def _parse_body(request: Request, model: type[M], session_id: str,
                      limit: int) -> M | Response:
    """The request body as *model*, or the 4xx response that says what is wrong."""
    try:
        return model.model_validate(await _json_object(request, limit))
    except _BodyTooLarge as exc:
        return _error(session_id, f"invalid request: {exc}", 413)
    except ValidationError as exc:
        return _error(session_id, f"invalid request: {_describe_validation(exc)}", 400)
    except ValueError as exc:
        return _error(session_id, f"invalid request: {exc}", 400)


def _check_url(url: str, max_length: int) -> str | None:
    """A reason to refuse *url* before resolving it, or None."""
    if not url.strip():
        return "url is required"
    if len(url) > max_length:
        return f"url is longer than {max_length} characters"
    parsed = urllib.parse.urlsplit(url.strip())
    scheme = parsed.scheme.lower()
    if scheme in {"http", "https"}:
        return None if parsed.hostname else "url has no host"
    if scheme == "file" or (not scheme and url.startswith("/")):
        return None
    return (
        f"unsupported URL scheme {scheme or '(none)'!r}: "
        "use an http(s) URL or a local file path"
    )


def session_view(session: Session) -> dict[str, Any]:
    """A session as ``GET /sessions`` shows it."""
    view: dict[str, Any] = {
        "session_id": session.id,
        "status": session.status.value,
        "play_id": session.play_id,
        "url": session.request.url,
        "title": session.title,
        "format": session.request.output.value,
        "position": round(session.position, 3),
        "duration": round(session.duration, 3) if session.duration else 0,
        "volume": session.volume,
        "passthrough": session.passthrough,
        "bytes_sent": session.bytes_sent,
        "frames_sent": session.frames_sent,
        "underruns": session.underruns,
        "retries": session.retries,
    }
    if session.error_message:
        view["error"] = session.error_message
    return view


def create_app(engine: Engine) -> GoCORSMiddleware:
    """Build the ASGI app for *engine* (FastAPI wrapped in the Go CORS layer)."""
    settings = engine.settings
    manager = engine.manager
    app = FastAPI(
        title="audiogate engine",
        description="Go-compatible audio engine: sessions, Ogg Opus/PCM over a Unix socket.",
        version=engine.version,
        default_response_class=GoJSONResponse,
    )

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = str(error["loc"][-1]) if error["loc"] else "request"
        return GoJSONResponse(
            {"status": "error", "message": f"invalid request: {field}: {error['msg']}"},
            status_code=400,
        )

    def invalid_id(session_id: str) -> str | None:
        try:
            validate_session_id(session_id)
        except InvalidSessionId as exc:
            return f"invalid session id: {exc}"
        return None

    # -- Go-compatible session endpoints ------------------------------------------

    @app.post(
        "/session/{session_id}/play",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PlayBody.model_json_schema()}},
            }
        },
        summary="Start or replace a session's stream",
    )
    async def play(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        body = await _parse_body(request, PlayBody, session_id, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        if (problem := _check_url(body.url, settings.max_url_length)) is not None:
            return _error(session_id, f"invalid request: {problem}", 400)
        numbers = (body.start_at, body.duration, body.volume)
        if not all(math.isfinite(n) for n in numbers):
            return _error(session_id, "invalid request: numbers must be finite", 400)
        if not 0.0 <= body.volume <= MAX_VOLUME:
            return _error(session_id, f"invalid request: volume must be 0 to {MAX_VOLUME:g}", 400)
        play_request = PlayRequest(
            url=body.url.strip(),
            output=OutputFormat.from_request(body.format),
            start_at=max(0.0, body.start_at),
            duration=body.duration if body.duration > 0 else None,
            volume=body.volume,
        )
        try:
            session = manager.play(session_id, play_request)
        except TooManySessions as exc:
            return _error(session_id, str(exc), 429)
        return GoJSONResponse(
            {"status": "playing", "session_id": session_id},
            headers={PLAY_ID_HEADER: str(session.play_id)},
        )

    @app.post("/session/{session_id}/stop", summary="Stop a session (unknown ids too)")
    async def stop(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        manager.stop(session_id)
        return GoJSONResponse({"status": "stopped", "session_id": session_id})

    @app.post("/session/{session_id}/pause", summary="Pause output at once")
    async def pause(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        if manager.pause(session_id) is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse({"status": "paused", "session_id": session_id})

    @app.post("/session/{session_id}/resume", summary="Resume a paused session")
    async def resume(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        if manager.resume(session_id) is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse({"status": "playing", "session_id": session_id})

    @app.get("/session/{session_id}/status", summary="A session's state and bytes sent")
    async def status(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return GoJSONResponse(
                {"session_id": session_id, "status": "error", "bytes_sent": 0,
                 "message": problem},
                status_code=400,
            )
        session = manager.get(session_id)
        if session is None:
            return GoJSONResponse(
                {"session_id": session_id, "status": "not_found", "bytes_sent": 0},
                status_code=404,
            )
        manager.touch(session_id)
        body: dict[str, Any] = {
            "session_id": session_id,
            "status": session.status.value,
            "bytes_sent": session.bytes_sent,
        }
        if session.request.url:
            body["url"] = session.request.url
        return GoJSONResponse(body)

    # -- Go-compatible catalogue endpoints ----------------------------------------

    @app.get("/metadata", summary="Title, duration, thumbnail of a URL")
    async def metadata(url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"url": url, "title": "", "duration": 0, "thumbnail": "",
                 "is_playlist": False, "error": message},
                status_code=code,
            )

        if (problem := _check_url(url, settings.max_url_length)) is not None:
            return failed(problem, 400)
        try:
            return GoJSONResponse(await engine.resolver.metadata(url))
        except ResolveError as exc:
            return failed(str(exc), 500)

    @app.get("/playlist", summary="Entries of a playlist URL")
    async def playlist(url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"url": url, "count": 0, "entries": None, "error": message}, status_code=code
            )

        if (problem := _check_url(url, settings.max_url_length)) is not None:
            return failed(problem, 400)
        try:
            entries = await engine.resolver.playlist(url)
        except ResolveError as exc:
            return failed(str(exc), 500)
        return GoJSONResponse({"url": url, "count": len(entries), "entries": entries})

    @app.get("/search", summary="Search YouTube through yt-dlp")
    async def search(q: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"query": q, "count": 0, "results": None, "error": message}, status_code=code
            )

        if not q.strip():
            return failed("q is required", 400)
        if len(q) > 500:
            return failed("q is longer than 500 characters", 400)
        try:
            results = await engine.resolver.search(q.strip())
        except ResolveError as exc:
            return failed(str(exc), 500)
        return GoJSONResponse({"query": q, "count": len(results), "results": results})

    @app.get("/health", summary="Liveness and engine statistics")
    async def health() -> Response:
        return GoJSONResponse(engine.health())

    # -- ours ----------------------------------------------------------------------

    @app.get("/stats", summary="Node statistics in Lavalink's shape (frameStats per minute)")
    async def stats() -> Response:
        return GoJSONResponse(engine.lavalink_stats())

    @app.get("/sessions", summary="Every session with state, position and counters")
    async def list_sessions() -> Response:
        return GoJSONResponse({"sessions": [session_view(s) for s in manager.sessions]})

    @app.get("/sessions/{session_id}", summary="One session with state, position, counters")
    async def one_session(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        session = manager.get(session_id)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse(session_view(session))

    @app.post("/session/{session_id}/volume", summary="Change a session's volume live")
    async def volume(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        body = await _parse_body(request, VolumeBody, session_id, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        session = manager.set_volume(session_id, body.volume)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse(
            {"status": "ok", "session_id": session_id, "volume": session.volume}
        )

    @app.post("/session/{session_id}/seek", summary="Seek a live session")
    async def seek(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        body = await _parse_body(request, SeekBody, session_id, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        if not math.isfinite(body.position):
            return _error(session_id, "invalid request: position must be finite", 400)
        try:
            session = manager.seek(session_id, body.position)
        except NotPlayable as exc:
            return _error(session_id, str(exc), 409)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse(
            {"status": session.status.value, "session_id": session_id,
             "position": body.position}
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    token = settings.api_token.get_secret_value() if settings.api_token else None
    guarded = _BearerToken(app, token) if token else app
    return GoCORSMiddleware(guarded, extra_allow_headers="Authorization" if token else "")


class _BearerToken:
    """Requires ``Authorization: Bearer <token>`` on everything but ``/health``
    (and CORS preflights, answered before this layer)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        presented = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(presented, self._expected):
            await self.app(scope, receive, send)
            return
        response = GoJSONResponse(
            {"status": "error", "message": "unauthorized: a valid bearer token is required"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
