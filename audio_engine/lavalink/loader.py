"""``/v4/loadtracks``: from a Lavalink identifier to a load result, through the engine's
own resolver (the front's yt-dlp pool and media probes).

Identifiers, as Lavalink's source managers take them:

- ``ytsearch:QUERY`` (also ``ytmsearch:``) and ``scsearch:QUERY``: a ``search`` result
  (yt-dlp's YouTube and SoundCloud searches);
- an ``http(s)`` link to a media file: one ``http`` track (its tags, or its file name);
- another ``http(s)`` URL: whatever yt-dlp makes of the page: one track (``youtube``,
  ``soundcloud``, or ``ytdlp`` for other sites) or a ``playlist``;
- a local path (absolute, or ``file://``) under ``ENGINE_MEDIA_DIR``: one ``local``
  track;
- anything else: ``empty``, as Lavalink answers an identifier no source takes.

Failures are ``error`` results with Lavalink's exception object (the resolver's words:
they never name server paths or internal addresses). Tracks are encoded with
``protocol.lavalink`` (version 3, as Lavalink writes them), so clients decode them and
Lavalink nodes can read them back.
"""

from __future__ import annotations

import urllib.parse
from pathlib import PurePosixPath
from typing import Any, Final

from audio_engine.lavalink.errors import LavalinkError
from audio_engine.sources.resolver import MEDIA_EXTENSIONS, ResolveError, Resolver
from protocol.lavalink import (
    STREAM_LENGTH,
    DecodedTrack,
    EmptyResult,
    ErrorResult,
    Playlist,
    PlaylistInfo,
    PlaylistResult,
    SearchResult,
    Severity,
    Track,
    TrackException,
    TrackResult,
    probe_details,
)

__all__ = ["SEARCH_LIMIT", "LoadOutcome", "TrackLoader", "play_url"]

#: Tracks a search returns (Lavalink's YouTube search gives about 20).
SEARCH_LIMIT: Final = 20
#: Identifier prefixes of searches, and the yt-dlp search they run.
_SEARCHES: Final = {"ytsearch:": "ytsearch", "ytmsearch:": "ytsearch", "scsearch:": "scsearch"}
#: Container probe names (lavaplayer's) by file extension, for ``http``/``local``
#: tracks' details.
_PROBES: Final = {
    ".mp3": "mp3", ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg", ".flac": "flac",
    ".wav": "wav", ".webm": "matroska/webm", ".weba": "matroska/webm",
    ".mka": "matroska/webm", ".mkv": "matroska/webm", ".m4a": "mp4", ".mp4": "mp4",
    ".aac": "adts",
}
_UNKNOWN_TITLE: Final = "Unknown title"
_UNKNOWN_AUTHOR: Final = "Unknown artist"

LoadOutcome = TrackResult | PlaylistResult | SearchResult | EmptyResult | ErrorResult


def _failure(message: str, severity: Severity = Severity.COMMON) -> ErrorResult:
    return ErrorResult(data=TrackException(message=message, severity=severity,
                                           cause=f"audiogate.ResolveError: {message}"))


def _length(seconds: float) -> tuple[int, bool]:
    """Lavalink's ``length`` (ms) and ``isStream`` for a duration (0: unknown, a stream)."""
    if seconds <= 0:
        return STREAM_LENGTH, True
    return round(seconds * 1000), False


def _source_of(entry: dict[str, Any], url: str) -> str:
    extractor = str(entry.get("extractor") or "").lower()
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if extractor.startswith("youtube") or host.endswith(("youtube.com", "youtu.be")):
        return "youtube"
    if extractor.startswith("soundcloud") or host.endswith("soundcloud.com"):
        return "soundcloud"
    return "ytdlp"


def _page_track(entry: dict[str, Any], *, source: str | None = None) -> DecodedTrack:
    """A track yt-dlp found (a page, a playlist entry, a search result); a link to a
    media file (a podcast feed's enclosure) is an ``http`` track."""
    url = str(entry.get("url") or "")
    suffix = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).suffix
    if source is None and suffix.lower() in MEDIA_EXTENSIONS:
        info = {"title": entry.get("title"), "author": entry.get("uploader"),
                "duration": entry.get("duration")}
        return _direct_track(url, info, local=False)
    source = source or _source_of(entry, url)
    video_id = str(entry.get("id") or "")
    if source == "youtube" and video_id and not url.startswith("http"):
        url = f"https://www.youtube.com/watch?v={video_id}"
    length, stream = _length(float(entry.get("duration") or 0))
    return DecodedTrack(
        title=str(entry.get("title") or _UNKNOWN_TITLE),
        author=str(entry.get("uploader") or entry.get("channel") or _UNKNOWN_AUTHOR),
        length=length, identifier=video_id if source == "youtube" and video_id else url,
        is_stream=stream, uri=url or None,
        artwork_url=str(entry.get("thumbnail") or "") or None, isrc=None, source_name=source)


def _direct_track(identifier: str, info: dict[str, Any], *, local: bool) -> DecodedTrack:
    """An ``http`` or ``local`` track of a media file, as lavaplayer's sources make them."""
    path = urllib.parse.urlsplit(identifier).path if not local else identifier
    probe = _PROBES.get(PurePosixPath(urllib.parse.unquote(path)).suffix.lower(), "mp3")
    length, stream = _length(float(info.get("duration") or 0))
    return DecodedTrack(
        title=str(info.get("title") or _UNKNOWN_TITLE),
        author=str(info.get("author") or _UNKNOWN_AUTHOR), length=length,
        identifier=identifier, is_stream=stream, uri=identifier, artwork_url=None, isrc=None,
        source_name="local" if local else "http", details=probe_details(probe))


def play_url(track: DecodedTrack) -> str | None:
    """What the engine opens to play *track*: its file, its link or its page (yt-dlp
    resolves pages when the play starts), or None when it names nothing we can open
    (a plugin's source with no URL)."""
    match track.source_name:
        case "local":
            return track.uri or track.identifier
        case "youtube":
            return track.uri or f"https://www.youtube.com/watch?v={track.identifier}"
    for candidate in (track.uri, track.identifier):
        if candidate and urllib.parse.urlsplit(candidate).scheme in ("http", "https"):
            return candidate
    return None


class TrackLoader:
    """Loads identifiers with the engine's resolver (see the module docstring)."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def load(self, identifier: str, *, caller: str) -> LoadOutcome:
        """The load result of *identifier*; never raises for what a client sent.
        Cancelling is safe (a running resolution is killed)."""
        identifier = identifier.strip()
        for prefix, site in _SEARCHES.items():
            if identifier.startswith(prefix):
                return await self._search(identifier[len(prefix):].strip(), site, caller)
        parsed = urllib.parse.urlsplit(identifier)
        local = parsed.scheme == "file" or (not parsed.scheme and identifier.startswith("/"))
        if not local and parsed.scheme not in ("http", "https"):
            return EmptyResult()
        try:
            info = await self._resolver.describe(identifier, caller=caller)
        except ResolveError as exc:
            return _failure(str(exc))
        if info["direct"]:
            track = _direct_track(identifier, info, local=local)
            return TrackResult(data=Track.from_decoded(track))
        entries = [e for e in info["entries"] if e.get("url") or e.get("id")]
        if not entries:
            return EmptyResult()
        if not info["is_playlist"]:
            entry = dict(entries[0], url=entries[0].get("url") or identifier)
            return TrackResult(data=Track.from_decoded(_page_track(entry)))
        tracks = tuple(Track.from_decoded(_page_track(e)) for e in entries)
        return PlaylistResult(data=Playlist(
            info=PlaylistInfo(name=info["title"] or _UNKNOWN_TITLE), tracks=tracks))

    async def _search(self, query: str, site: str, caller: str) -> LoadOutcome:
        if not query:
            return EmptyResult()
        try:
            found = await self._resolver.search(query, caller=caller, limit=SEARCH_LIMIT,
                                                site=site)
        except ResolveError as exc:
            return _failure(str(exc), Severity.SUSPICIOUS)
        source = "youtube" if site == "ytsearch" else "soundcloud"
        tracks = tuple(Track.from_decoded(_page_track(
            {**entry, "uploader": entry.get("channel")}, source=source)) for entry in found)
        return SearchResult(data=tracks) if tracks else EmptyResult()

    async def load_one(self, identifier: str, *, caller: str) -> Track:
        """The single track *identifier* names (a player update's ``identifier``).

        Raises:
            LavalinkError: 400 for a playlist, a search or nothing; 500 when loading
                failed (Lavalink's answers).
        """
        match await self.load(identifier, caller=caller):
            case TrackResult(data=track):
                return track
            case ErrorResult(data=exception):
                raise LavalinkError(500, exception.message or "loading failed")
            case PlaylistResult() | SearchResult():
                raise LavalinkError(400, "Cannot play a playlist or search result")
            case _:
                raise LavalinkError(400, "No matches found for identifier")
