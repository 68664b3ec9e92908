"""The environment that turns on the test aids of ``engine_hooks/sitecustomize.py`` in
an engine process (and its workers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["hook_env", "youtube_catalogue"]

_HOOKS = Path(__file__).parent / "engine_hooks"


def hook_env(*, loop_stall_ms: float = 0.0, loop_stall_every: int = 1,
             session_cpu: float = 0.0, restore_after: float = 0.0,
             hung_after: float = 0.0, youtube: Path | None = None) -> dict[str, str]:
    """Environment for an engine process with these aids (see the hooks module).
    *youtube*: a JSON file of the videos and mixes YouTube has (``youtube_catalogue``)."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": f"{_HOOKS}{os.pathsep}{path}" if path else str(_HOOKS),
        "AUDIOGATE_TEST_LOOP_STALL_MS": str(loop_stall_ms),
        "AUDIOGATE_TEST_LOOP_STALL_EVERY": str(loop_stall_every),
        "AUDIOGATE_TEST_SESSION_CPU": str(session_cpu),
        "AUDIOGATE_TEST_RESTORE_AFTER": str(restore_after),
        "AUDIOGATE_TEST_HUNG_AFTER": str(hung_after),
        "AUDIOGATE_TEST_YOUTUBE": str(youtube) if youtube is not None else "",
    }


def youtube_catalogue(path: Path, videos: dict[str, tuple[str, str, float]],
                      mixes: dict[str, list[str]]) -> Path:
    """Write what the stand-in YouTube has: *videos* by id (media URL, title, duration),
    and each video's "Mix" (the ids it lists after the video itself)."""
    path.write_text(json.dumps({
        "videos": {vid: {"url": url, "title": title, "duration": duration}
                   for vid, (url, title, duration) in videos.items()},
        "mixes": mixes,
    }))
    return path
