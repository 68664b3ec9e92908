"""Typed async client for the engine's HTTP API (ours or the Go engine's).

Every call has a timeout; only connection failures are retried (with backoff),
since a request the engine received may have taken effect. Failures surface as
``EngineError`` subclasses carrying the engine's own message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "EngineBusy",
    "EngineClient",
    "EngineError",
    "EngineHealth",
    "EngineInvalidRequest",
    "EngineNotFound",
    "EngineUnavailable",
    "FiltersResult",
    "MetadataResult",
    "NextResult",
    "PlayResult",
    "PlaylistEntry",
    "PlaylistResult",
    "SearchResult",
    "SearchResultItem",
    "SessionInfo",
    "SessionStatus",
]

Format = Literal["opus", "web", "pcm"]
M = TypeVar("M", bound=BaseModel)


class EngineError(Exception):
    """The engine answered with an error; ``str()`` is the engine's message."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EngineUnavailable(EngineError):
    """The engine could not be reached (after retries)."""


class EngineInvalidRequest(EngineError):
    """400: the request was refused as invalid (bad id, URL, body)."""


class EngineNotFound(EngineError):
    """404: no such session."""


class EngineBusy(EngineError):
    """429: the engine's session limit is reached."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class PlayResult(_Model):
    """A play's answer; *play_id* is set when the engine tags events with it."""

    status: str
    session_id: str
    play_id: int | None = None


class NextResult(_Model):
    """``POST /session/{id}/next``: the play id the next track's events will carry."""

    status: str
    session_id: str
    play_id: int


class FiltersResult(_Model):
    """A session's filters (our engine): the Lavalink object as set (``"loudness":
    null`` when the engine's default loudness is switched off for it), and, from
    ``GET``, the filters its audio goes through now and whether it passes through."""

    session_id: str
    filters: dict[str, Any]
    active: list[str] = []
    passthrough: bool = False


class SessionStatus(_Model):
    """``GET /session/{id}/status``."""

    session_id: str
    status: str
    bytes_sent: int = 0
    url: str = ""


class SessionInfo(_Model):
    """One entry of our engine's ``GET /sessions``."""

    session_id: str
    status: str
    url: str = ""
    title: str = ""
    format: str = ""
    position: float = 0.0
    duration: float = 0.0
    volume: float = 1.0
    passthrough: bool = False
    underruns: int = 0
    error: str = ""
    play_id: int | None = None
    #: Active filters by Lavalink's names (our engine).
    filters: list[str] = []
    crossfade: float = 0.0
    #: The next track of a gapless queue, if one is set: play_id, url, state, title.
    next: dict[str, Any] | None = None


class EngineHealth(_Model):
    """``GET /health`` (Go fields; ours arrive as extra attributes)."""

    status: str
    uptime_seconds: int
    ram_mb: str
    sessions_active: int
    sessions_playing: int


class MetadataResult(_Model):
    """``GET /metadata``."""

    url: str
    title: str
    duration: float
    thumbnail: str
    is_playlist: bool


class PlaylistEntry(_Model):
    """One entry of ``GET /playlist``."""

    url: str
    title: str
    duration: float
    thumbnail: str


class PlaylistResult(_Model):
    """``GET /playlist``."""

    url: str
    count: int
    entries: list[PlaylistEntry]


class SearchResultItem(_Model):
    """One result of ``GET /search``."""

    id: str
    url: str
    title: str
    duration: float
    thumbnail: str
    channel: str


class SearchResult(_Model):
    """``GET /search``."""

    query: str
    count: int
    results: list[SearchResultItem]


class EngineClient:
    """Async client of one engine.

    Args:
        base_url: e.g. ``http://127.0.0.1:8180``.
        timeout: seconds per request (catalogue calls get ``catalogue_timeout``).
        retries: extra attempts after a connection failure.
        backoff: first retry delay in seconds; doubles, with jitter.
        token: bearer token, when the engine requires one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        catalogue_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.1,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=headers, transport=transport
        )
        self._catalogue_timeout = catalogue_timeout
        self._retries = retries
        self._backoff = backoff
        self.base_url = base_url

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._client.aclose()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sessions -------------------------------------------------------------------

    async def play(
        self,
        session_id: str,
        url: str,
        *,
        format: Format = "opus",
        start_at: float = 0.0,
        duration: float = 0.0,
        volume: float | None = None,
        filters: Mapping[str, Any] | None = None,
        crossfade: float | None = None,
    ) -> PlayResult:
        """Start or replace *session_id*'s stream. *filters* (Lavalink's object) and
        *crossfade* (seconds into a next track) need our engine (``/health`` features
        ``filters`` and ``crossfade``): a Go engine ignores them.

        Raises:
            EngineInvalidRequest, EngineBusy, EngineUnavailable, EngineError.
        """
        body: dict[str, Any] = {"url": url, "format": format}
        if start_at > 0:
            body["start_at"] = start_at
        if duration > 0:
            body["duration"] = duration
        if volume is not None and volume != 1.0:
            body["volume"] = volume
        if filters is not None:
            body["filters"] = dict(filters)
        if crossfade:
            body["crossfade"] = crossfade
        response = await self._request("POST", f"/session/{session_id}/play", json=body)
        result = self._parse(PlayResult, response)
        play_id = response.headers.get("x-play-id")
        if play_id is not None and play_id.isdigit():
            result = result.model_copy(update={"play_id": int(play_id)})
        return result

    async def stop(self, session_id: str) -> None:
        """Stop *session_id* (fine if unknown)."""
        await self._request("POST", f"/session/{session_id}/stop")

    async def pause(self, session_id: str) -> None:
        """Pause. Raises ``EngineNotFound`` for unknown sessions."""
        await self._request("POST", f"/session/{session_id}/pause")

    async def resume(self, session_id: str) -> None:
        """Resume. Raises ``EngineNotFound`` for unknown sessions."""
        await self._request("POST", f"/session/{session_id}/resume")

    async def status(self, session_id: str) -> SessionStatus | None:
        """The session's status, or None when the engine does not know it."""
        try:
            response = await self._request("GET", f"/session/{session_id}/status")
        except EngineNotFound:
            return None
        return self._parse(SessionStatus, response)

    async def set_volume(self, session_id: str, volume: float) -> None:
        """Change a live session's volume (our engine only)."""
        await self._request("POST", f"/session/{session_id}/volume", json={"volume": volume})

    async def seek(self, session_id: str, position: float) -> None:
        """Seek a live session (our engine only)."""
        await self._request("POST", f"/session/{session_id}/seek", json={"position": position})

    async def set_filters(self, session_id: str, filters: Mapping[str, Any]) -> FiltersResult:
        """Replace a session's filters live with Lavalink's filters object (our engine;
        ``{}`` clears them). Heard within 300 ms.

        Raises:
            EngineInvalidRequest: the filters are not valid (the engine's words say which
                key and why); EngineNotFound, EngineUnavailable, EngineError.
        """
        response = await self._request("POST", f"/session/{session_id}/filters",
                                       json=dict(filters))
        return self._parse(FiltersResult, response)

    async def filters(self, session_id: str) -> FiltersResult:
        """A session's filters (our engine). Raises ``EngineNotFound``."""
        response = await self._request("GET", f"/session/{session_id}/filters")
        return self._parse(FiltersResult, response)

    async def set_crossfade(self, session_id: str, seconds: float) -> None:
        """Crossfade length into the next track, 0 (gapless) to 12 s (our engine)."""
        await self._request("POST", f"/session/{session_id}/crossfade",
                            json={"crossfade": seconds})

    async def set_next(
        self,
        session_id: str,
        url: str,
        *,
        start_at: float = 0.0,
        duration: float = 0.0,
        filters: Mapping[str, Any] | None = None,
    ) -> NextResult:
        """Tell the engine the track after the current one (our engine, feature
        ``next_track``): it joins the same stream without a gap (or crossfades), and
        its events carry the returned play id: ``finished`` of the current play, then
        ``ready`` of this one. A later call replaces it. *filters* apply from this
        track on (default: the session's stay).

        Raises:
            EngineInvalidRequest, EngineNotFound, EngineError (409: the session ended).
        """
        body: dict[str, Any] = {"url": url}
        if start_at > 0:
            body["start_at"] = start_at
        if duration > 0:
            body["duration"] = duration
        if filters is not None:
            body["filters"] = dict(filters)
        response = await self._request("POST", f"/session/{session_id}/next", json=body)
        return self._parse(NextResult, response)

    async def cancel_next(self, session_id: str) -> int | None:
        """Forget the next track; returns its play id (None if none was set)."""
        response = await self._request("POST", f"/session/{session_id}/next/cancel")
        try:
            cancelled = response.json().get("cancelled")
        except (ValueError, AttributeError) as exc:
            raise EngineError(f"unexpected answer from the engine: {exc}") from None
        return int(cancelled) if isinstance(cancelled, int) else None

    async def sessions(self) -> list[SessionInfo]:
        """Every session (our engine only)."""
        response = await self._request("GET", "/sessions")
        try:
            return [SessionInfo.model_validate(s) for s in response.json()["sessions"]]
        except (ValueError, KeyError, ValidationError) as exc:
            raise EngineError(f"unexpected answer from the engine: {exc}") from None

    async def health(self) -> EngineHealth:
        """``/health``."""
        return self._parse(EngineHealth, await self._request("GET", "/health"))

    # -- catalogue ------------------------------------------------------------------

    async def metadata(self, url: str) -> MetadataResult:
        """Title and duration of *url*. Raises ``EngineError`` with the engine's
        ``error`` text on failure."""
        response = await self._request("GET", "/metadata", params={"url": url},
                                       limit=self._catalogue_timeout)
        return self._parse(MetadataResult, response)

    async def playlist(self, url: str) -> PlaylistResult:
        """Entries of a playlist URL."""
        response = await self._request("GET", "/playlist", params={"url": url},
                                       limit=self._catalogue_timeout)
        return self._parse(PlaylistResult, response)

    async def search(self, query: str) -> SearchResult:
        """Search results for *query*."""
        response = await self._request("GET", "/search", params={"q": query},
                                       limit=self._catalogue_timeout)
        return self._parse(SearchResult, response)

    # -- plumbing -------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, limit: float | None = None,
                       **kwargs: Any) -> httpx.Response:
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                response = await self._client.request(
                    method, path,
                    timeout=limit if limit is not None else httpx.USE_CLIENT_DEFAULT,
                    **kwargs,
                )
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                # Not received (or cut before any answer): safe to try again.
                if attempt == self._retries:
                    raise EngineUnavailable(
                        f"the audio engine at {self.base_url} is unreachable ({exc})"
                    ) from None
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay *= 2
            except httpx.TimeoutException:
                raise EngineUnavailable(
                    f"the audio engine at {self.base_url} did not answer in time"
                ) from None
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"talking to the audio engine failed ({exc})") from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> EngineError:
        try:
            body = response.json()
            message = str(body.get("message") or body.get("error") or body.get("detail") or "")
        except (ValueError, AttributeError):
            message = ""
        message = message or f"HTTP {response.status_code}"
        match response.status_code:
            case 400 | 413:
                return EngineInvalidRequest(message, response.status_code)
            case 404:
                return EngineNotFound(message, response.status_code)
            case 429:
                return EngineBusy(message, response.status_code)
            case _:
                return EngineError(message, response.status_code)

    @staticmethod
    def _parse(model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise EngineError(f"unexpected answer from the engine: {exc}") from None
