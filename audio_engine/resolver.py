"""From what a user typed to something FFmpeg can open, and the catalogue endpoints.

* A local file (a path or a ``file://`` URL) and a direct ``http(s)`` link to a media
  file (known extension) are opened as they are: no network round trip before the
  first byte of audio, and they work offline.
* Anything else ``http(s)`` goes through yt-dlp (``bestaudio``), off the event loop,
  bounded in time and in concurrency.

The same yt-dlp plumbing answers ``/metadata``, ``/playlist`` and ``/search``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

import av

from audio_engine.url_policy import PolicyError, UrlPolicy

__all__ = [
    "MEDIA_EXTENSIONS",
    "MediaTarget",
    "ResolveError",
    "Resolver",
]

log = logging.getLogger(__name__)

#: File extensions treated as direct media links (opened without yt-dlp).
MEDIA_EXTENSIONS = frozenset(
    {".mp3", ".ogg", ".oga", ".opus", ".webm", ".weba", ".m4a", ".mp4", ".aac",
     ".flac", ".wav", ".mka", ".mkv", ".wma", ".aiff", ".aif"}
)

T = TypeVar("T")


class ResolveError(Exception):
    """The URL cannot be played; ``str()`` says why, in words for the user."""


@dataclass(frozen=True, slots=True)
class MediaTarget:
    """What FFmpeg should open for a play.

    *location* is a URL or an absolute file path; *http_headers* are sent with
    every request for it (yt-dlp's, for sites that need them).
    """

    location: str
    title: str = ""
    duration: float | None = None
    http_headers: Mapping[str, str] = field(default_factory=dict)
    is_local: bool = False


def _strip_ytdlp_prefix(message: str) -> str:
    return message.removeprefix("ERROR: ").strip()


def _best_thumbnail(entry: Mapping[str, Any]) -> str:
    thumbnail = entry.get("thumbnail")
    if isinstance(thumbnail, str):
        return thumbnail
    thumbnails = entry.get("thumbnails")
    if isinstance(thumbnails, list) and thumbnails:
        last = thumbnails[-1]
        if isinstance(last, dict) and isinstance(last.get("url"), str):
            return str(last["url"])
    return ""


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class Resolver:
    """Resolves play URLs and answers catalogue queries.

    Args:
        executor: threads for yt-dlp and probing (they block on the network).
        timeout: seconds allowed for one resolution or catalogue query.
        max_concurrent: most yt-dlp calls and probes running at once; more wait.
    """

    def __init__(self, executor: Executor, *, timeout: float, max_concurrent: int,
                 policy: UrlPolicy | None = None) -> None:
        self._executor = executor
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self.policy = policy or UrlPolicy(allow_private=True)


    # -- classification (pure) ------------------------------------------------

    def classify(self, url: str) -> MediaTarget | None:
        """Return a target for local files and direct media links, None when
        yt-dlp is needed. (The host policy is checked by the async callers.)

        Raises:
            ResolveError: for unsupported schemes, files outside the media
                directory, and missing local files.
        """
        parsed = urllib.parse.urlsplit(url)
        scheme = parsed.scheme.lower()
        if scheme == "file" or (not scheme and url.startswith("/")):
            try:
                path = self.policy.local_path(url)
            except PolicyError as exc:
                raise ResolveError(str(exc)) from None
            if not path.is_file():
                raise ResolveError(f"file not found: {path}")
            if not os.access(path, os.R_OK):
                raise ResolveError(f"file not readable: {path}")
            return MediaTarget(str(path), title=path.stem, is_local=True)
        if scheme not in {"http", "https"}:
            raise ResolveError(
                f"unsupported URL scheme {scheme or '(none)'!r}: "
                "only http, https and local files can be played"
            )
        if not parsed.hostname:
            raise ResolveError("URL has no host")
        suffix = PurePosixPath(urllib.parse.unquote(parsed.path)).suffix.lower()
        if suffix in MEDIA_EXTENSIONS:
            title = PurePosixPath(urllib.parse.unquote(parsed.path)).stem
            return MediaTarget(url, title=title)
        return None

    # -- play -----------------------------------------------------------------

    async def resolve(self, url: str) -> MediaTarget:
        """Resolve *url* for playing. Direct links and files answer at once; yt-dlp
        runs at most ``max_concurrent`` at a time, the rest wait their turn.

        Raises:
            ResolveError: unsupported, missing, or extraction failed/timed out.
        Cancelling is safe (a running yt-dlp thread finishes in the background,
        bounded by its socket timeout).
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            return direct
        info = await self._run(self._extract, url, True)
        if info.get("_type") == "playlist":
            entries = [e for e in info.get("entries") or [] if isinstance(e, dict)]
            if not entries:
                raise ResolveError("extraction failed: playlist is empty")
            info = entries[0]
        location = info.get("url")
        if not isinstance(location, str) or not location:
            raise ResolveError("extraction failed: no playable audio format found")
        await self._check_host(location)
        headers = info.get("http_headers") or {}
        return MediaTarget(
            location,
            title=str(info.get("title") or ""),
            duration=_number(info.get("duration")) or None,
            http_headers={str(k): str(v) for k, v in headers.items()},
        )

    # -- catalogue ------------------------------------------------------------

    async def metadata(self, url: str) -> dict[str, Any]:
        """``/metadata``: title, duration, thumbnail and whether it is a playlist.

        Raises:
            ResolveError: as ``resolve``.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            duration, title = await self._run(_probe, direct)
            return {
                "url": url,
                "title": title or direct.title,
                "duration": duration,
                "thumbnail": "",
                "is_playlist": False,
            }
        info = await self._run(self._extract, url, False)
        return {
            "url": url,
            "title": str(info.get("title") or ""),
            "duration": _number(info.get("duration")),
            "thumbnail": _best_thumbnail(info),
            "is_playlist": info.get("_type") == "playlist",
        }

    async def playlist(self, url: str) -> list[dict[str, Any]]:
        """``/playlist``: the entries of a playlist (one entry for a single item).

        Raises:
            ResolveError: as ``resolve``.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            duration, title = await self._run(_probe, direct)
            return [{"url": url, "title": title or direct.title, "duration": duration,
                     "thumbnail": ""}]
        info = await self._run(self._extract, url, False)
        entries = info.get("entries") if info.get("_type") == "playlist" else [info]
        out = []
        for entry in entries or []:
            if not isinstance(entry, dict):
                continue
            out.append(
                {
                    "url": str(entry.get("url") or entry.get("webpage_url") or ""),
                    "title": str(entry.get("title") or ""),
                    "duration": _number(entry.get("duration")),
                    "thumbnail": _best_thumbnail(entry),
                }
            )
        return out

    async def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """``/search``: YouTube search results through yt-dlp.

        Raises:
            ResolveError: when the search fails (always, offline).
        """
        info = await self._run(self._extract, f"ytsearch{limit}:{query}", False)
        results = []
        for entry in info.get("entries") or []:
            if not isinstance(entry, dict):
                continue
            video_id = str(entry.get("id") or "")
            url = str(entry.get("url") or "")
            if video_id and not url.startswith("http"):
                url = f"https://www.youtube.com/watch?v={video_id}"
            results.append(
                {
                    "id": video_id,
                    "url": url,
                    "title": str(entry.get("title") or ""),
                    "duration": _number(entry.get("duration")),
                    "thumbnail": _best_thumbnail(entry),
                    "channel": str(entry.get("channel") or entry.get("uploader") or ""),
                }
            )
        return results

    # -- plumbing -------------------------------------------------------------

    async def _classify_allowed(self, url: str) -> MediaTarget | None:
        """``classify``, plus the host policy for every network URL."""
        direct = self.classify(url)
        if direct is None or not direct.is_local:
            await self._check_host(url)
        return direct

    async def _check_host(self, url: str) -> None:
        try:
            await self.policy.check_host(url)
        except PolicyError as exc:
            raise ResolveError(str(exc)) from None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        async with self._slots:
            future = loop.run_in_executor(self._executor, function, *args)
            try:
                return await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise ResolveError(
                    f"extraction failed: timed out after {self._timeout:g} s"
                ) from None

    def _extract(self, url: str, resolve_formats: bool) -> dict[str, Any]:
        import yt_dlp  # type: ignore[import-untyped]  # yt-dlp ships no type information

        options: dict[str, Any] = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "skip_download": True,
            "noplaylist": resolve_formats,
            "socket_timeout": self._timeout,
            "cachedir": False,
            "logger": _YtdlpLog(),
        }
        if resolve_formats:
            options["format"] = "bestaudio/best"
        else:
            options["extract_flat"] = "in_playlist"
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=False, process=True)
        except yt_dlp.utils.DownloadError as exc:
            raise ResolveError(f"extraction failed: {_strip_ytdlp_prefix(str(exc))}") from None
        except Exception as exc:  # yt-dlp raises many things on odd pages
            raise ResolveError(f"extraction failed: {exc}") from None
        if not isinstance(info, dict):
            raise ResolveError("extraction failed: nothing found")
        return dict(info)


class _YtdlpLog:
    """Routes yt-dlp's own messages to our log at debug level (errors become
    ResolveError, so they need no log line here)."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        log.debug("yt-dlp warning: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", message)


def _probe(target: MediaTarget) -> tuple[float, str]:
    """Duration and title tag of a direct media target (runs in a thread)."""
    try:
        with av.open(target.location, timeout=(10.0, 10.0)) as container:
            duration = (container.duration or 0) / 1_000_000
            title = str(container.metadata.get("title") or "")
            return round(duration, 3), title
    except (av.FFmpegError, OSError) as exc:
        raise ResolveError(f"could not read media: {exc}") from None
