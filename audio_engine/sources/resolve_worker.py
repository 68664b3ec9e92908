"""A resolution worker process: yt-dlp and media probing, where they can be killed.

``python -m audio_engine.sources.resolve_worker --memory-mb N`` reads one JSON job per
line on stdin and writes one JSON answer per line on stdout, one job at a time.
The engine (``resolve_pool.py``) kills it when a job passes its deadline, when
the caller gave up, and on shutdown; a worker that ran out of memory just dies.

Before anything else it caps its own data memory (``RLIMIT_DATA``: heap and
anonymous mappings, which is what a page read into memory grows; address space
that is only reserved is not counted), lowers its CPU priority below the
engine's audio work, and asks the kernel to kill it if the engine dies
(``PR_SET_PDEATHSIG``). All its network traffic goes through the
engine's egress proxy, with the job's own credential, which checks every
destination and caps the bytes the job may download.

Jobs (``op``): ``play`` (the stream URL and headers of the best audio format),
``metadata``, ``playlist``, ``search`` (yt-dlp), ``probe`` (duration and title of
a direct media link or local file, with PyAV). Answers: ``{"ok": true,
"result": {...}}`` or ``{"ok": false, "error": "..."}``; results are trimmed to
what the engine uses, so a line stays small whatever the page held.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import sys
from collections.abc import Mapping
from typing import Any

from audio_engine.sources.length import length_is_a_guess
from audio_engine.sources.options import media_options
from audio_engine.sources.proxy_env import scrub_proxy_environment

__all__ = ["MAX_ENTRIES", "main"]

#: Most playlist entries or search results returned (a larger playlist is cut).
MAX_ENTRIES = 500
#: Longest string kept from a page (titles, URLs, thumbnails).
_MAX_TEXT = 4096
_PR_SET_PDEATHSIG = 1
#: Scheduling niceness of a worker: a hostile page can keep one busy (parsing)
#: until its deadline, and the engine's audio threads must win the CPU then.
_NICENESS = 10
def _limit_self(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(_NICENESS)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the engine kills us itself
        pass
    if os.getppid() == 1:  # the engine died before the line above ran
        sys.exit(1)


def _text(value: object) -> str:
    return str(value)[:_MAX_TEXT] if value is not None else ""


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _best_thumbnail(entry: Mapping[str, Any]) -> str:
    thumbnail = entry.get("thumbnail")
    if isinstance(thumbnail, str):
        return _text(thumbnail)
    thumbnails = entry.get("thumbnails")
    if isinstance(thumbnails, list) and thumbnails:
        last = thumbnails[-1]
        if isinstance(last, dict) and isinstance(last.get("url"), str):
            return _text(last["url"])
    return ""


class _Quiet:
    """yt-dlp's messages: errors become the answer, the rest is dropped."""

    def debug(self, message: str) -> None:
        return

    info = warning = error = debug


class JobError(Exception):
    """The job failed; ``str()`` is yt-dlp's or FFmpeg's reason."""


def _extract(url: str, job: Mapping[str, Any], *, formats: bool) -> dict[str, Any]:
    import yt_dlp  # type: ignore[import-untyped]  # here: only jobs that need it pay

    options: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "skip_download": True,
        "noplaylist": formats,
        "socket_timeout": float(job.get("timeout", 20.0)),
        "cachedir": False,
        "logger": _Quiet(),
        "proxy": job.get("proxy") or "",
        "playlistend": MAX_ENTRIES,
    }
    if formats:
        options["format"] = "bestaudio/best"
    else:
        options["extract_flat"] = "in_playlist"
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False, process=True)
    except yt_dlp.utils.DownloadError as exc:
        raise JobError(str(exc).removeprefix("ERROR: ").strip()) from exc
    except MemoryError:
        raise
    except Exception as exc:  # yt-dlp raises many things on odd pages
        raise JobError(str(exc) or type(exc).__name__) from exc
    if not isinstance(info, dict):
        raise JobError("nothing found")
    return info


def _entries(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = info.get("entries")
    return [e for e in (entries or []) if isinstance(e, dict)][:MAX_ENTRIES]


def _play(job: Mapping[str, Any]) -> dict[str, Any]:
    info = _extract(job["url"], job, formats=True)
    if info.get("_type") == "playlist":
        entries = _entries(info)
        if not entries:
            raise JobError("playlist is empty")
        info = entries[0]
    location = info.get("url")
    if not isinstance(location, str) or not location:
        raise JobError("no playable audio format found")
    headers = info.get("http_headers") or {}
    return {
        "url": location,
        "title": _text(info.get("title")),
        "duration": _number(info.get("duration")),
        "http_headers": {_text(k): _text(v) for k, v in dict(headers).items()},
    }


def _metadata(job: Mapping[str, Any]) -> dict[str, Any]:
    info = _extract(job["url"], job, formats=False)
    return {
        "title": _text(info.get("title")),
        "duration": _number(info.get("duration")),
        "thumbnail": _best_thumbnail(info),
        "is_playlist": info.get("_type") == "playlist",
    }


def _playlist(job: Mapping[str, Any]) -> dict[str, Any]:
    info = _extract(job["url"], job, formats=False)
    playlist = info.get("_type") == "playlist"
    entries = _entries(info) if playlist else [info]
    return {"is_playlist": playlist, "title": _text(info.get("title")), "entries": [
        {
            "url": _text(entry.get("url") or entry.get("webpage_url")),
            "title": _text(entry.get("title")),
            "duration": _number(entry.get("duration")),
            "thumbnail": _best_thumbnail(entry),
            "id": _text(entry.get("id")),
            "uploader": _text(entry.get("uploader") or entry.get("channel")),
            "extractor": _text(entry.get("ie_key") or entry.get("extractor_key")),
        }
        for entry in entries
    ]}


def _search(job: Mapping[str, Any]) -> dict[str, Any]:
    limit = max(1, min(int(job.get("limit", 10)), 50))
    site = "scsearch" if job.get("site") == "scsearch" else "ytsearch"
    info = _extract(f"{site}{limit}:{job['query']}", job, formats=False)
    results = []
    for entry in _entries(info):
        video_id = _text(entry.get("id"))
        url = _text(entry.get("url"))
        if video_id and not url.startswith("http"):
            url = f"https://www.youtube.com/watch?v={video_id}"
        results.append({
            "id": video_id,
            "url": url,
            "title": _text(entry.get("title")),
            "duration": _number(entry.get("duration")),
            "thumbnail": _best_thumbnail(entry),
            "channel": _text(entry.get("channel") or entry.get("uploader")),
        })
    return {"results": results}


def _tag(container: Any, name: str) -> str:
    """A tag of the file: the container's, else its first audio stream's (Ogg and
    Opus files keep their Vorbis comments on the stream), any letter case."""
    for metadata in (container.metadata,
                     *(s.metadata for s in container.streams.audio[:1])):
        for key, value in metadata.items():
            if key.lower() == name and str(value).strip():
                return _text(str(value).strip())
    return ""


def _probe(job: Mapping[str, Any]) -> dict[str, Any]:
    import av  # imported here, as yt_dlp above

    timeout = float(job.get("timeout", 10.0))
    options = media_options(
        is_local=bool(job.get("local")), proxy=job.get("proxy"),
        headers=job.get("headers") or {}, open_timeout=timeout, read_timeout=timeout,
        index_bytes=int(job.get("index_bytes", 64 * 1024)),
    )
    try:
        with av.open(job["url"], options=options) as container:
            duration = (container.duration or 0) / 1_000_000
            if length_is_a_guess(container, is_local=bool(job.get("local"))):
                duration = 0.0  # unknown: an Ogg source that cannot seek
            return {"duration": round(duration, 3), "title": _tag(container, "title"),
                    "author": _tag(container, "artist")}
    except av.error.InvalidDataError as exc:
        raise JobError("not a playable media file") from exc
    except av.error.HTTPError as exc:
        raise JobError(f"the media server refused the request ({exc.strerror})") from exc
    except (av.FFmpegError, OSError) as exc:
        raise JobError(f"could not read media ({getattr(exc, 'strerror', None) or exc})"
                       ) from exc


_OPS = {"play": _play, "metadata": _metadata, "playlist": _playlist, "search": _search,
        "probe": _probe}


def _answer(job: Mapping[str, Any]) -> dict[str, Any]:
    proxy = job.get("proxy")
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        if proxy:
            os.environ[name] = str(proxy)
        else:
            os.environ.pop(name, None)
    operation = _OPS.get(str(job.get("op")))
    if operation is None:
        return {"ok": False, "error": f"unknown job {job.get('op')!r}"}
    try:
        return {"ok": True, "result": operation(job)}
    except JobError as exc:
        return {"ok": False, "error": str(exc)[:_MAX_TEXT]}
    except MemoryError:
        return {"ok": False, "error": "out of memory"}


def main() -> None:
    """Serve jobs from stdin until it closes."""
    parser = argparse.ArgumentParser(description="audiogate resolution worker")
    parser.add_argument("--memory-mb", type=int, default=512)
    args = parser.parse_args()
    _limit_self(args.memory_mb)
    scrub_proxy_environment()  # again: whoever started us may have set some
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when we stop
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except ValueError:
            answer: dict[str, Any] = {"ok": False, "error": "bad job"}
        else:
            answer = _answer(job) if isinstance(job, dict) else {"ok": False, "error": "bad job"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
