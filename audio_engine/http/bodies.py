"""Request bodies of the engine's API, and the checks that turn bad input into words.

Every check raises ``GoError`` (``audio_engine.http.errors``): a 4xx with the Go
engine's error body, whose message says what is wrong.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from audio_engine.audio.formats import OutputFormat
from audio_engine.http.errors import GoError
from audio_engine.sessions.session import MAX_CROSSFADE, MAX_POSITION, PlayRequest
from protocol import InvalidSessionId, validate_session_id
from protocol.filters import FilterError, Filters, parse_filters

__all__ = [
    "CALLER_HEADER",
    "MAX_NAME_BYTES",
    "MAX_VOLUME",
    "CrossfadeBody",
    "NextBody",
    "PlayBody",
    "SeekBody",
    "SessionId",
    "VolumeBody",
    "caller",
    "check_url",
    "client",
    "filters_of",
    "json_object",
    "next_request",
    "parse_body",
    "play_request",
]

M = TypeVar("M", bound=BaseModel)

#: Largest volume accepted: double gain (samples are clipped).
MAX_VOLUME = 2.0
#: Optional request header naming whom a play or catalogue call is for (a user
#: or guild id); resolution slots are shared fairly between callers. Without it
#: a play counts as its session id's, a catalogue call as its client address's.
CALLER_HEADER = "X-Caller"
#: Longest name component of a local file path (the file systems' limit).
MAX_NAME_BYTES = 255


async def _valid_session_id(
    session_id: Annotated[str, Path(description="1-24 printable ASCII characters, no spaces")],
) -> str:
    # A coroutine: FastAPI runs a plain function dependency in a thread.
    try:
        validate_session_id(session_id)
    except InvalidSessionId as exc:
        raise GoError(session_id, f"invalid session id: {exc}", 400) from exc
    return session_id


#: The session id of a ``/session/{session_id}/...`` path, checked once for every
#: endpoint (a bad one is a 400 saying why).
SessionId = Annotated[str, Depends(_valid_session_id)]


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
    now: bool = Field(
        False, description="play now: replace the current track as soon as this one has "
        "audio; the current one plays on until then, and on if this one fails (its error "
        "event carries its play id)")


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


async def _read_body(request: Request, session_id: str, limit: int) -> bytes:
    too_large = GoError(session_id, f"invalid request: body is larger than {limit} bytes", 413)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect as exc:
        # Nobody reads the answer; it is still one in the Go shape, not a traceback.
        raise GoError(session_id, "invalid request: the client went away", 499) from exc
    return bytes(body)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


async def json_object(request: Request, session_id: str, limit: int) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        GoError: 413 over *limit*, 400 when it is not a JSON object (saying why).
    """
    raw = await _read_body(request, session_id, limit)
    if not raw.strip():
        raise GoError(session_id, "invalid request: body is empty", 400)
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise GoError(session_id, f"invalid request: body is not valid JSON ({exc})",
                      400) from exc
    if not isinstance(document, dict):
        raise GoError(session_id, "invalid request: body must be a JSON object", 400)
    return document


async def parse_body(request: Request, model: type[M], session_id: str, limit: int) -> M:
    """The request body as *model*.

    Raises:
        GoError: what is wrong with it (413 or 400).
    """
    document = await json_object(request, session_id, limit)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise GoError(session_id, f"invalid request: {_describe_validation(exc)}",
                      400) from exc


def check_url(url: str, max_length: int) -> str | None:
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


def caller(request: Request, fallback: str) -> str:
    """Whom a request is for: its ``X-Caller`` header (trimmed to 64 characters),
    else *fallback*."""
    named = request.headers.get(CALLER_HEADER, "").strip()[:64]
    return f"caller:{named}" if named else fallback


def client(request: Request) -> str:
    """The calling client's address, as a caller."""
    return f"client:{request.client.host if request.client else '-'}"


def _number_problem(start_at: float, duration: float) -> str | None:
    if not all(math.isfinite(n) for n in (start_at, duration)):
        return "numbers must be finite"
    if not -MAX_POSITION <= start_at <= MAX_POSITION:
        return f"start_at must be at most {MAX_POSITION:.0f} seconds"
    if not -MAX_POSITION <= duration <= MAX_POSITION:
        return f"duration must be at most {MAX_POSITION:.0f} seconds"
    return None


def filters_of(session_id: str, data: object) -> tuple[Filters, bool]:
    """A filters object from a request: (filters, whether the engine's default loudness
    applies: yes unless the object has a ``loudness`` key, ``null`` meaning off).

    Raises:
        GoError: 400 with the model's words.
    """
    try:
        filters = parse_filters(data)
    except FilterError as exc:
        raise GoError(session_id, f"invalid request: {exc}", 400) from exc
    return filters, not (isinstance(data, dict) and "loudness" in data)


def _invalid(session_id: str, problem: str) -> GoError:
    return GoError(session_id, f"invalid request: {problem}", 400)


def play_request(session_id: str, body: PlayBody, request: Request, *,
                 max_url_length: int) -> PlayRequest:
    """A checked play.

    Raises:
        GoError: 400 saying what is wrong.
    """
    if (problem := check_url(body.url, max_url_length)) is not None:
        raise _invalid(session_id, problem)
    if not math.isfinite(body.volume):
        raise _invalid(session_id, "numbers must be finite")
    if (problem := _number_problem(body.start_at, body.duration)) is not None:
        raise _invalid(session_id, problem)
    if not 0.0 <= body.volume <= MAX_VOLUME:
        raise _invalid(session_id, f"volume must be 0 to {MAX_VOLUME:g}")
    if not (math.isfinite(body.crossfade) and 0.0 <= body.crossfade <= MAX_CROSSFADE):
        raise _invalid(session_id, f"crossfade must be 0 to {MAX_CROSSFADE:g} seconds")
    filters, loudness_default = Filters(), True
    if body.filters is not None:
        filters, loudness_default = filters_of(session_id, body.filters)
    return PlayRequest(
        url=body.url.strip(),
        output=OutputFormat.from_request(body.format),
        start_at=max(0.0, body.start_at),
        duration=body.duration if body.duration > 0 else None,
        volume=body.volume,
        caller=caller(request, ""),
        filters=filters,
        loudness_default=loudness_default,
        crossfade=body.crossfade,
    )


def next_request(session_id: str, body: NextBody, request: Request, output: OutputFormat, *,
                 max_url_length: int) -> tuple[PlayRequest, Filters | None, bool]:
    """A checked next track: the play, its own filters (None: the session's), and
    whether the default loudness applies to them.

    Raises:
        GoError: 400 saying what is wrong.
    """
    if (problem := check_url(body.url, max_url_length)) is not None:
        raise _invalid(session_id, problem)
    if (problem := _number_problem(body.start_at, body.duration)) is not None:
        raise _invalid(session_id, problem)
    if body.format is not None and OutputFormat.from_request(body.format) is not output:
        raise _invalid(session_id, f"format must be the session's ({output.value}): the "
                       "next track continues its stream")
    filters: Filters | None = None
    loudness_default = True
    if body.filters is not None:
        filters, loudness_default = filters_of(session_id, body.filters)
    play = PlayRequest(url=body.url.strip(), output=output, start_at=max(0.0, body.start_at),
                       duration=body.duration if body.duration > 0 else None,
                       caller=caller(request, ""))
    return play, filters, loudness_default
