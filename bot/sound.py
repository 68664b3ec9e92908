"""``/filter`` with the user's own values: equalizer bands, speed and pitch, as pure code.

What is typed becomes Lavalink's ``filters`` object and is checked by the one filter
model (``protocol.filters``, through ``SetFilters.from_json``), so the ranges and their
words are the engine's own. The values are layered: on a preset when one is named, else
on the filters playing now, so ``/filter speed:1.1`` and then ``/filter pitch:0.9`` end
with both.

Equalizer bands are written ``BAND:GAIN`` (or ``BAND=GAIN``), several at once separated
by spaces or commas. ``BAND`` is Lavalink's band number (0-14) or its centre frequency
(``63``, ``63hz``, ``1k``, ``16khz``); ``GAIN`` is Lavalink's multiplier (-0.25 mutes the
band, 0 leaves it, 0.25 doubles it, 1 at most), or decibels (``+6db``, ``-3dB``). ``flat``
takes the equalizer away.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gateway.player import CommandError, SetFilters
from protocol.filter_presets import EQUALIZER_BANDS, Preset, preset_filters
from protocol.filters import Filters

__all__ = ["EQUALIZER_HELP", "custom_filters", "describe_filters", "parse_equalizer"]

#: What the ``equalizer`` option's description says.
EQUALIZER_HELP = "bands as BAND:GAIN, e.g. 63hz:0.2 4k:-3db (or flat)"

_ITEM = re.compile(r"^(?P<band>\d+(?:\.\d+)?)\s*(?P<unit>k|khz|hz)?\s*[:=]\s*"
                   r"(?P<gain>[+-]?\d+(?:\.\d+)?)\s*(?P<db>db)?$", re.IGNORECASE)
_FLAT = frozenset({"flat", "off", "none", "reset"})


def _band(number: str, unit: str | None) -> int:
    value = float(number)
    if unit is None and value.is_integer() and 0 <= value <= len(EQUALIZER_BANDS) - 1:
        return int(value)
    hertz = value * 1000 if unit and unit.lower().startswith("k") else value
    for index, centre in enumerate(EQUALIZER_BANDS):
        if math.isclose(hertz, centre, rel_tol=0.02):
            return index
    names = ", ".join(f"{c // 1000}k" if c >= 1000 else str(c) for c in EQUALIZER_BANDS)
    raise CommandError(f"there is no equalizer band at {number}{unit or ''}: use a band "
                       f"number from 0 to 14 or one of {names} (Hz)")


def _gain(text: str, decibels: bool) -> float:
    value = float(text)
    if not decibels:
        return value
    # Lavalink's multiplier scales a band by 1 + 4 * gain (0.25 doubles it).
    return round((10 ** (value / 20) - 1) / 4, 4)


def parse_equalizer(text: str) -> dict[int, float] | None:
    """The bands and gains in *text*, or None for ``flat`` (no equalizer).

    Raises:
        CommandError: a part that is not ``BAND:GAIN`` (its words say which).
    """
    items = [item for item in re.split(r"[\s,;]+", text.strip()) if item]
    if not items:
        raise CommandError(f"give equalizer bands ({EQUALIZER_HELP})")
    if len(items) == 1 and items[0].lower() in _FLAT:
        return None
    bands: dict[int, float] = {}
    for item in items:
        found = _ITEM.match(item)
        if found is None:
            raise CommandError(f"could not read {item[:40]!r} as BAND:GAIN "
                               f"({EQUALIZER_HELP})")
        bands[_band(found["band"], found["unit"])] = _gain(found["gain"], bool(found["db"]))
    return bands


def custom_filters(current: Filters, *, preset: Preset | None = None,
                   equalizer: str | None = None, speed: float | None = None,
                   pitch: float | None = None) -> SetFilters:
    """The filter command for ``/filter`` with these options.

    Raises:
        CommandError: no option, unreadable bands, or values the filter model refuses
            (its words name the value).
    """
    if preset is None and equalizer is None and speed is None and pitch is None:
        raise CommandError("choose a preset, or give equalizer bands, a speed or a pitch")
    if equalizer is None and speed is None and pitch is None:
        assert preset is not None
        return SetFilters.preset(preset)
    data: dict[str, Any] = dict(preset_filters(preset) if preset is not None
                                else current.to_lavalink())
    if equalizer is not None:
        bands = parse_equalizer(equalizer)
        if bands is None:
            data.pop("equalizer", None)
        else:
            merged = {b["band"]: b["gain"] for b in data.get("equalizer") or []}
            merged.update(bands)
            data["equalizer"] = [{"band": b, "gain": g} for b, g in sorted(merged.items())
                                 if g != 0.0]
            if not data["equalizer"]:
                del data["equalizer"]
    if speed is not None or pitch is not None:
        timescale = dict(data.get("timescale") or {})
        if speed is not None:
            timescale["speed"] = speed
        if pitch is not None:
            timescale["pitch"] = pitch
        data["timescale"] = timescale
    return SetFilters.from_json(data, "custom")


def _band_name(index: int) -> str:
    centre = EQUALIZER_BANDS[index]
    return f"{centre / 1000:g} kHz" if centre >= 1000 else f"{centre} Hz"


def describe_filters(filters: Filters) -> str:
    """What *filters* do, in a line: ``equalizer 63 Hz +0.2, 4 kHz -0.1 · speed x1.1``
    (the parts ``/filter`` sets by hand; others are named)."""
    parts: list[str] = []
    gains = [(i, g) for i, g in enumerate(filters.gains()) if g]
    if gains:
        parts.append("equalizer " + ", ".join(f"{_band_name(i)} {g:+g}" for i, g in gains))
    timescale = filters.timescale
    if timescale is not None and timescale.enabled:
        for name, value in (("speed", timescale.speed), ("pitch", timescale.pitch),
                            ("rate", timescale.rate)):
            if value != 1.0:
                parts.append(f"{name} x{value:g}")
    others = [name for name in filters.active() if name not in ("equalizer", "timescale")]
    parts += others
    return " · ".join(parts) if parts else "none"
