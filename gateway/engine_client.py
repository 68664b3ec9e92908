"""Typed async client for the engine's HTTP API (ours or the Go engine's).

Every call has a timeout. A request that never reached the engine (the connection
was refused) is retried with backoff. One that may have reached it is retried only
when repeating it is harmless (stop, pause, resume, volume, seek, reads); a play
whose connection broke raises ``EngineOutcomeUnknown`` instead, so the caller can
ask the engine what happened before playing again. Failures surface as
``EngineError`` subclasses carrying the engine's own message; none of them names
the engine's address (the user may see them), ``detail`` keeps that for logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from lifecycle import Backoff
from protocol.filters import Filters

__all__ = [
    "GO_ENGINE",
    "EngineBusy",
    "EngineCapabilities",
    "EngineClient",
    "EngineError",
    "EngineFault",
    "EngineHealth",
    "EngineInvalidRequest",
    "EngineNotFound",
    "EngineOutcomeUnknown",
    "EngineOverloaded",
    "EngineUnavailable",
    "Feature",
    "FiltersResult",
    "Format",
    "MetadataResult",
    "NextResult",
    "PlayResult",
    "PlaylistEntry",
    "PlaylistResult",
    "SearchResult",
    "SearchResultItem",
    "SessionInfo",
    "SessionStatus",
    "map_exceptions",
]

Format = Literal["opus", "web", "pcm"]
M = TypeVar("M", bound=BaseModel)


class EngineError(Exception):
    """The engine answered with an error; ``str()`` is the engine's message.

    Attributes:
        status: the HTTP status (0 when there was no answer).
        detail: what went wrong, with addresses, for logs only.
    """

    def __init__(self, message: str, status: int = 0, *, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message


class EngineUnavailable(EngineError):
    """The engine could not be reached (after retries)."""


class EngineOutcomeUnknown(EngineUnavailable):
    """The connection broke after a non-repeatable request (a play) may have reached
    the engine: whether it took effect is unknown until the engine is asked."""


class EngineFault(EngineError):
    """5xx: the engine failed while handling the request (may pass on a retry)."""


class EngineOverloaded(EngineFault):
    """503 from our engine's admission by load: one more session would degrade
    the others. ``retry_after`` is the engine's ``Retry-After`` (seconds)."""

    def __init__(self, message: str, status: int = 503, *, retry_after: float = 5.0) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class EngineInvalidRequest(EngineError):
    """400: the request was refused as invalid (bad id, URL, body)."""


class EngineNotFound(EngineError):
    """404: no such session."""


class EngineBusy(EngineError):
    """429: the engine's session limit is reached."""


#: What turns one exception into another at a boundary: the first entry whose key
#: matches (``isinstance``) builds the new exception from the old.
ExceptionMapping = Mapping[type[Exception] | tuple[type[Exception], ...],
                           Callable[[Exception], Exception]]


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping) -> Iterator[None]:
    """Translate exceptions raised inside the block once, keeping the cause
    (``raise new from exc``), as httpcore does at its boundaries. Exceptions no entry
    matches pass unchanged."""
    try:
        yield
    except Exception as exc:
        for kind, build in mapping.items():
            if isinstance(exc, kind):
                raise build(exc) from exc
        raise


#: The request never reached the engine: safe to send again, whatever it is.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
#: The connection was cut after the request went out: the engine may have acted on it.
_CUT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _transport_errors(request: str, *, idempotent: bool) -> ExceptionMapping:
    """httpx's errors of one request as ours; *request* (method and URL) goes to
    ``detail`` only, never to the message a user may see."""
    unsure = EngineUnavailable if idempotent else EngineOutcomeUnknown

    def build(kind: type[EngineUnavailable], message: str) -> Callable[[Exception],
                                                                      Exception]:
        return lambda exc: kind(message, detail=f"{request}: {exc!r}")

    return {
        _NEVER_SENT: build(EngineUnavailable, "the audio engine is unreachable"),
        _CUT: build(unsure, "the connection to the audio engine broke"),
        httpx.TimeoutException: build(unsure, "the audio engine did not answer in time"),
        httpx.HTTPError: build(EngineUnavailable, "talking to the audio engine failed"),
    }


def _filters_json(filters: Filters | Mapping[str, Any]) -> dict[str, Any]:
    """The body of a filters object: a checked ``Filters`` as Lavalink's JSON, or a
    mapping passed on as it is (the engine checks it; tests of its refusals)."""
    return filters.to_lavalink() if isinstance(filters, Filters) else dict(filters)


def _unexpected(exc: Exception) -> EngineError:
    return EngineError(f"unexpected answer from the engine: {exc}")


#: An answer that is not the JSON the call expects: not JSON, a missing key, a value
#: of the wrong type, a body the model refuses.
_DECODING: ExceptionMapping = {
    ValidationError: _unexpected, ValueError: _unexpected, KeyError: _unexpected,
    TypeError: _unexpected, AttributeError: _unexpected,
}


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


class Feature(StrEnum):
    """What an engine supports beyond the Go engine's API, as our engine's
    ``/health`` lists it under ``features``. An engine listing none is a Go engine."""

    #: Events carry ``"play"`` and a play's answer has ``X-Play-Id``.
    PLAY_ID = "play_id"
    #: ``POST /session/{id}/volume`` changes a live session's gain.
    VOLUME = "volume"
    #: ``POST /session/{id}/seek`` moves a live session.
    SEEK = "seek"
    #: The engine reads a consumer's hello line.
    HELLO = "hello"
    #: ``finished`` events carry ``"reason"``.
    FINISH_REASON = "finish_reason"
    #: Lavalink's filters object: ``GET|POST /session/{id}/filters``, ``filters`` in a play.
    FILTERS = "filters"
    #: ``POST /session/{id}/next``: gapless queues in one stream.
    NEXT_TRACK = "next_track"
    #: ``POST /session/{id}/crossfade``: a crossfade into the next track.
    CROSSFADE = "crossfade"
    #: ``POST /session/{id}/next`` with ``now``: a track that replaces the current one
    #: once it has audio (the current one plays on if it fails).
    PLAY_NOW = "play_now"


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """The features one engine announced (``GET /health``).

    Unknown feature names are kept (a newer engine) but mean nothing here.
    """

    features: frozenset[str] = frozenset()

    @property
    def is_go_engine(self) -> bool:
        """True when the engine announced nothing: the Go engine's API only."""
        return not self.features

    def __contains__(self, feature: object) -> bool:
        return feature in self.features

    def describe(self) -> str:
        """For logs: ``"go engine"`` or the sorted feature list."""
        return "go engine (no features)" if self.is_go_engine else ", ".join(
            sorted(self.features))


#: What a Go engine (or one that answers no ``features``) can do beyond its API: nothing.
GO_ENGINE = EngineCapabilities()


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
    play_id: int | None = None
    url: str = ""
    title: str = ""
    format: str = ""
    position: float = 0.0
    duration: float = 0.0
    volume: float = 1.0
    passthrough: bool = False
    underruns: int = 0
    error: str = ""
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
    #: Our engine's extras (decision: none listed = a Go engine).
    features: list[str] | None = None
    #: Our engine's session limit (``ENGINE_MAX_SESSIONS``); None from a Go engine.
    max_sessions: int | None = None

    @property
    def capabilities(self) -> EngineCapabilities:
        """The announced features (``GO_ENGINE`` when there are none)."""
        return EngineCapabilities(frozenset(self.features or ()))


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
        # trust_env=False: a proxy named in the environment (``http_proxy``,
        # ``all_proxy``) would see every call and the bearer token; the engine is
        # where the settings say, reached directly.
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=headers, transport=transport,
            trust_env=False,
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
        filters: Filters | Mapping[str, Any] | None = None,
        crossfade: float | None = None,
    ) -> PlayResult:
        """Start or replace *session_id*'s stream. *filters* (Lavalink's object) and
        *crossfade* (seconds into a next track) need our engine (``/health`` features
        ``filters`` and ``crossfade``): a Go engine ignores them.

        Never sent twice: a connection that breaks after the request may have
        reached the engine raises ``EngineOutcomeUnknown``.

        Raises:
            EngineInvalidRequest, EngineBusy, EngineFault, EngineOutcomeUnknown,
            EngineUnavailable, EngineError.
        """
        body: dict[str, Any] = {"url": url, "format": format}
        if start_at > 0:
            body["start_at"] = start_at
        if duration > 0:
            body["duration"] = duration
        if volume is not None and volume != 1.0:
            body["volume"] = volume
        if filters is not None:
            body["filters"] = _filters_json(filters)
        if crossfade:
            body["crossfade"] = crossfade
        response = await self._request("POST", f"/session/{session_id}/play", json=body,
                                       idempotent=False)
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

    async def set_filters(self, session_id: str,
                          filters: Filters | Mapping[str, Any]) -> FiltersResult:
        """Replace a live session's filters (our engine, feature ``filters``).

        ``POST /session/{id}/filters`` with Lavalink v4's filters object as the body
        (``volume``, ``equalizer``, ``karaoke``, ``timescale``, ``tremolo``, ``vibrato``,
        ``rotation``, ``distortion``, ``channelMix``, ``lowPass``, plus our ``loudness``
        ``{"target": LUFS, "peak": dBFS, "maxGain": dB}``). The object replaces the
        previous one whole; ``{}`` clears every filter; a missing ``loudness`` means the
        engine's default loudness, ``"loudness": None`` switches it off. Heard within
        300 ms, in the same Ogg stream. The answer is ``{"status": "ok", "session_id":
        ID, "filters": {...}}`` (the object as set).

        Raises:
            EngineInvalidRequest: 400, the filters are not valid; its message is the
                engine's words (``"invalid request: equalizer[2].gain must be at most
                1.0 (got 2)"``), fit to show a user. 413: the body is too large.
            EngineNotFound: 404, no such session.
            EngineUnavailable, EngineFault, EngineError.
        """
        response = await self._request("POST", f"/session/{session_id}/filters",
                                       json=_filters_json(filters))
        return self._parse(FiltersResult, response)

    async def filters(self, session_id: str) -> FiltersResult:
        """A session's filters (our engine): ``GET /session/{id}/filters`` answers
        ``{"session_id": ID, "filters": {...}, "active": [names], "passthrough":
        bool}``; ``active`` names what the audio goes through now, in order (the
        session volume and the default loudness included).

        Raises:
            EngineNotFound (404), EngineInvalidRequest (400: a malformed id),
            EngineUnavailable, EngineFault, EngineError.
        """
        response = await self._request("GET", f"/session/{session_id}/filters")
        return self._parse(FiltersResult, response)

    async def set_crossfade(self, session_id: str, seconds: float) -> float:
        """Set the crossfade into a session's next track (our engine, feature
        ``crossfade``): ``POST /session/{id}/crossfade`` ``{"crossfade": seconds}``,
        0 (gapless) to 12 s; answered ``{"status": "ok", "session_id": ID,
        "crossfade": S}``. Returns the crossfade as set.

        Raises:
            EngineInvalidRequest (400: out of range, in the engine's words),
            EngineNotFound (404), EngineUnavailable, EngineFault, EngineError.
        """
        response = await self._request("POST", f"/session/{session_id}/crossfade",
                                       json={"crossfade": seconds})
        with map_exceptions(_DECODING):
            return float(response.json()["crossfade"])

    async def set_next(
        self,
        session_id: str,
        url: str,
        *,
        start_at: float = 0.0,
        duration: float = 0.0,
        filters: Filters | Mapping[str, Any] | None = None,
        now: bool = False,
    ) -> NextResult:
        """Tell the engine the track after the current one (our engine, feature
        ``next_track``), or with *now* the track that replaces it (feature
        ``play_now``).

        ``POST /session/{id}/next`` ``{"url", "start_at"?, "duration"?, "filters"?}``,
        answered ``{"status": "queued", "session_id": ID, "play_id": N}`` (and
        ``X-Play-Id``). The engine opens it before the current track ends and joins it
        to the same Ogg stream without a gap (or with the session's crossfade). Events:
        ``finished`` (reason ``end``) of the current play, then ``ready`` with play id
        N, in that order, at the first frame of the next track; if it cannot open,
        ``finished`` then ``error`` with play id N end the session. A later call
        replaces a next track not yet joining. *filters* (Lavalink's object) apply from
        its first frame; without them the session's stay. Never sent twice.

        With *now* (answered ``"status": "replacing"``) the engine opens the track at
        once and switches to it when it has audio: ``finished`` (reason ``replaced``)
        of the current play, then ``ready`` with play id N. If it cannot open, an
        ``error`` with play id N comes instead and the current play goes on (409 also
        when the session has not sent ``ready`` yet).

        Raises:
            EngineInvalidRequest: 400, a bad URL, numbers or filters (the engine's
                words). EngineNotFound: 404, no such session. EngineError with status
                409: the session has ended (start a plain play instead).
            EngineOutcomeUnknown: the connection broke after the request went out.
            EngineUnavailable, EngineFault.
        """
        body: dict[str, Any] = {"url": url}
        if start_at > 0:
            body["start_at"] = start_at
        if duration > 0:
            body["duration"] = duration
        if filters is not None:
            body["filters"] = _filters_json(filters)
        if now:
            body["now"] = True
        response = await self._request("POST", f"/session/{session_id}/next", json=body,
                                       idempotent=False)
        return self._parse(NextResult, response)

    async def cancel_next(self, session_id: str) -> int | None:
        """Forget a session's next track: ``POST /session/{id}/next/cancel``, answered
        ``{"status": "ok", "session_id": ID, "cancelled": N or null}``. Returns the
        cancelled play id (None if none was set). A next track already joining plays.

        Raises:
            EngineNotFound (404), EngineUnavailable, EngineFault, EngineError.
        """
        response = await self._request("POST", f"/session/{session_id}/next/cancel")
        with map_exceptions(_DECODING):
            cancelled = response.json().get("cancelled")
        return int(cancelled) if isinstance(cancelled, int) else None

    async def session_info(self, session_id: str) -> SessionInfo | None:
        """Our engine's view of one session (position, play id), or None when it
        does not know the session. A Go engine has no such route: its 404 is None
        as well, so ask only an engine with features."""
        try:
            response = await self._request("GET", f"/sessions/{session_id}")
        except EngineNotFound:
            return None
        return self._parse(SessionInfo, response)

    async def capabilities(self) -> EngineCapabilities:
        """What the engine supports beyond the Go API (``/health`` ``features``)."""
        return (await self.health()).capabilities

    async def sessions(self) -> list[SessionInfo]:
        """Every session (our engine only)."""
        response = await self._request("GET", "/sessions")
        with map_exceptions(_DECODING):
            return [SessionInfo.model_validate(s) for s in response.json()["sessions"]]

    async def stats(self) -> dict[str, Any]:
        """``/stats``: our engine's load figures in Lavalink's shape (a node
        pool's placement reads them; ``gateway.nodes.penalty``)."""
        response = await self._request("GET", "/stats")
        with map_exceptions(_DECODING):
            document = response.json()
        if not isinstance(document, dict):
            raise EngineError("unexpected answer from the engine: not an object")
        return document

    async def health(self) -> EngineHealth:
        """``/health``."""
        return self._parse(EngineHealth, await self._request("GET", "/health"))

    # -- catalogue ------------------------------------------------------------------

    async def metadata(self, url: str) -> MetadataResult:
        """Title and duration of *url*. Raises ``EngineError`` with the engine's
        ``error`` text on failure."""
        response = await self._request("GET", "/metadata", params={"url": url},
                                       seconds=self._catalogue_timeout)
        return self._parse(MetadataResult, response)

    async def playlist(self, url: str) -> PlaylistResult:
        """Entries of a playlist URL."""
        response = await self._request("GET", "/playlist", params={"url": url},
                                       seconds=self._catalogue_timeout)
        return self._parse(PlaylistResult, response)

    async def search(self, query: str) -> SearchResult:
        """Search results for *query*."""
        response = await self._request("GET", "/search", params={"q": query},
                                       seconds=self._catalogue_timeout)
        return self._parse(SearchResult, response)

    # -- plumbing -------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, seconds: float | None = None,
                       idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        backoff = Backoff(self._backoff, jitter=0.5)
        limit = seconds if seconds is not None else httpx.USE_CLIENT_DEFAULT
        errors = _transport_errors(f"{method} {self.base_url}{path}", idempotent=idempotent)
        for attempt in range(self._retries + 1):
            try:
                with map_exceptions(errors):
                    response = await self._client.request(method, path, timeout=limit,
                                                          **kwargs)
                break
            except EngineUnavailable as exc:
                # Retried: a request that never reached the engine, and one cut after it
                # went out when repeating it is harmless.
                cause = exc.__cause__
                retry = isinstance(cause, _NEVER_SENT) or (idempotent and isinstance(cause, _CUT))
                if not retry or attempt == self._retries:
                    raise
            await asyncio.sleep(backoff.next())
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
            case 503 if "retry-after" in response.headers:
                retry = response.headers["retry-after"]
                return EngineOverloaded(message, retry_after=float(retry)
                                        if retry.isdigit() else 5.0)
            case status if status >= 500:
                return EngineFault(message, status)
            case _:
                return EngineError(message, response.status_code)

    @staticmethod
    def _parse(model: type[M], response: httpx.Response) -> M:
        with map_exceptions(_DECODING):
            return model.model_validate(response.json())
