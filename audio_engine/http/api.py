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

Bodies are rendered Go-style (``gojson``, typed ``application/json;
charset=utf-8`` as gin types them) and every answer carries the Go CORS headers.
An unknown path, or a known path with the wrong method, is gin's plain-text
``404 page not found``. Invalid input is a 4xx with a message saying what is
wrong; it never touches another session.

Replies go out before the events they cause: a play's and a stop's response
carries a background task (run by Starlette after the body was written) that
releases the request's ``ReplyGate`` (``audio_engine.wire.ordering``).
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from audio_engine.audio.filters import FilterError, Filters, parse_filters
from audio_engine.audio.formats import OutputFormat
from audio_engine.engine import Engine
from audio_engine.http.gojson import GoCORSMiddleware, GoJSONResponse, go_not_found
from audio_engine.sessions.manager import NotPlayable, TooManySessions
from audio_engine.sessions.session import MAX_CROSSFADE, PlayRequest, Session
from audio_engine.sources.media import MAX_POSITION
from audio_engine.sources.resolver import ResolveError
from protocol import InvalidSessionId, validate_session_id
from protocol.bearer import bearer_matches

__all__ = ["CALLER_HEADER", "MAX_VOLUME", "PLAY_ID_HEADER", "create_app"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Largest volume accepted: double gain (samples are clipped).
MAX_VOLUME = 2.0
#: Response header of a play naming the play id its events will carry as ``"play"``.
PLAY_ID_HEADER = "X-Play-Id"
#: Optional request header naming whom a play or catalogue call is for (a user
#: or guild id); resolution slots are shared fairly between callers. Without it
#: a play counts as its session id's, a catalogue call as its client address's.
CALLER_HEADER = "X-Caller"
#: Longest name component of a local file path (the file systems' limit).
MAX_NAME_BYTES = 255


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
    filters: dict[str, Any] | None = Field(
        None, description="Lavalink v4 filters object, plus our 'loudness' (ours)")
    crossfade: float = Field(
        0.0, description=f"seconds of crossfade into a next track, 0 to {MAX_CROSSFADE:g} (ours)")


class NextBody(BaseModel):
    """Body of ``POST /session/{id}/next``: the track after the current one."""

    model_config = ConfigDict(strict=True, extra="ignore")

    url: str = Field(description="media URL or local file path, as for a play")
    format: str | None = Field(None, description="if given, must be the session's format")
    start_at: float = Field(0.0, description="seconds into the track to start at")
    duration: float = Field(0.0, description="track length hint, seconds")
    filters: dict[str, Any] | None = Field(
        None, description="filters for this track (default: keep the session's)")


class CrossfadeBody(BaseModel):
    """Body of ``POST /session/{id}/crossfade``."""

    model_config = ConfigDict(strict=True, extra="ignore")
    crossfade: float = Field(ge=0.0, le=MAX_CROSSFADE,
                             description=f"seconds, 0 (gapless) to {MAX_CROSSFADE:g}")


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
        path = urllib.parse.unquote(parsed.path) if scheme == "file" else url
        if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
               for part in path.split("/")):
            return f"a file name in the path is longer than {MAX_NAME_BYTES} bytes"
        return None
    return (
        f"unsupported URL scheme {scheme or '(none)'!r}: "
        "use an http(s) URL or a local file path"
    )


def _caller(request: Request, fallback: str) -> str:
    """Whom a request is for: its ``X-Caller`` header (trimmed to 64 characters),
    else *fallback*."""
    named = request.headers.get(CALLER_HEADER, "").strip()[:64]
    return f"caller:{named}" if named else fallback


def _client(request: Request) -> str:
    return f"client:{request.client.host if request.client else '-'}"


class _ClientGone(Exception):
    pass


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await *work*, cancelling it if the client disconnects first (a resolution
    job's worker is killed then, not left to finish for nobody).

    Raises:
        _ClientGone: the client left.
    """
    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not job.done():
            job.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    if job.cancelled():
        await asyncio.gather(job, return_exceptions=True)
        raise _ClientGone
    return job.result()


def _number_problem(start_at: float, duration: float) -> str | None:
    if not all(math.isfinite(n) for n in (start_at, duration)):
        return "numbers must be finite"
    if not -MAX_POSITION <= start_at <= MAX_POSITION:
        return f"start_at must be at most {MAX_POSITION:.0f} seconds"
    if not -MAX_POSITION <= duration <= MAX_POSITION:
        return f"duration must be at most {MAX_POSITION:.0f} seconds"
    return None


def _filters(data: object) -> tuple[Filters, bool]:
    """A filters object from a request: (filters, whether the engine's default loudness
    applies: yes unless the object has a ``loudness`` key, ``null`` meaning off).

    Raises:
        FilterError: with the model's words.
    """
    filters = parse_filters(data)
    return filters, not (isinstance(data, dict) and "loudness" in data)


def filters_view(session: Session) -> dict[str, Any]:
    """The session's filters as set (Lavalink's keys; ``"loudness": null`` when
    switched off against the engine's default)."""
    shown = session.filters.to_lavalink()
    if not session.loudness_default and session.filters.loudness is None:
        shown["loudness"] = None
    return shown


def session_view(session: Session) -> dict[str, Any]:
    """A session as ``GET /sessions`` shows it."""
    view: dict[str, Any] = {
        "session_id": session.id,
        "play_id": session.play_id,
        "status": session.status.value,
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
        "filters": list(session.filters.active()),
        "crossfade": session.crossfade,
        "next": None,
    }
    nxt = session.next
    if nxt is not None:
        view["next"] = {"play_id": nxt.play_id, "url": nxt.request.url,
                        "state": nxt.state.value, "title": nxt.title}
        if nxt.error:
            view["next"]["error"] = nxt.error
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

    @app.exception_handler(StarletteHTTPException)
    async def routing_failed(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):
            return go_not_found()  # gin answers a wrong method with its 404 too
        return GoJSONResponse({"status": "error", "message": str(exc.detail)},
                              status_code=exc.status_code)

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
        if not math.isfinite(body.volume):
            return _error(session_id, "invalid request: numbers must be finite", 400)
        if (problem := _number_problem(body.start_at, body.duration)) is not None:
            return _error(session_id, f"invalid request: {problem}", 400)
        if not 0.0 <= body.volume <= MAX_VOLUME:
            return _error(session_id, f"invalid request: volume must be 0 to {MAX_VOLUME:g}", 400)
        if not (math.isfinite(body.crossfade) and 0.0 <= body.crossfade <= MAX_CROSSFADE):
            return _error(session_id, "invalid request: crossfade must be 0 to "
                          f"{MAX_CROSSFADE:g} seconds", 400)
        filters, loudness_default = Filters(), True
        if body.filters is not None:
            try:
                filters, loudness_default = _filters(body.filters)
            except FilterError as exc:
                return _error(session_id, f"invalid request: {exc}", 400)
        play_request = PlayRequest(
            url=body.url.strip(),
            output=OutputFormat.from_request(body.format),
            start_at=max(0.0, body.start_at),
            duration=body.duration if body.duration > 0 else None,
            volume=body.volume,
            caller=_caller(request, ""),
            filters=filters,
            loudness_default=loudness_default,
            crossfade=body.crossfade,
        )
        if (refusal := engine.play_refusal(session_id)) is not None:
            # Before anything starts: one more session would degrade the others.
            response = _error(session_id, refusal.message, 503)
            response.headers["Retry-After"] = str(refusal.retry_after)
            return response
        try:
            session = manager.play(session_id, play_request)
        except TooManySessions as exc:
            engine.metrics.plays_refused.labels("count").inc()
            return _error(session_id, str(exc), 429)
        return GoJSONResponse(
            {"status": "playing", "session_id": session_id},
            headers={PLAY_ID_HEADER: str(session.play_id)},
            background=BackgroundTask(manager.replied, session.gate),
        )

    @app.post("/session/{session_id}/stop", summary="Stop a session (unknown ids too)")
    async def stop(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        gate = manager.reply_gate()
        manager.stop(session_id, gate=gate)
        return GoJSONResponse({"status": "stopped", "session_id": session_id},
                              background=BackgroundTask(manager.replied, gate))

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
            # The Go engine's state, which stays "streaming" while paused (our
            # /sessions/{id} says "paused").
            "status": session.state.value,
            "bytes_sent": session.bytes_sent,
        }
        if session.request.url:
            body["url"] = session.request.url
        return GoJSONResponse(body)

    # -- Go-compatible catalogue endpoints ----------------------------------------

    @app.get("/metadata", summary="Title, duration, thumbnail of a URL")
    async def metadata(request: Request, url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"url": url, "title": "", "duration": 0, "thumbnail": "",
                 "is_playlist": False, "error": message},
                status_code=code,
            )

        if (problem := _check_url(url, settings.max_url_length)) is not None:
            return failed(problem, 400)
        caller = _caller(request, _client(request))
        try:
            return GoJSONResponse(await _unless_client_leaves(
                request, engine.resolver.metadata(url, caller=caller)))
        except ResolveError as exc:
            # As the Go engine: 400 for a URL it cannot handle; 503 at shutdown.
            return failed(str(exc), 503 if exc.unavailable else 400)
        except _ClientGone:
            return failed("the client went away", 499)

    @app.get("/playlist", summary="Entries of a playlist URL")
    async def playlist(request: Request, url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"url": url, "count": 0, "entries": None, "error": message}, status_code=code
            )

        if (problem := _check_url(url, settings.max_url_length)) is not None:
            return failed(problem, 400)
        caller = _caller(request, _client(request))
        try:
            entries = await _unless_client_leaves(
                request, engine.resolver.playlist(url, caller=caller))
        except ResolveError as exc:
            # As the Go engine: 400 for a URL it cannot handle; 503 at shutdown.
            return failed(str(exc), 503 if exc.unavailable else 400)
        except _ClientGone:
            return failed("the client went away", 499)
        return GoJSONResponse({"url": url, "count": len(entries), "entries": entries})

    @app.get("/search", summary="Search YouTube through yt-dlp")
    async def search(request: Request, q: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"query": q, "count": 0, "results": None, "error": message}, status_code=code
            )

        if not q.strip():
            return failed("q is required", 400)
        if len(q) > 500:
            return failed("q is longer than 500 characters", 400)
        caller = _caller(request, _client(request))
        try:
            results = await _unless_client_leaves(
                request, engine.resolver.search(q.strip(), caller=caller))
        except ResolveError as exc:
            return failed(str(exc), 503 if exc.unavailable else 500)
        except _ClientGone:
            return failed("the client went away", 499)
        return GoJSONResponse({"query": q, "count": len(results), "results": results})

    @app.get("/health", summary="Liveness and engine statistics")
    async def health() -> Response:
        return GoJSONResponse(engine.health())

    @app.get("/ready", summary="Readiness: 200 when the engine can take work, else 503 "
             "with the reasons")
    async def ready() -> Response:
        reasons = engine.readiness()
        if reasons:
            return GoJSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return GoJSONResponse({"status": "ready", "reasons": []})

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
        if body.position > MAX_POSITION:
            return _error(session_id, f"invalid request: position must be at most "
                          f"{MAX_POSITION:.0f} seconds", 400)
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

    @app.get("/session/{session_id}/filters", summary="A session's filters (ours)")
    async def get_filters(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        session = manager.get(session_id)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse({"session_id": session_id, "filters": filters_view(session),
                               "active": list(engine.active_filters(session)),
                               "passthrough": session.passthrough})

    @app.post("/session/{session_id}/filters",
              summary="Set a session's filters live: Lavalink v4's filters object (ours)")
    async def set_filters(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        try:
            data = await _json_object(request, settings.max_body_bytes)
            filters, loudness_default = _filters(data)
        except _BodyTooLarge as exc:
            return _error(session_id, f"invalid request: {exc}", 413)
        except ValueError as exc:  # FilterError included: the model's words
            return _error(session_id, f"invalid request: {exc}", 400)
        session = manager.set_filters(session_id, filters, loudness_default=loudness_default)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse({"status": "ok", "session_id": session_id,
                               "filters": filters_view(session)})

    @app.post("/session/{session_id}/crossfade",
              summary="Crossfade length into the next track (ours)")
    async def crossfade(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        body = await _parse_body(request, CrossfadeBody, session_id, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        session = manager.set_crossfade(session_id, body.crossfade)
        if session is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse({"status": "ok", "session_id": session_id,
                               "crossfade": session.crossfade})

    @app.post("/session/{session_id}/next",
              summary="The track after the current one, joined in the same stream (ours)")
    async def set_next(session_id: SessionIdPath, request: Request) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        body = await _parse_body(request, NextBody, session_id, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        if (problem := _check_url(body.url, settings.max_url_length)) is not None:
            return _error(session_id, f"invalid request: {problem}", 400)
        if (problem := _number_problem(body.start_at, body.duration)) is not None:
            return _error(session_id, f"invalid request: {problem}", 400)
        session = manager.get(session_id)
        if session is None:
            return _error(session_id, "session not found", 404)
        output = session.request.output
        if body.format is not None and OutputFormat.from_request(body.format) is not output:
            return _error(session_id, "invalid request: format must be the session's "
                          f"({output.value}): the next track continues its stream", 400)
        filters: Filters | None = None
        loudness_default = True
        if body.filters is not None:
            try:
                filters, loudness_default = _filters(body.filters)
            except FilterError as exc:
                return _error(session_id, f"invalid request: {exc}", 400)
        next_request = PlayRequest(
            url=body.url.strip(), output=output, start_at=max(0.0, body.start_at),
            duration=body.duration if body.duration > 0 else None,
            caller=_caller(request, ""),
        )
        try:
            nxt = manager.set_next(session_id, next_request, filters=filters,
                                   loudness_default=loudness_default)
        except NotPlayable as exc:
            return _error(session_id, str(exc), 409)
        if nxt is None:
            return _error(session_id, "session not found", 404)
        return GoJSONResponse(
            {"status": "queued", "session_id": session_id, "play_id": nxt.play_id},
            headers={PLAY_ID_HEADER: str(nxt.play_id)},
        )

    @app.post("/session/{session_id}/next/cancel", summary="Forget the next track (ours)")
    async def cancel_next(session_id: SessionIdPath) -> Response:
        if (problem := invalid_id(session_id)) is not None:
            return _error(session_id, problem, 400)
        session = manager.get(session_id)
        if session is None:
            return _error(session_id, "session not found", 404)
        cancelled = session.next.play_id if session.next is not None else None
        manager.cancel_next(session_id)
        return GoJSONResponse({"status": "ok", "session_id": session_id,
                               "cancelled": cancelled})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    token = settings.api_token.get_secret_value() if settings.api_token else None
    guarded = _BearerToken(app, token) if token else app
    return GoCORSMiddleware(guarded, extra_allow_headers="Authorization" if token else "")


#: What an orchestrator's probes reach without the token: they carry no secrets.
_OPEN_PATHS = frozenset({"/health", "/ready"})


class _BearerToken:
    """Requires ``Authorization: Bearer <token>`` on everything but the probes
    ``/health`` and ``/ready`` (and CORS preflights, answered before this layer)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
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
