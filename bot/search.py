"""Search for ``/play``: autocomplete suggestions bounded in time, and a bounded cache.

Discord gives an autocomplete answer 3 seconds, and sends one request per
keystroke. So a suggestion search gets ``suggest_timeout`` seconds and is then
cancelled (its HTTP request to the engine is dropped with it: nothing runs on
for a caller that gave up); at most ``max_concurrent`` run at once and a keystroke
finding every slot busy gets no suggestions rather than a place in a queue.
Results are cached by normalised query (LRU, ``max_entries``, ``ttl``), so
typing back, choosing a suggestion, or ``/play`` with the same words costs no
second search. Failed searches are remembered briefly too, so an engine that
cannot reach the search site is not asked again on every keystroke.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.errors import Problem, describe_engine_error
from gateway.engine_client import EngineClient, EngineError

__all__ = ["Search", "SearchCache", "SearchFailed", "SearchHit", "Searcher", "engine_searcher"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result."""

    url: str
    title: str
    duration: float | None = None
    channel: str = ""


#: Runs one search (the engine's ``/search`` in production).
Searcher = Callable[[str], Awaitable[Sequence[SearchHit]]]


def engine_searcher(engine: EngineClient) -> Searcher:
    """Search through the engine's ``/search`` (yt-dlp's YouTube search)."""

    async def search(query: str) -> Sequence[SearchHit]:
        result = await engine.search(query)
        return [SearchHit(r.url, r.title, r.duration or None, r.channel)
                for r in result.results if r.url]

    return search


class SearchFailed(Exception):
    """A search for ``/play`` failed; ``str()`` says why, in words for people."""


def normalise(query: str) -> str:
    """The cache key: case and spacing do not make a different search."""
    return " ".join(query.casefold().split())


class SearchCache:
    """Recent results by normalised query: least recently used out first, and
    nothing older than its time to live. Pure: the time is passed in.

    Args:
        max_entries: queries kept (each holds at most a page of results).
        ttl: seconds results stay valid (search rankings drift).
        failure_ttl: seconds a failed search is remembered as "nothing".
    """

    def __init__(self, *, max_entries: int = 256, ttl: float = 600.0,
                 failure_ttl: float = 30.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self._entries: OrderedDict[str, tuple[float, tuple[SearchHit, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str, now: float) -> tuple[SearchHit, ...] | None:
        """Cached hits for *query*, or None when unknown or expired."""
        key = normalise(query)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, hits = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hits

    def put(self, query: str, hits: Sequence[SearchHit], now: float) -> None:
        """Remember *hits* for *query* (an empty list: a failure, kept briefly)."""
        key = normalise(query)
        ttl = self.ttl if hits else self.failure_ttl
        self._entries[key] = (now + ttl, tuple(hits))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class Search:
    """Suggestions and first results, through one cache.

    Args:
        searcher: runs a search.
        cache: the shared cache.
        suggest_timeout: seconds a suggestion search may take (Discord allows 3 in
            all; the rest is for the round trips).
        play_timeout: seconds a ``/play`` search may take (the command is deferred).
        max_concurrent: suggestion searches running at once.
        min_length: shorter text gets no suggestions (too vague to be worth it).
    """

    def __init__(self, searcher: Searcher, *, cache: SearchCache | None = None,
                 suggest_timeout: float = 2.0, play_timeout: float = 20.0,
                 max_concurrent: int = 4, min_length: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._searcher = searcher
        self.cache = cache if cache is not None else SearchCache()
        self.suggest_timeout = suggest_timeout
        self.play_timeout = play_timeout
        self.min_length = min_length
        self._slots = asyncio.Semaphore(max_concurrent)
        self._clock = clock
        #: Searches run, answers from the cache, searches cut off by the time limit,
        #: keystrokes turned away because every slot was busy, failed searches.
        self.searches = 0
        self.cache_hits = 0
        self.timeouts = 0
        self.turned_away = 0
        self.failures = 0

    async def suggestions(self, query: str) -> tuple[SearchHit, ...]:
        """Hits for an autocomplete request: within ``suggest_timeout``, never an
        exception (no suggestions instead). Cancelling is safe."""
        if len(normalise(query)) < self.min_length:
            return ()
        cached = self.cache.get(query, self._clock())
        if cached is not None:
            self.cache_hits += 1
            return cached
        if self._slots.locked():
            self.turned_away += 1
            return ()
        async with self._slots:
            try:
                hits = await self._run(query, self.suggest_timeout)
            except SearchFailed:
                return ()
        return hits

    async def first(self, query: str) -> SearchHit:
        """The best hit for ``/play some words``.

        Raises:
            SearchFailed: nothing found, the search failed or took too long.
        """
        cached = self.cache.get(query, self._clock())
        if cached:
            self.cache_hits += 1
            return cached[0]
        hits = await self._run(query, self.play_timeout)
        if not hits:
            raise SearchFailed(Problem.NO_RESULTS.value)
        return hits[0]

    async def _run(self, query: str, limit: float) -> tuple[SearchHit, ...]:
        self.searches += 1
        try:
            async with asyncio.timeout(limit):
                hits = tuple(await self._searcher(query))
        except TimeoutError as exc:
            self.timeouts += 1
            raise SearchFailed(Problem.TIMEOUT.value) from exc
        except EngineError as exc:
            self.failures += 1
            self.cache.put(query, (), self._clock())
            raise SearchFailed(_search_problem(exc)) from exc
        self.cache.put(query, hits, self._clock())
        return hits


def _search_problem(exc: EngineError) -> str:
    text = describe_engine_error(exc)
    # A search that failed for a reason people cannot act on: say searching is down.
    if text in (Problem.OTHER.value, Problem.UNREACHABLE.value, Problem.NOT_FOUND.value,
                Problem.NOT_AUDIO.value):
        return Problem.SEARCH_FAILED.value
    return text
