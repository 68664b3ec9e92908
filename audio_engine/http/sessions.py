"""``/session/{id}/...``: the Go engine's session endpoints, byte for byte, and ours.

Go-compatible (PROTOCOL.md section 1): ``play``, ``stop``, ``pause``, ``resume``,
``status``. Ours: ``volume``, ``seek``, ``filters`` (GET and POST), ``crossfade``,
``next`` and ``next/cancel``.

A session id claimed by a Lavalink player (``audio_engine.lavalink``) is refused
with 409 by every call that would change its session: a guild is either a Lavalink
player or a Go session, never both.

A play's and a stop's response carries a background task (run by Starlette after
the body was written) that tells the front the reply went out, so the events the
request caused follow it (``audio_engine.wire.ordering``).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from audio_engine.cluster.front import Front, PlayRefused
from audio_engine.http.bodies import (
    CrossfadeBody,
    NextBody,
    PlayBody,
    SeekBody,
    SessionId,
    VolumeBody,
    filters_of,
    json_object,
    next_request,
    parse_body,
    play_request,
)
from audio_engine.http.errors import GoError, go_error
from audio_engine.http.gojson import GoJSONResponse
from audio_engine.sessions.session import MAX_POSITION
from protocol import InvalidSessionId, validate_session_id

__all__ = ["PLAY_ID_HEADER", "sessions_router"]

#: Response header of a play naming the play id its events will carry as ``"play"``.
PLAY_ID_HEADER = "X-Play-Id"


def _not_lavalink(front: Front, session_id: str) -> None:
    """Refuse (409) a Go call that would change a Lavalink player's session."""
    if front.voices.is_voice(session_id):
        raise GoError(session_id, f"session {session_id} is a Lavalink player's guild: a "
                      "guild is either a Lavalink player or a Go session, never both", 409)


def sessions_router(front: Front) -> APIRouter:
    """The session endpoints of *front*."""
    settings = front.settings
    limit = settings.max_body_bytes
    router = APIRouter()

    @router.post(
        "/session/{session_id}/play",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PlayBody.model_json_schema()}},
            }
        },
        summary="Start or replace a session's stream",
    )
    async def play(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        body = await parse_body(request, PlayBody, session_id, limit)
        checked = play_request(session_id, body, request,
                               max_url_length=settings.max_url_length)
        outcome = await front.play(session_id, checked)
        if isinstance(outcome, PlayRefused):
            # Refused before anything started: the HTTP status says so, and so does an
            # error event after the reply (the Node front reads only the events).
            headers = {PLAY_ID_HEADER: str(outcome.play_id)}
            if outcome.retry_after:
                headers["Retry-After"] = str(outcome.retry_after)
            response = go_error(session_id, outcome.message, outcome.status, headers)
            response.background = BackgroundTask(front.replied, outcome.reply)
            return response
        return GoJSONResponse(
            {"status": "playing", "session_id": session_id},
            headers={PLAY_ID_HEADER: str(outcome.play_id)},
            background=BackgroundTask(front.replied, outcome.reply),
        )

    @router.post("/session/{session_id}/stop", summary="Stop a session (unknown ids too)")
    async def stop(session_id: SessionId) -> Response:
        _not_lavalink(front, session_id)
        reply = await front.stop_session(session_id)
        return GoJSONResponse({"status": "stopped", "session_id": session_id},
                              background=BackgroundTask(front.replied, reply))

    @router.post("/session/{session_id}/pause", summary="Pause output at once")
    async def pause(session_id: SessionId) -> Response:
        _not_lavalink(front, session_id)
        await front.calls.pause(session_id)
        return GoJSONResponse({"status": "paused", "session_id": session_id})

    @router.post("/session/{session_id}/resume", summary="Resume a paused session")
    async def resume(session_id: SessionId) -> Response:
        _not_lavalink(front, session_id)
        await front.calls.resume(session_id)
        return GoJSONResponse({"status": "playing", "session_id": session_id})

    @router.get("/session/{session_id}/status", summary="A session's state and bytes sent")
    async def status(session_id: str) -> Response:
        # Its own shapes: the Go engine's status body carries bytes_sent even here.
        try:
            validate_session_id(session_id)
        except InvalidSessionId as exc:
            return GoJSONResponse(
                {"session_id": session_id, "status": "error", "bytes_sent": 0,
                 "message": f"invalid session id: {exc}"}, status_code=400)
        state = await front.calls.status(session_id)
        if state is None:
            return GoJSONResponse(
                {"session_id": session_id, "status": "not_found", "bytes_sent": 0},
                status_code=404)
        body: dict[str, Any] = {
            "session_id": session_id,
            # The Go engine's state, which stays "streaming" while paused (our
            # /sessions/{id} says "paused").
            "status": state["state"],
            "bytes_sent": state["bytes_sent"],
        }
        if state["url"]:
            body["url"] = state["url"]
        return GoJSONResponse(body)

    @router.post("/session/{session_id}/volume", summary="Change a session's volume live")
    async def volume(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        body = await parse_body(request, VolumeBody, session_id, limit)
        value = await front.calls.set_volume(session_id, body.volume)
        return GoJSONResponse({"status": "ok", "session_id": session_id, "volume": value})

    @router.post("/session/{session_id}/seek", summary="Seek a live session")
    async def seek(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        body = await parse_body(request, SeekBody, session_id, limit)
        if not math.isfinite(body.position):
            raise GoError(session_id, "invalid request: position must be finite", 400)
        if body.position > MAX_POSITION:
            raise GoError(session_id, "invalid request: position must be at most "
                          f"{MAX_POSITION:.0f} seconds", 400)
        state = await front.calls.seek(session_id, body.position)
        return GoJSONResponse({"status": state, "session_id": session_id,
                               "position": body.position})

    @router.get("/session/{session_id}/filters", summary="A session's filters (ours)")
    async def get_filters(session_id: SessionId) -> Response:
        view = await front.calls.filters(session_id)
        return GoJSONResponse({"session_id": session_id, **view})

    @router.post("/session/{session_id}/filters",
                 summary="Set a session's filters live: Lavalink v4's filters object (ours)")
    async def set_filters(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        data = await json_object(request, session_id, limit)
        filters, loudness_default = filters_of(session_id, data)
        view = await front.calls.set_filters(session_id, filters, loudness_default)
        return GoJSONResponse({"status": "ok", "session_id": session_id, "filters": view})

    @router.post("/session/{session_id}/crossfade",
                 summary="Crossfade length into the next track (ours)")
    async def crossfade(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        body = await parse_body(request, CrossfadeBody, session_id, limit)
        value = await front.calls.set_crossfade(session_id, body.crossfade)
        return GoJSONResponse({"status": "ok", "session_id": session_id, "crossfade": value})

    @router.post("/session/{session_id}/next",
                 summary="The track after the current one, joined in the same stream, or "
                 "with now the one that replaces it once it has audio (ours)")
    async def set_next(session_id: SessionId, request: Request) -> Response:
        _not_lavalink(front, session_id)
        body = await parse_body(request, NextBody, session_id, limit)
        output = front.calls.output_of(session_id)
        play, filters, loudness_default = next_request(
            session_id, body, request, output, max_url_length=settings.max_url_length)
        started = await front.set_next(session_id, play, filters, loudness_default,
                                       now=body.now)
        return GoJSONResponse(
            {"status": "replacing" if body.now else "queued", "session_id": session_id,
             "play_id": started.play_id},
            headers={PLAY_ID_HEADER: str(started.play_id)},
            background=BackgroundTask(front.replied, started.reply),
        )

    @router.post("/session/{session_id}/next/cancel", summary="Forget the next track (ours)")
    async def cancel_next(session_id: SessionId) -> Response:
        _not_lavalink(front, session_id)
        cancelled = await front.calls.cancel_next(session_id)
        return GoJSONResponse({"status": "ok", "session_id": session_id,
                               "cancelled": cancelled})

    return router
