"""Test aids for the engine processes the tests start: never part of the product.

Python imports ``sitecustomize`` at start-up from the first directory on its path that
has one; ``tests.support.hooks.hook_env`` puts this directory on ``PYTHONPATH`` with the
knobs below, so the engine's front and its worker processes (which inherit the
environment) apply them. Without a knob set, nothing is imported or changed.

- ``AUDIOGATE_TEST_LOOP_STALL_MS`` (and ``AUDIOGATE_TEST_LOOP_STALL_EVERY``, default 1):
  a worker keeps its event loop busy this long after every Nth tick, as a loaded
  engine's loop would be;
- ``AUDIOGATE_TEST_SESSION_CPU``: one unit of work (a plain transcoding session at
  complexity 10) costs this many cores, fixed: admission becomes deterministic (no
  measurement, no degradation rule);
- ``AUDIOGATE_TEST_RESTORE_AFTER``: seconds the load must stay low before the libopus
  complexity steps back up (instead of ``cost.RESTORE_AFTER``);
- ``AUDIOGATE_TEST_HUNG_AFTER``: seconds without a tick after which the front kills a
  worker (instead of ``failover.WORKER_HUNG_AFTER``);
- ``AUDIOGATE_TEST_YOUTUBE``: a JSON file of videos and mixes (``hooks.youtube_catalogue``):
  yt-dlp, in the resolution workers, answers YouTube links from it (a video plays the
  media URL it names; ``watch?v=ID&list=RDID`` is the video's "Mix" playlist; an unknown
  video is unavailable), as YouTube would through yt-dlp; every other link is yt-dlp's
  own business. YouTube is the edge the tests cannot reach: the engine, its workers, its
  catalogue endpoints and yt-dlp's API around the answer are the real ones.
"""

from __future__ import annotations

import os
import time
from typing import Any


def _stall_ticks(milliseconds: float, every: int) -> None:
    from audio_engine.engine import Engine

    original = Engine._tick

    def tick(self: Any, index: int, lateness: float) -> None:
        original(self, index, lateness)
        if index % every == 0:
            end = time.perf_counter() + milliseconds / 1000
            while time.perf_counter() < end:  # holds the GIL, as real work would
                pass

    Engine._tick = tick  # type: ignore[method-assign]


def _fixed_cost(cores: float) -> None:
    from audio_engine.cluster import cost, governor

    governor._prior_from = lambda bare_micros: cores
    original_init = governor.LoadGovernor.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.cost = cost.CostModel(cores)

    governor.LoadGovernor.__init__ = init  # type: ignore[method-assign]
    cost.CostModel.observe = lambda self, cores, units: None  # type: ignore[method-assign]
    governor._degraded = lambda room: False


_stall = float(os.environ.get("AUDIOGATE_TEST_LOOP_STALL_MS", "0") or 0)
if _stall > 0:
    _stall_ticks(_stall, int(os.environ.get("AUDIOGATE_TEST_LOOP_STALL_EVERY", "1") or 1))
_cost = float(os.environ.get("AUDIOGATE_TEST_SESSION_CPU", "0") or 0)
if _cost > 0:
    _fixed_cost(_cost)
_hung = float(os.environ.get("AUDIOGATE_TEST_HUNG_AFTER", "0") or 0)
if _hung > 0:
    from audio_engine.cluster import failover as _failover_module

    _failover_module.WORKER_HUNG_AFTER = _hung  # type: ignore[misc]
_restore = float(os.environ.get("AUDIOGATE_TEST_RESTORE_AFTER", "0") or 0)
if _restore > 0:
    from audio_engine.cluster import cost as _cost_module

    _cost_module.RESTORE_AFTER = _restore  # type: ignore[misc]


def _stand_in_youtube(catalogue_path: str) -> None:
    import json
    import urllib.parse
    from pathlib import Path

    import yt_dlp  # type: ignore[import-untyped]

    catalogue = json.loads(Path(catalogue_path).read_text(encoding="utf-8"))
    videos: dict[str, dict[str, Any]] = catalogue["videos"]
    mixes: dict[str, list[str]] = catalogue["mixes"]
    hosts = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
             "youtu.be"}

    def video_id(parts: urllib.parse.SplitResult) -> str:
        if parts.hostname == "youtu.be":
            return parts.path.strip("/")
        return urllib.parse.parse_qs(parts.query).get("v", [""])[0]

    def entry(vid: str) -> dict[str, Any]:
        known = videos[vid]
        return {"_type": "url", "ie_key": "Youtube", "id": vid,
                "url": f"https://www.youtube.com/watch?v={vid}", "title": known["title"],
                "duration": known["duration"]}

    original = yt_dlp.YoutubeDL

    class StandInYoutubeDL(original):  # type: ignore[misc,valid-type]
        def extract_info(self, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urllib.parse.urlsplit(url)
            if parts.hostname not in hosts:
                return super().extract_info(url, *args, **kwargs)
            vid = video_id(parts)
            if vid not in videos:
                raise yt_dlp.utils.DownloadError(f"ERROR: [youtube] {vid}: Video unavailable")
            listed = urllib.parse.parse_qs(parts.query).get("list", [""])[0]
            if listed == f"RD{vid}" and not self.params.get("noplaylist"):
                return {"_type": "playlist", "id": listed, "title": f"Mix - {videos[vid]['title']}",
                        "entries": [entry(v) for v in [vid, *mixes.get(vid, [])]
                                    if v in videos]}
            known = videos[vid]
            info = {"id": vid, "title": known["title"], "duration": known["duration"],
                    "webpage_url": f"https://www.youtube.com/watch?v={vid}"}
            if self.params.get("format"):
                info.update(url=known["url"], http_headers={})
            return info

    yt_dlp.YoutubeDL = StandInYoutubeDL


_youtube = os.environ.get("AUDIOGATE_TEST_YOUTUBE", "")
if _youtube:
    _stand_in_youtube(_youtube)
