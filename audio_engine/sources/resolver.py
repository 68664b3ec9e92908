"""From what a user typed to something FFmpeg can open, and the catalogue endpoints.

* A local file (a path or a ``file://`` URL) and a direct ``http(s)`` link to a media
  file (known extension) are opened as they are: no network round trip before the
  first byte of audio, and they work offline.
* Anything else ``http(s)`` goes through yt-dlp (``bestaudio``).

The same yt-dlp plumbing answers ``/metadata``, ``/playlist`` and ``/search``, and
probes direct links for ``/metadata``. All of that runs in worker processes
(``resolve_pool.py``) with a hard deadline, fair slots per caller and a memory
cap, and downloads through the egress proxy (``egress.py``) with a byte cap per
job, so the policy covers every page and redirect yt-dlp follows.

Error messages are for users: they never show internal URLs, the proxy's
address or credentials, or server paths (the media directory's included).
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Protocol

from audio_engine.sources.egress import EgressProxy, Grant
from audio_engine.sources.resolve_pool import JobFailed, PoolClosed, WorkerLimits
from audio_engine.sources.tls_words import plain_words
from audio_engine.sources.url_policy import PolicyError, UrlPolicy

__all__ = [
    "MEDIA_EXTENSIONS",
    "JobRunner",
    "MediaTarget",
    "ResolveError",
    "Resolver",
    "user_text",
]

log = logging.getLogger(__name__)

#: File extensions treated as direct media links (opened without yt-dlp).
MEDIA_EXTENSIONS = frozenset(
    {".mp3", ".ogg", ".oga", ".opus", ".webm", ".weba", ".m4a", ".mp4", ".aac",
     ".flac", ".wav", ".mka", ".mkv", ".wma", ".aiff", ".aif"}
)

#: The keys of a ``/playlist`` entry, as the Go engine writes them.
_PLAYLIST_KEYS = ("url", "title", "duration", "thumbnail")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"<>:]+/)+[^\s/'\"<>:]*")


class JobRunner(Protocol):
    """Runs resolution jobs in killable worker processes: the ``ResolvePool``, or an
    engine worker's way to the front's pool."""

    @property
    def limits(self) -> WorkerLimits:
        """The pool's bounds (the job deadline is given to yt-dlp too)."""
        ...

    async def run(self, job: dict[str, Any], *, caller: str) -> dict[str, Any]:
        """Run *job* for *caller*; the worker's answer.

        Raises:
            JobFailed: it did not produce an answer (``JobTimedOut`` past the deadline).
        Cancelling is safe: the job's worker is killed.
        """
        ...


class ResolveError(Exception):
    """The URL cannot be played; ``str()`` says why, in words for the user.
    ``unavailable``: not the URL's fault, the engine is shutting down (503)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


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


def user_text(message: str, url: str = "") -> str:
    """*message* with every URL but the user's own *url*, and every absolute
    path, replaced by a placeholder: what yt-dlp and FFmpeg say may name
    redirect targets, the egress proxy (with its credential) or server paths.
    Python's ssl internals and yt-dlp's bug-report text are said in words
    (``tls_words``)."""

    def url_or_placeholder(match: re.Match[str]) -> str:
        found = match.group(0).rstrip(".,;)")
        tail = match.group(0)[len(found):]
        return (found if url and found == url else "(a URL)") + tail

    message = plain_words(message)
    return _PATH.sub("(a path)", _URL.sub(url_or_placeholder, message))


def _scheme_of(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


class Resolver:
    """Resolves play URLs and answers catalogue queries.

    Args:
        pool: the worker processes that run yt-dlp and probes.
        egress: the proxy every network job and source goes through.
        policy: the URL policy (also the egress proxy's).
        job_bytes: most bytes one resolution job may download.
        probe_timeout: seconds a probe may wait on the network per read.
        index_bytes: FFmpeg's ``indexmem`` for probes.
    """

    def __init__(self, pool: JobRunner, egress: EgressProxy, *, policy: UrlPolicy,
                 job_bytes: int = 16 * 1024 * 1024, probe_timeout: float = 10.0,
                 index_bytes: int = 32 * 1024) -> None:
        self.pool = pool
        self.egress = egress
        self.policy = policy
        self.job_bytes = job_bytes
        self.probe_timeout = probe_timeout
        self.index_bytes = index_bytes

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
                raise ResolveError(str(exc)) from exc
            name = self.policy.display_name(path)
            try:
                if not path.is_file():
                    raise ResolveError(f"file not found: {name}")
            except OSError as exc:
                raise ResolveError(f"file not found: {name}") from exc
            if not os.access(path, os.R_OK):
                raise ResolveError(f"file not readable: {name}")
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

    async def resolve(self, url: str, *, caller: str) -> MediaTarget:
        """Resolve *url* for playing. Direct links and files answer at once;
        yt-dlp runs on a worker, in one of *caller*'s fair slots.

        Raises:
            ResolveError: unsupported, missing, not allowed, or extraction
                failed or timed out.
        Cancelling is safe: a running job's worker is killed.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            return direct
        result = await self._job({"op": "play", "url": url}, url, caller)
        location = str(result.get("url") or "")
        if _scheme_of(location) not in {"http", "https"}:
            raise ResolveError("extraction failed: no playable audio format found")
        headers = result.get("http_headers")
        return MediaTarget(
            location,
            title=str(result.get("title") or ""),
            duration=float(result.get("duration") or 0) or None,
            http_headers={str(k): str(v) for k, v in (headers or {}).items()},
        )

    # -- catalogue ------------------------------------------------------------

    async def metadata(self, url: str, *, caller: str) -> dict[str, Any]:
        """``/metadata``: title, duration, thumbnail and whether it is a playlist.

        Raises:
            ResolveError: as ``resolve``.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            duration, title = await self._probe(direct, url, caller)
            return {"url": url, "title": title or direct.title, "duration": duration,
                    "thumbnail": "", "is_playlist": False}
        result = await self._job({"op": "metadata", "url": url}, url, caller)
        return {
            "url": url,
            "title": str(result.get("title") or ""),
            "duration": float(result.get("duration") or 0),
            "thumbnail": str(result.get("thumbnail") or ""),
            "is_playlist": bool(result.get("is_playlist")),
        }

    async def playlist(self, url: str, *, caller: str) -> list[dict[str, Any]]:
        """``/playlist``: the entries of a playlist (one entry for a single item).

        Raises:
            ResolveError: as ``resolve``.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            duration, title = await self._probe(direct, url, caller)
            return [{"url": url, "title": title or direct.title, "duration": duration,
                     "thumbnail": ""}]
        result = await self._job({"op": "playlist", "url": url}, url, caller)
        entries = result.get("entries")
        # The Go engine's entry keys only (the job tells more, for ``describe``).
        return [{key: e.get(key) for key in _PLAYLIST_KEYS}
                for e in entries or [] if isinstance(e, dict)]

    async def search(self, query: str, *, caller: str, limit: int = 10,
                     site: str = "ytsearch") -> list[dict[str, Any]]:
        """``/search``: YouTube search results through yt-dlp (*site* ``scsearch``:
        SoundCloud's).

        Raises:
            ResolveError: when the search fails (always, offline).
        """
        result = await self._job({"op": "search", "query": query, "limit": limit,
                                  "site": site}, "", caller)
        results = result.get("results")
        return [dict(r) for r in results or [] if isinstance(r, dict)]

    async def describe(self, url: str, *, caller: str) -> dict[str, Any]:
        """What a track loader needs to know of *url* (Lavalink's ``loadtracks``):
        for a local file or a direct link, ``{"direct": True, "duration", "title",
        "author"}`` from its tags; for a page, yt-dlp's flat view: ``{"direct": False,
        "title", "duration", "thumbnail", "uploader", "id", "is_playlist", "entries"}``
        (entries of a playlist as ``/playlist`` gives them).

        Raises:
            ResolveError: as ``resolve``.
        """
        direct = await self._classify_allowed(url)
        if direct is not None:
            job = {"op": "probe", "url": direct.location, "local": direct.is_local,
                   "headers": dict(direct.http_headers), "timeout": self.probe_timeout,
                   "index_bytes": self.index_bytes}
            result = await self._job(job, url, caller, network=not direct.is_local,
                                     prefix="could not read media")
            return {"direct": True, "duration": float(result.get("duration") or 0),
                    "title": str(result.get("title") or "") or direct.title,
                    "author": str(result.get("author") or "")}
        result = await self._job({"op": "playlist", "url": url}, url, caller)
        entries = [dict(e) for e in result.get("entries") or [] if isinstance(e, dict)]
        return {"direct": False, "is_playlist": bool(result.get("is_playlist")),
                "title": str(result.get("title") or ""), "entries": entries}

    # -- plumbing -------------------------------------------------------------

    async def _classify_allowed(self, url: str) -> MediaTarget | None:
        """``classify``, plus the host policy for every network URL (a quick
        first answer; the egress proxy checks every connection again)."""
        direct = self.classify(url)
        if direct is None or not direct.is_local:
            try:
                await self.policy.check_url(url)
            except PolicyError as exc:
                raise ResolveError(str(exc)) from exc
        return direct

    async def _probe(self, target: MediaTarget, url: str, caller: str) -> tuple[float, str]:
        job = {"op": "probe", "url": target.location, "local": target.is_local,
               "headers": dict(target.http_headers), "timeout": self.probe_timeout,
               "index_bytes": self.index_bytes}
        result = await self._job(job, url, caller, network=not target.is_local,
                                 prefix="could not read media")
        return float(result.get("duration") or 0), str(result.get("title") or "")

    async def _job(self, job: dict[str, Any], url: str, caller: str, *,
                   network: bool = True, prefix: str = "extraction failed") -> dict[str, Any]:
        """Run *job* on a worker with its own egress grant; its result, or a
        ResolveError in words for the user."""
        grant: Grant | None = None
        if network:
            grant = self.egress.grant(caller, max_bytes=self.job_bytes)
            job = {**job, "proxy": self.egress.url(grant),
                   "timeout": job.get("timeout", self.pool.limits.deadline)}
        try:
            answer = await self.pool.run(job, caller=caller)
        except JobFailed as exc:
            raise ResolveError(f"{prefix}: {self._why(grant, str(exc))}",
                               unavailable=isinstance(exc, PoolClosed)) from exc
        finally:
            if grant is not None:
                self.egress.revoke(grant)
        if not answer.get("ok"):
            reason = self._why(grant, user_text(str(answer.get("error") or "unknown"), url))
            log.debug("job %s for %s failed: %s", job.get("op"), caller, reason)
            raise ResolveError(f"{prefix}: {reason}")
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    @staticmethod
    def _why(grant: Grant | None, fallback: str) -> str:
        """The egress proxy's reason when it refused or cut a connection (a
        clearer story than the HTTP error the job saw), else *fallback*."""
        if grant is not None and grant.problem is not None:
            return grant.problem
        return fallback
