"""Named filter sets that every front offers (``/filter bassboost`` in the bot, the
playground's preset buttons), as plain Lavalink v4 ``filters`` JSON, with their words.

This table is the one place a preset is written: the bot's choices, its description and
``/help`` line, its replies, and the playground page's buttons (the page asks the server
for ``preset_catalogue()``) all come from it.

Pure data, shared by the engine (which validates each set once with its filter model,
``audio_engine.audio.filters.presets``) and the fronts (which send the JSON as it is). Each
set can be sent to a Lavalink node unchanged.

The values are ours, chosen by ear and checked by the engine tests' spectra:

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

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from protocol.filters import Filters, parse_filters

__all__ = [
    "EQUALIZER_BANDS",
    "EQUALIZER_GAIN_MAX",
    "EQUALIZER_GAIN_MIN",
    "PRESET_FILTERS",
    "PRESET_WORDS",
    "Preset",
    "PresetWords",
    "preset",
    "preset_catalogue",
    "preset_choices",
    "preset_filters",
    "preset_words",
]

#: Lavalink's 15 equalizer band centres (Hz), band 0 first.
EQUALIZER_BANDS: Final = (25, 40, 63, 100, 160, 250, 400, 630, 1000, 1600, 2500, 4000,
                          6300, 10000, 16000)
#: Lavalink's range of an equalizer band's gain (0 = unchanged, -0.25 = muted).
EQUALIZER_GAIN_MIN: Final = -0.25
EQUALIZER_GAIN_MAX: Final = 1.0


class Preset(StrEnum):
    """The presets the fronts offer."""

    BASSBOOST = "bassboost"
    NIGHTCORE = "nightcore"
    VAPORWAVE = "vaporwave"
    EIGHT_D = "8d"
    KARAOKE = "karaoke"
    SOFT = "soft"
    RESET = "reset"


#: Each preset's Lavalink ``filters`` object (treat as read-only; ``preset_filters``
#: hands out copies).
PRESET_FILTERS: Final[dict[Preset, dict[str, Any]]] = {
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


def preset_filters(name: str | Preset) -> dict[str, Any]:
    """A copy of the filters object of the preset called *name*.

    Raises:
        ValueError: no such preset (the message lists the ones there are).
    """
    try:
        return copy.deepcopy(PRESET_FILTERS[Preset(name)])
    except ValueError as exc:
        known = ", ".join(p.value for p in Preset)
        raise ValueError(f"unknown preset {name!r} (presets: {known})") from exc


def preset(name: str | Preset) -> Filters:
    """The preset called *name*, as a validated filter set.

    Raises:
        ValueError: no such preset (the message lists the ones there are).
    """
    return parse_filters(preset_filters(name))


@dataclass(frozen=True, slots=True)
class PresetWords:
    """How fronts name a preset: a short *label* ("Bass boost", a button's text) and
    its *effect* in words ("the lows are louder")."""

    label: str
    effect: str


#: Each preset's words (every preset has an entry).
PRESET_WORDS: Final[dict[Preset, PresetWords]] = {
    Preset.BASSBOOST: PresetWords("Bass boost", "the lows are louder"),
    Preset.NIGHTCORE: PresetWords("Nightcore", "faster and higher"),
    Preset.VAPORWAVE: PresetWords("Vaporwave", "slower and lower"),
    Preset.EIGHT_D: PresetWords("8D", "the sound circles around you"),
    Preset.KARAOKE: PresetWords("Karaoke", "the voice in the middle is turned down"),
    Preset.SOFT: PresetWords("Soft", "muffled, as through a wall"),
    Preset.RESET: PresetWords("Reset", "the track sounds as it was made"),
}


def preset_words(name: Preset) -> str:
    """A sentence saying the preset is now in effect ("Nightcore on: faster and
    higher.")."""
    words = PRESET_WORDS[name]
    if name is Preset.RESET:
        return f"Filters off: {words.effect}."
    return f"{words.label} on: {words.effect}."


def preset_choices(*, serial_comma: bool = True) -> str:
    """Every preset's name in a sentence: "bassboost, nightcore, ..., or reset"."""
    names = [p.value for p in Preset]
    return f"{', '.join(names[:-1])}{',' if serial_comma else ''} or {names[-1]}"


def preset_catalogue() -> list[dict[str, str]]:
    """The presets as a page shows them: name, label and effect, ``reset`` last."""
    return [{"name": p.value, "label": PRESET_WORDS[p].label, "effect": PRESET_WORDS[p].effect}
            for p in Preset]
