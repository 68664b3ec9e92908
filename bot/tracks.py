"""From what someone typed after ``/play`` to tracks: links, playlists, search words.

A link is played as it is, with its title and duration when the engine's
``/metadata`` answers in time (a failure there is left to the play itself to
report). A playlist link becomes its entries (the engine's ``/playlist``), up to
a limit. Other text is searched (``bot.search``) and its best hit played.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot.errors import Problem, describe_engine_error
from bot.search import Search, SearchFailed, SearchHit
from bot.timeparse import format_time
from gateway.engine_client import EngineClient, EngineError
from gateway.player import Track

__all__ = ["CHOICE_LIMIT", "NotPlayable", "Resolved", "choice_name", "is_url", "resolve"]

#: Seconds allowed for reading a link's title and duration before playing it anyway.
METADATA_TIMEOUT = 8.0
#: Seconds allowed for reading a playlist's entries.
PLAYLIST_TIMEOUT = 30.0
#: Longest autocomplete choice name and value Discord accepts.
CHOICE_LIMIT = 100


class NotPlayable(Exception):
    """Nothing playable came of the query; ``str()`` says why, for people."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """Tracks to queue, and the playlist they came from (title, entries in all)."""

    tracks: list[Track]
    playlist: str | None = None
    total: int = 1


def is_url(text: str) -> bool:
    """An http(s) link with a host."""
    parsed = urllib.parse.urlsplit(text.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def choice_name(hit: SearchHit) -> str:
    """``Title — Channel (3:45)``, cut to what Discord shows."""
    name = hit.title or hit.url
    if hit.channel:
        name += f" — {hit.channel}"
    suffix = f" ({format_time(hit.duration)})" if hit.duration else ""
    room = CHOICE_LIMIT - len(suffix)
    if len(name) > room:
        name = name[: room - 1] + "…"
    return name + suffix


def _file_title(url: str) -> str:
    """``song`` for a link to ``.../song.mp3``; nothing for a page (``/watch`` says
    less than the link itself, which is what a track without a title shows)."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and suffix.isalnum() and len(suffix) <= 5 else ""


def _clean_entry_url(url: str) -> str:
    # yt-dlp's generic extractor appends its private data as a fragment.
    return url.split("#__youtubedl_smuggle", 1)[0]


async def resolve(query: str, requester: str, *, engine: EngineClient, search: Search,
                  playlist_limit: int) -> Resolved:
    """Tracks for *query*.

    Raises:
        NotPlayable: nothing found, or a playlist that cannot be read.
    Cancelling is safe (the engine requests are dropped with it).
    """
    if not is_url(query):
        try:
            hit = await search.first(query)
        except SearchFailed as exc:
            raise NotPlayable(f"Couldn't find that: {exc}.") from exc
        return Resolved([Track(hit.url, title=hit.title, duration=hit.duration,
                               requested_by=requester)])
    title = _file_title(query)
    duration: float | None = None
    is_playlist = False
    try:
        async with asyncio.timeout(METADATA_TIMEOUT):
            metadata = await engine.metadata(query)
        title, duration = metadata.title or title, metadata.duration or None
        is_playlist = metadata.is_playlist
    except (EngineError, TimeoutError):
        pass  # the play itself will say what is wrong, if anything
    if not is_playlist:
        return Resolved([Track(query, title=title, duration=duration, requested_by=requester)])
    try:
        async with asyncio.timeout(PLAYLIST_TIMEOUT):
            playlist = await engine.playlist(query)
    except TimeoutError as exc:
        raise NotPlayable(f"Couldn't read that playlist: {Problem.TIMEOUT.value}.") from exc
    except EngineError as exc:
        raise NotPlayable(f"Couldn't read that playlist: {describe_engine_error(exc)}.") from exc
    entries = [e for e in playlist.entries if e.url]
    if not entries:
        raise NotPlayable("That playlist has nothing I can play.")
    tracks = [Track(_clean_entry_url(e.url), title=e.title, duration=e.duration or None,
                    requested_by=requester) for e in entries[:playlist_limit]]
    return Resolved(tracks, title or "the playlist", len(entries))
