"""Named filter sets for the fronts: ``/filter bassboost`` in the bot, the playground's
preset buttons. Each is a plain Lavalink ``filters`` object (``Filters``), so it can be
sent to a Lavalink node as well, or edited into a custom set.

The values are ours, chosen by ear and checked by the tests' spectra:

- ``bassboost``: the four lowest bands (25-100 Hz) up, 160 Hz a little; with Lavalink's
  overlapping bands that is about +6 dB from 25 to 63 Hz, +4 dB at 100 Hz, +1 dB at
  250 Hz, the mids untouched.
- ``nightcore``: faster and higher (speed and pitch times 1.25, like a record played fast).
- ``vaporwave``: slower and lower (times 0.8), a little bass warmth.
- ``8d``: the sound circling the head every 5 s (rotation 0.2 Hz).
- ``karaoke``: Lavalink's karaoke defaults (centre cancelled, bass kept).
- ``soft``: Lavalink's low-pass at its default smoothing (20): muffled, like through a wall.
- ``reset``: no filter at all (the stream may return to passthrough).
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

from audio_engine.filters.model import Filters, parse_filters

__all__ = ["PRESETS", "Preset", "preset"]


class Preset(StrEnum):
    """The presets the fronts offer."""

    BASSBOOST = "bassboost"
    NIGHTCORE = "nightcore"
    VAPORWAVE = "vaporwave"
    EIGHT_D = "8d"
    KARAOKE = "karaoke"
    SOFT = "soft"
    RESET = "reset"


_JSON: Final = {
    Preset.BASSBOOST: {
        "equalizer": [
            {"band": 0, "gain": 0.2},
            {"band": 1, "gain": 0.2},
            {"band": 2, "gain": 0.15},
            {"band": 3, "gain": 0.1},
            {"band": 4, "gain": 0.05},
        ]
    },
    Preset.NIGHTCORE: {"timescale": {"speed": 1.25, "pitch": 1.25, "rate": 1.0}},
    Preset.VAPORWAVE: {
        "timescale": {"speed": 0.8, "pitch": 0.8, "rate": 1.0},
        "equalizer": [{"band": 1, "gain": 0.1}, {"band": 2, "gain": 0.1}],
    },
    Preset.EIGHT_D: {"rotation": {"rotationHz": 0.2}},
    Preset.KARAOKE: {
        "karaoke": {"level": 1.0, "monoLevel": 1.0, "filterBand": 220.0, "filterWidth": 100.0}
    },
    Preset.SOFT: {"lowPass": {"smoothing": 20.0}},
    Preset.RESET: {},
}

#: Every preset, validated once at import.
PRESETS: Final = MappingProxyType({name: parse_filters(data) for name, data in _JSON.items()})


def preset(name: str | Preset) -> Filters:
    """The filter set called ``name``.

    Raises:
        ValueError: no such preset (the message lists the ones there are).
    """
    try:
        return PRESETS[Preset(name)]
    except ValueError:
        known = ", ".join(p.value for p in Preset)
        raise ValueError(f"unknown preset {name!r} (presets: {known})") from None
