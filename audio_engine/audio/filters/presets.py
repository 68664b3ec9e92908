"""Named filter sets for the fronts, validated: the table itself is pure data in
``protocol.filter_presets`` (the fronts send it as JSON); here each set is parsed once
into the engine's filter model (``Filters``), so a preset that stopped being valid
fails at import.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from protocol.filter_presets import PRESET_FILTERS, Preset
from protocol.filters import Filters, parse_filters

__all__ = ["PRESETS", "Preset", "preset"]

#: Every preset, validated once at import.
PRESETS: Final = MappingProxyType({name: parse_filters(data)
                                   for name, data in PRESET_FILTERS.items()})


def preset(name: str | Preset) -> Filters:
    """The filter set called ``name``.

    Raises:
        ValueError: no such preset (the message lists the ones there are).
    """
    try:
        return PRESETS[Preset(name)]
    except ValueError as exc:
        known = ", ".join(p.value for p in Preset)
        raise ValueError(f"unknown preset {name!r} (presets: {known})") from exc
