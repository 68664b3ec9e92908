"""Lyrics of a track from LRCLIB's public API (https://lrclib.net/docs), for every front.

``LyricsService.for_track`` answers with a track's ``Lyrics`` (plain text, and lines
with their times when LRCLIB has them synced), ``None`` when LRCLIB has none, or raises
``LyricsUnavailable`` when LRCLIB cannot be reached or answers nonsense. The bot shows
them with ``/lyrics`` and in the now-playing message (the current line); the playground
can send them to its page (``Lyrics.as_dict``).

How a track is looked up. Our tracks have a title and a duration, rarely a separate
artist: a video is called "Artist - Song (Official Video)". ``query_for`` drops the
decorations in brackets and splits "artist - title"; then

1. with an artist: ``GET /api/get?track_name&artist_name&duration`` (LRCLIB's exact
   match, its duration within ±2 s);
2. otherwise, or when that finds nothing: ``GET /api/search?q=...`` and the best of its
   records: those with lyrics, the closest in duration first. A record whose duration is
   more than ``SYNC_TOLERANCE`` away from the track's (a music video with an intro) keeps
   its words but not its times: times from another cut would be wrong.

Outbound HTTP from the gateway: this is the only request the gateway makes to the
internet, and it is not a user's link: the host is the operator's setting
(``GATEWAY_LYRICS_URL``), what the user controls (the track's title) only fills query
parameters (httpx encodes them), redirects are not followed, and an answer is read up to
``max_bytes`` then dropped. The engine's egress proxy exists for the links people type,
which may point anywhere; none of that applies here, so the gateway calls LRCLIB
directly. Each request has ``timeout`` seconds in all, on the event loop (httpx is
asynchronous; nothing blocks it).

Answers are cached (``LyricsCache``: least recently used out first, ``max_entries``;
found lyrics for a day, "none" for an hour, a failure for ``FAILURE_TTL``), and
simultaneous requests for the same track share one lookup, a task the service owns (a
caller that gives up does not cancel it for the others).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import importlib.metadata
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.engine_client import map_exceptions
from gateway.player.track import Track
from lifecycle import TaskOwner, declare

__all__ = [
    "FAILURE_TTL",
    "SYNC_TOLERANCE",
    "LrclibClient",
    "LyricLine",
    "Lyrics",
    "LyricsCache",
    "LyricsQuery",
    "LyricsService",
    "LyricsUnavailable",
    "parse_lrc",
    "query_for",
]

log = logging.getLogger(__name__)

LOOKUP = declare(
    "lyrics-{key}", owner="LyricsService",
    what="one lyrics lookup at LRCLIB (at most two requests), shared by everyone asking "
         "for the same track meanwhile",
    ends="answered, or failed (each request bounded by `GATEWAY_LYRICS_TIMEOUT`); "
         "cancelled and awaited by `Gateway.stop`")

#: Seconds between a track's duration and a record's beyond which the record's line
#: times are not used (its words are).
SYNC_TOLERANCE = 3.0
#: Seconds a failed lookup (LRCLIB unreachable) is remembered, so that a guild's
#: every progress refresh does not ask again.
FAILURE_TTL = 60.0
#: Most lines kept from one song (a real song has well under 200).
MAX_LINES = 1000
#: Longest line kept, in characters.
MAX_LINE = 300

_TIMESTAMP = re.compile(r"\[(\d{1,3}):(\d{1,2}(?:[.:]\d{1,3})?)\]")
_OFFSET = re.compile(r"^\[offset:\s*([+-]?\d+)\s*\]$", re.IGNORECASE)
#: Bracketed parts of a video title that are not part of the song's name.
_NOISE = re.compile(
    r"\s*[\(\[【](?=[^\)\]】]*\b(?:official|video|audio|lyrics?|visuali[sz]er|hd|hq|4k|8k"
    r"|remaster(?:ed)?|m/?v|music|explicit|clean|colou?r coded|full|performance"
    r"|from|topic)\b)[^\)\]】]*[\)\]】]", re.IGNORECASE)
#: "Artist - Song", with a hyphen, an en or em dash, or a bar.
_SEPARATOR = re.compile(r"\s+[-\u2013\u2014|]\s+")


class LyricsUnavailable(Exception):
    """LRCLIB could not be asked (unreachable, too slow, a server error, an answer
    that is not what its API documents); ``str()`` says which, for logs."""


@dataclass(frozen=True, slots=True)
class LyricLine:
    """One sung line and the second it starts at."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class Lyrics:
    """A song's words.

    Attributes:
        track_name, artist_name: what LRCLIB calls the song it found.
        plain: the words, lines separated by newlines ("" for an instrumental).
        lines: the same lines with their start times, when synced (empty otherwise).
        instrumental: LRCLIB says the track has no words.
    """

    track_name: str
    artist_name: str
    plain: str
    lines: tuple[LyricLine, ...] = ()
    instrumental: bool = False

    @property
    def synced(self) -> bool:
        """Lines come with times."""
        return bool(self.lines)

    def line_at(self, position: float) -> int | None:
        """The index of the line sung at *position* seconds (the last one started),
        or None before the first."""
        index = bisect.bisect_right([line.at for line in self.lines], position) - 1
        return index if index >= 0 else None

    def next_change(self, position: float) -> float | None:
        """Seconds from *position* until the next line starts (None: no more lines)."""
        starts = [line.at for line in self.lines]
        index = bisect.bisect_right(starts, position)
        return starts[index] - position if index < len(starts) else None

    def as_dict(self) -> dict[str, Any]:
        """Plain values (a page's message)."""
        return {"track": self.track_name, "artist": self.artist_name, "plain": self.plain,
                "synced": [{"at": line.at, "text": line.text} for line in self.lines],
                "instrumental": self.instrumental}


def parse_lrc(text: str) -> tuple[LyricLine, ...]:
    """The timed lines of an LRC text (``[01:02.50]words``; several times on one line
    repeat it; ``[offset:+250]`` moves every line 250 ms earlier, as the LRC format
    says; other tags and untimed lines are skipped), in time order."""
    offset = 0.0
    lines: list[LyricLine] = []
    for raw in text.splitlines():
        raw = raw.strip()
        if (found := _OFFSET.match(raw)) is not None:
            offset = int(found.group(1)) / 1000
            continue
        stamps: list[float] = []
        rest = raw
        while (stamp := _TIMESTAMP.match(rest)) is not None:
            minutes, seconds = stamp.groups()
            stamps.append(int(minutes) * 60 + float(seconds.replace(":", ".")))
            rest = rest[stamp.end():]
        if not stamps:
            continue
        words = rest.strip()[:MAX_LINE]
        lines += [LyricLine(max(0.0, at - offset), words) for at in stamps]
        if len(lines) >= MAX_LINES:
            break
    lines.sort(key=lambda line: line.at)
    return tuple(lines[:MAX_LINES])


@dataclass(frozen=True, slots=True)
class LyricsQuery:
    """What is asked of LRCLIB for one track."""

    title: str
    artist: str = ""
    duration: float | None = None

    @property
    def key(self) -> str:
        """The cache key: case and spacing do not make another song."""
        duration = round(self.duration) if self.duration else 0
        return f"{self.artist}\n{self.title}\n{duration}".casefold()


def query_for(title: str, duration: float | None = None) -> LyricsQuery | None:
    """The query for a track called *title* ("Artist - Song (Official Video)"), or None
    when there is nothing to search for."""
    cleaned = _NOISE.sub("", title)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        return None
    parts = _SEPARATOR.split(cleaned, maxsplit=1)
    duration = duration if duration and math.isfinite(duration) and duration > 0 else None
    if len(parts) == 2 and parts[0] and parts[1]:
        return LyricsQuery(parts[1].strip(), parts[0].strip(), duration)
    return LyricsQuery(cleaned, "", duration)


class LyricsCache:
    """Answers by query key, least recently used out first. Pure: the time is passed in.

    Args:
        max_entries: queries kept (one song's words are a few kilobytes).
        found_ttl: seconds found lyrics are kept.
        none_ttl: seconds "LRCLIB has none" is kept (someone may add them).
        failure_ttl: seconds a failed lookup is kept.
    """

    def __init__(self, *, max_entries: int = 256, found_ttl: float = 86_400.0,
                 none_ttl: float = 3_600.0, failure_ttl: float = FAILURE_TTL) -> None:
        self.max_entries = max_entries
        self.found_ttl = found_ttl
        self.none_ttl = none_ttl
        self.failure_ttl = failure_ttl
        self._entries: OrderedDict[str, tuple[float, Lyrics | LyricsUnavailable | None]] = (
            OrderedDict())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> tuple[bool, Lyrics | LyricsUnavailable | None]:
        """``(known, answer)``: *answer* is the lyrics, None (LRCLIB has none) or the
        failure, when *known*."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, answer = entry
        if now >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, answer

    def put(self, key: str, answer: Lyrics | LyricsUnavailable | None, now: float) -> None:
        """Remember *answer* for *key*."""
        match answer:
            case Lyrics():
                ttl = self.found_ttl
            case None:
                ttl = self.none_ttl
            case _:
                ttl = self.failure_ttl
        self._entries[key] = (now + ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _transport_errors(what: str) -> dict[Any, Callable[[Exception], Exception]]:
    return {
        (httpx.TimeoutException, TimeoutError):
            lambda exc: LyricsUnavailable(f"{what}: timed out"),
        httpx.HTTPError: lambda exc: LyricsUnavailable(f"{what}: {exc!r}"),
    }


class LrclibClient:
    """LRCLIB's two read endpoints.

    Args:
        base_url: LRCLIB's address (``https://lrclib.net``; a stand-in in tests).
        timeout: seconds each request may take in all.
        max_bytes: longest answer read (a search answers at most 20 records, each
            with the words twice: well under this).
        user_agent: who is asking (LRCLIB asks clients to say).
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0, max_bytes: int = 512 * 1024,
                 user_agent: str = "", transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        user_agent = user_agent or _user_agent()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, follow_redirects=False,
            headers={"User-Agent": user_agent, "Lrclib-Client": user_agent},
            transport=transport)

    async def aclose(self) -> None:
        """Close the connections. Idempotent."""
        await self._client.aclose()

    async def get(self, query: LyricsQuery) -> dict[str, Any] | None:
        """``/api/get`` for *query* (which needs an artist): the record, or None (404).

        Raises:
            LyricsUnavailable: see the class.
        """
        params: dict[str, str | int] = {"track_name": query.title,
                                        "artist_name": query.artist}
        if query.duration:
            params["duration"] = round(query.duration)
        document = await self._json("/api/get", params)
        if document is None:
            return None
        if not isinstance(document, dict):
            raise LyricsUnavailable("/api/get: the answer is not a record")
        return document

    async def search(self, text: str) -> list[dict[str, Any]]:
        """``/api/search?q=``: the records found (maybe none).

        Raises:
            LyricsUnavailable: see the class.
        """
        document = await self._json("/api/search", {"q": text})
        if document is None:
            return []
        if not isinstance(document, list):
            raise LyricsUnavailable("/api/search: the answer is not a list")
        return [record for record in document if isinstance(record, dict)]

    async def _json(self, path: str, params: dict[str, str | int]) -> Any:
        started = time.monotonic()
        with map_exceptions(_transport_errors(path)):
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", path, params=params) as response:
                    if response.status_code == 404:
                        return None
                    if response.status_code != 200:
                        raise LyricsUnavailable(f"{path}: HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise LyricsUnavailable(
                                f"{path}: an answer longer than {self.max_bytes} bytes")
        log.debug("LRCLIB %s answered in %.2f s", path, time.monotonic() - started)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise LyricsUnavailable(f"{path}: the answer is not JSON") from exc


def _user_agent() -> str:
    """``audiogate/<version> (...)``: LRCLIB asks clients to name themselves."""
    try:
        version = importlib.metadata.version("audiogate")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"audiogate/{version} (Discord music bot and web player)"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _has_words(record: dict[str, Any]) -> bool:
    return bool(record.get("instrumental") is True or _text(record.get("plainLyrics")).strip()
                or _text(record.get("syncedLyrics")).strip())


def lyrics_from(record: dict[str, Any], duration: float | None) -> Lyrics | None:
    """The ``Lyrics`` of one LRCLIB record (its times only when its duration is within
    ``SYNC_TOLERANCE`` of *duration*, or *duration* is unknown); None when it has none."""
    if not _has_words(record):
        return None
    name, artist = _text(record.get("trackName")), _text(record.get("artistName"))
    if record.get("instrumental") is True:
        return Lyrics(name, artist, "", (), instrumental=True)
    lines = parse_lrc(_text(record.get("syncedLyrics")))
    plain = _text(record.get("plainLyrics")).strip() or "\n".join(
        line.text for line in lines)
    found = _number(record.get("duration"))
    if duration is not None and (found is None or abs(found - duration) > SYNC_TOLERANCE):
        lines = ()
    return Lyrics(name, artist, plain, lines)


def best_record(records: list[dict[str, Any]], duration: float | None
                ) -> dict[str, Any] | None:
    """The record to use: one with lyrics, the closest in duration first (synced ones
    before plain ones among equally close), LRCLIB's order otherwise."""
    usable = [r for r in records if _has_words(r)]
    if not usable:
        return None

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[float, int, int]:
        order, record = item
        found = _number(record.get("duration"))
        gap = abs(found - duration) if duration is not None and found is not None else 0.0
        close = 0.0 if gap <= SYNC_TOLERANCE else gap
        synced = 0 if _text(record.get("syncedLyrics")).strip() else 1
        return (close, synced, order)

    return min(enumerate(usable), key=rank)[1]


class LyricsService:
    """Lyrics by track, cached, one lookup per track at a time.

    Args:
        client: LRCLIB (None: lyrics are off, every answer is "none").
        cache: the answers kept.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, client: LrclibClient | None, *, cache: LyricsCache | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.cache = cache if cache is not None else LyricsCache()
        self._clock = clock
        self._lookups: dict[str, asyncio.Task[Lyrics | LyricsUnavailable | None]] = {}
        self._tasks = TaskOwner(LOOKUP.owner, logger=log)
        #: Lookups made (at LRCLIB), answered from the cache, failed.
        self.lookups = 0
        self.cache_hits = 0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        """A lyrics source is configured."""
        return self.client is not None

    def cached(self, track: Track) -> tuple[bool, Lyrics | None]:
        """``(known, lyrics)`` for *track* without asking anyone: *known* is False when
        it was never looked up (or the answer expired, or the lookup failed)."""
        query = query_for(track.title, track.duration)
        if query is None or self.client is None:
            return True, None
        known, answer = self.cache.get(query.key, self._clock())
        if not known or isinstance(answer, LyricsUnavailable):
            return False, None
        return True, answer

    async def for_track(self, track: Track) -> Lyrics | None:
        """*track*'s lyrics, or None when LRCLIB has none (or lyrics are off).
        Cancelling is safe (a shared lookup goes on for the others).

        Raises:
            LyricsUnavailable: LRCLIB could not be asked.
        """
        query = query_for(track.title, track.duration)
        if query is None or self.client is None:
            return None
        known, answer = self.cache.get(query.key, self._clock())
        if known:
            self.cache_hits += 1
        else:
            if self._tasks.closed:
                raise LyricsUnavailable("the gateway is stopping")
            answer = await asyncio.shield(self._start(query))
        if isinstance(answer, LyricsUnavailable):
            raise LyricsUnavailable(str(answer))
        return answer

    def prefetch(self, track: Track
                 ) -> asyncio.Task[Lyrics | LyricsUnavailable | None] | None:
        """Start looking *track*'s lyrics up, if they are not known (``cached``);
        returns the lookup, which a caller may watch (never cancel: it is shared), or
        None when there is nothing to wait for."""
        query = query_for(track.title, track.duration)
        if query is None or self.client is None or self._tasks.closed:
            return None
        known, _answer = self.cache.get(query.key, self._clock())
        # Known, or failed lately (not asked again before ``FAILURE_TTL``).
        return None if known else self._start(query)

    def _start(self, query: LyricsQuery) -> asyncio.Task[Lyrics | LyricsUnavailable | None]:
        task = self._lookups.get(query.key)
        if task is None:
            digest = hashlib.sha1(query.key.encode()).hexdigest()[:10]
            task = self._tasks.spawn(LOOKUP, self._lookup(query), key=digest)
            self._lookups[query.key] = task
        return task

    async def aclose(self) -> None:
        """Cancel the lookups under way and close the client. Idempotent."""
        await self._tasks.aclose()
        self._lookups.clear()
        if self.client is not None:
            await self.client.aclose()

    async def _lookup(self, query: LyricsQuery) -> Lyrics | LyricsUnavailable | None:
        assert self.client is not None
        self.lookups += 1
        answer: Lyrics | LyricsUnavailable | None
        try:
            try:
                answer = await self._ask(self.client, query)
            except LyricsUnavailable as exc:
                self.failures += 1
                log.warning("lyrics lookup failed: %s", exc)
                answer = exc
            # Cached before the lookup is forgotten: a caller in between finds one.
            self.cache.put(query.key, answer, self._clock())
        finally:
            self._lookups.pop(query.key, None)
        return answer

    @staticmethod
    async def _ask(client: LrclibClient, query: LyricsQuery) -> Lyrics | None:
        if query.artist:
            record = await client.get(query)
            if record is not None and (found := lyrics_from(record, query.duration)):
                return found
        words = f"{query.artist} {query.title}".strip()
        record = best_record(await client.search(words), query.duration)
        return lyrics_from(record, query.duration) if record is not None else None
