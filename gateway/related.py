"""Tracks related to a track, for autoplay: a provider seam and its YouTube provider.

A ``RelatedProvider`` says which tracks it can find relatives of (``handles``) and finds
them (``related``). ``RelatedTracks`` asks the first provider that handles a track; a
new source (a radio of some other site) is one more provider in its list.

``YouTubeMix`` is the one we have: a YouTube video's "Mix" playlist (what YouTube plays
after it, ``https://www.youtube.com/watch?v=ID&list=RDID``), read through the engine's
``/playlist`` (``EngineClient.playlist``), so yt-dlp runs where it always runs: in the
engine's killable resolution workers, with their deadline, memory cap and egress proxy,
never in the gateway.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Collection, Sequence
from typing import Protocol

from gateway.engine_client import EngineError, PlaylistResult
from gateway.player.track import Track

__all__ = [
    "AUTOPLAY",
    "Catalogue",
    "RelatedProvider",
    "RelatedTracks",
    "RelatedUnavailable",
    "YouTubeMix",
    "youtube_id",
]

#: Who asked for a track autoplay added (its ``requested_by``).
AUTOPLAY = "autoplay"
#: Seconds a related-tracks lookup may take (the engine's own deadline for yt-dlp is
#: ``ENGINE_RESOLVE_TIMEOUT``; this bounds the wait for a slot as well).
RELATED_TIMEOUT = 45.0

_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com",
                            "music.youtube.com", "youtu.be", "www.youtu.be"})
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{6,20}$")


class RelatedUnavailable(Exception):
    """Related tracks could not be looked up (the engine or the site failed); ``str()``
    is the engine's message, for logs."""


class Catalogue(Protocol):
    """The engine call a provider uses (``EngineClient``, or a node pool's catalogue)."""

    async def playlist(self, url: str) -> PlaylistResult: ...


class RelatedProvider(Protocol):
    """Finds tracks related to a track."""

    #: What the provider is called in messages ("YouTube").
    name: str

    def handles(self, track: Track) -> bool:
        """Whether this provider can find relatives of *track*."""
        ...

    async def related(self, track: Track, *, limit: int, exclude: Collection[str]
                      ) -> list[Track]:
        """Up to *limit* tracks related to *track*, none of whose links is in
        *exclude* (recently played or queued), asked for by ``AUTOPLAY``.
        Cancelling is safe.

        Raises:
            RelatedUnavailable: the lookup failed.
        """
        ...


def youtube_id(url: str) -> str | None:
    """The video id of a YouTube link (``watch?v=``, ``youtu.be/``, ``/shorts/``,
    ``/embed/``, ``/live/``), or None."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host not in _YOUTUBE_HOSTS:
        return None
    if host.endswith("youtu.be"):
        candidate = parts.path.strip("/").split("/")[0]
    elif parts.path.rstrip("/") == "/watch":
        candidate = urllib.parse.parse_qs(parts.query).get("v", [""])[0]
    else:
        segments = [s for s in parts.path.split("/") if s]
        candidate = (segments[1] if len(segments) >= 2
                     and segments[0] in ("shorts", "embed", "live", "v") else "")
    return candidate if _VIDEO_ID.match(candidate) else None


def _watch_url(video: str) -> str:
    return f"https://www.youtube.com/watch?v={video}"


class YouTubeMix:
    """Relatives of a YouTube video: its "Mix", through the engine's ``/playlist``.

    Args:
        catalogue: the engine's catalogue calls.
    """

    name = "YouTube"

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue

    def handles(self, track: Track) -> bool:
        """A YouTube video."""
        return youtube_id(track.url) is not None

    async def related(self, track: Track, *, limit: int, exclude: Collection[str]
                      ) -> list[Track]:
        """See ``RelatedProvider.related``; each track is a plain ``watch`` link."""
        video = youtube_id(track.url)
        if video is None:
            return []
        url = f"{_watch_url(video)}&list=RD{video}"
        try:
            async with asyncio.timeout(RELATED_TIMEOUT):
                found = await self._catalogue.playlist(url)
        except TimeoutError as exc:
            raise RelatedUnavailable("the mix took too long to read") from exc
        except EngineError as exc:
            raise RelatedUnavailable(str(exc)) from exc
        seen = {video} | {youtube_id(u) or u for u in exclude}
        out: list[Track] = []
        for entry in found.entries:
            key = youtube_id(entry.url) or entry.url
            if not entry.url or key in seen:
                continue
            seen.add(key)
            link = _watch_url(key) if key != entry.url else entry.url
            out.append(Track(link, title=entry.title, duration=entry.duration or None,
                             thumbnail=entry.thumbnail, requested_by=AUTOPLAY))
            if len(out) >= limit:
                break
        return out


class RelatedTracks:
    """The providers, asked in order: the first that handles a track answers for it.

    Args:
        providers: the providers (``YouTubeMix`` first in production).
    """

    def __init__(self, providers: Sequence[RelatedProvider]) -> None:
        self.providers = tuple(providers)

    def provider_for(self, track: Track) -> RelatedProvider | None:
        """The provider that finds relatives of *track*, if any."""
        return next((p for p in self.providers if p.handles(track)), None)

    @property
    def names(self) -> str:
        """The sources autoplay knows ("YouTube")."""
        return ", ".join(p.name for p in self.providers) or "none"
