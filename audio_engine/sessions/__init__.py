"""Sessions: their state (``session``), the ``manager`` that owns them and their 20 ms
emission, each one's ``producer`` task, the ``admission`` of new sources, the worker
thread ``pools`` and Lavalink-style ``framestats``."""

from __future__ import annotations

__all__: list[str] = []
