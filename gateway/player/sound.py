"""A player's sound settings: its filter set (named by its preset or ``custom``) and its
crossfade. Pure.

They are kept per key, with or without a queue (the store's ``player_settings``), and
carry over from track to track and to a new engine. The volume is not among them: it
is kept with the queue.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.player.errors import CommandError
from protocol.filters import FilterError, Filters, parse_filters

__all__ = ["MAX_CROSSFADE", "SoundSettings"]

#: Longest crossfade between two tracks (seconds).
MAX_CROSSFADE = 12.0


class SoundSettings:
    """The filter set and the crossfade of one key (``Filters()`` and 0: none)."""

    def __init__(self) -> None:
        #: Lavalink's filter set.
        self.filters = Filters()
        #: The filters' name: a preset's, "custom", or "" for none.
        self.filter_name = ""
        #: Seconds the next track fades in over the end of the current one.
        self.crossfade = 0.0

    def set_filters(self, filters: Filters, name: str) -> None:
        """Use *filters*, called *name* (no name for no filter)."""
        self.filters = filters
        self.filter_name = name if filters != Filters() else ""

    def set_crossfade(self, seconds: float) -> None:
        """Fade the next track in over *seconds*.

        Raises:
            CommandError: not between 0 and ``MAX_CROSSFADE``; nothing changed.
        """
        if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_CROSSFADE):
            raise CommandError(
                f"the crossfade must be between 0 and {MAX_CROSSFADE:g} seconds")
        self.crossfade = float(seconds)

    def filters_refused(self, kept: Filters) -> None:
        """The engine refused the filters set last and still plays *kept*."""
        self.filters = kept
        self.filter_name = "custom" if kept != Filters() else ""

    def to_dict(self) -> dict[str, Any]:
        """What the store keeps (``restore`` reads it back)."""
        return {"filters": self.filters.to_lavalink(), "filter_name": self.filter_name,
                "crossfade": self.crossfade}

    def restore(self, data: object) -> None:
        """Take back ``to_dict()`` data; anything unreadable is left at its default."""
        if not isinstance(data, dict):
            return
        filters, name = data.get("filters"), data.get("filter_name")
        if isinstance(filters, dict):
            try:
                self.filters = parse_filters(filters)
            except FilterError:
                pass
            else:
                self.filter_name = (name if isinstance(name, str) else "custom") \
                    if self.filters != Filters() else ""
        crossfade = data.get("crossfade")
        if (isinstance(crossfade, int | float) and not isinstance(crossfade, bool)
                and math.isfinite(crossfade) and 0.0 <= crossfade <= MAX_CROSSFADE):
            self.crossfade = float(crossfade)
