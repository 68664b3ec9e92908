"""``/metadata``, ``/playlist``, ``/search``: the Go engine's catalogue endpoints.

Answered by the front's resolver (yt-dlp and probes in killable worker processes);
a call whose client disconnects has its resolution killed. A URL the engine cannot
handle is a 400 (as the Go engine), with the keys of a success zeroed and ``error``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from audio_engine.http.bodies import caller, check_url, client
from audio_engine.http.gojson import GoJSONResponse
from audio_engine.sources.resolver import ResolveError, Resolver
from lifecycle import Process, TaskOwner, declare

__all__ = ["catalogue_router"]

T = TypeVar("T")

log = logging.getLogger(__name__)


_OWNER = "a catalogue request (`_unless_client_leaves`)"
JOB = declare(
    "catalogue-job", owner=_OWNER, process=Process.ENGINE,
    what="a `/metadata`, `/playlist` or `/search` resolution",
    ends="answered, or cancelled (its resolution worker killed) when the client leaves")
CLIENT_WATCH = declare(
    "catalogue-client-watch", owner=_OWNER, process=Process.ENGINE,
    what="watching a catalogue request's client for a disconnect",
    ends="the answer, or the disconnect (cancelled and awaited either way)")


class _ClientGone(Exception):
    pass


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await *work*, cancelling it if the client disconnects first (a resolution
    job's worker is killed then, not left to finish for nobody).

    Raises:
        _ClientGone: the client left.
    """
    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def outcome() -> tuple[T | None, BaseException | None]:
        # The job's own failure is the answer, not a task failure to log.
        try:
            return await work, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return None, exc

    tasks = TaskOwner(_OWNER, logger=log)
    job = tasks.spawn(JOB, outcome())
    watch = tasks.spawn(CLIENT_WATCH, client_left())
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await_job = job.done() and not job.cancelled()
        await tasks.aclose()
    if not await_job:
        raise _ClientGone
    value, error = job.result()
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


def catalogue_router(resolver: Resolver, *, max_url_length: int) -> APIRouter:
    """The catalogue endpoints, answered by *resolver*."""
    router = APIRouter()

    async def answer(request: Request, work: Coroutine[Any, Any, Any], failed: Any,
                     error_status: int) -> Response:
        try:
            return GoJSONResponse(await _unless_client_leaves(request, work))
        except ResolveError as exc:
            # As the Go engine: 400 (500 for a search) for what it cannot handle; 503
            # when the engine is shutting down.
            status = 503 if exc.unavailable else error_status
            return failed(str(exc), status)  # type: ignore[no-any-return]
        except _ClientGone:
            return failed("the client went away", 499)  # type: ignore[no-any-return]

    @router.get("/metadata", summary="Title, duration, thumbnail of a URL")
    async def metadata(request: Request, url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse(
                {"url": url, "title": "", "duration": 0, "thumbnail": "",
                 "is_playlist": False, "error": message}, status_code=code)

        if (problem := check_url(url, max_url_length)) is not None:
            return failed(problem, 400)
        return await answer(request, resolver.metadata(
            url, caller=caller(request, client(request))), failed, 400)

    @router.get("/playlist", summary="Entries of a playlist URL")
    async def playlist(request: Request, url: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse({"url": url, "count": 0, "entries": None, "error": message},
                                  status_code=code)

        if (problem := check_url(url, max_url_length)) is not None:
            return failed(problem, 400)

        async def entries() -> dict[str, Any]:
            found = await resolver.playlist(url, caller=caller(request, client(request)))
            return {"url": url, "count": len(found), "entries": found}

        return await answer(request, entries(), failed, 400)

    @router.get("/search", summary="Search YouTube through yt-dlp")
    async def search(request: Request, q: Annotated[str, Query()] = "") -> Response:
        def failed(message: str, code: int) -> Response:
            return GoJSONResponse({"query": q, "count": 0, "results": None, "error": message},
                                  status_code=code)

        if not q.strip():
            return failed("q is required", 400)
        if len(q) > 500:
            return failed("q is longer than 500 characters", 400)

        async def results() -> dict[str, Any]:
            found = await resolver.search(q.strip(), caller=caller(request, client(request)))
            return {"query": q, "count": len(found), "results": found}

        return await answer(request, results(), failed, 500)

    return router
