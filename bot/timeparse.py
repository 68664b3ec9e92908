"""Reading positions as people type them: ``90``, ``1:30``, ``1:02:30``."""

from __future__ import annotations

import re

__all__ = ["format_time", "parse_time"]

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:\.\d+)?$|^(\d+(?:\.\d+)?)$")


def parse_time(text: str) -> float:
    """Seconds in *text*.

    Raises:
        ValueError: with a message saying which forms are accepted.
    """
    value = text.strip()
    match = _CLOCK.match(value)
    if not match:
        raise ValueError(f"could not read {text!r} as a time; use 90, 1:30 or 1:02:30")
    hours, minutes, seconds, plain = match.groups()
    if plain is not None:
        return float(plain)
    if int(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
        raise ValueError(f"could not read {text!r} as a time: minutes and seconds stop at 59")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def format_time(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``-:--`` when unknown."""
    if seconds is None or seconds < 0:
        return "-:--"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
