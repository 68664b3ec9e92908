"""Audio filters: Lavalink v4's ``filters`` object on FFmpeg's filter graph.

- ``model``: the validated filters object (``parse_filters``, ``Filters``, ``FilterError``).
- ``graph``: a filter set → FFmpeg filters (PyAV ``av.filter.Graph``), and why each maps
  the way it does.
- ``loudness``: our EBU R128 loudness normalization (FFmpeg's ``ebur128`` and ``alimiter``).
- ``chain``: ``FilterChain``, what a session's codec job calls: PCM in, 20 ms frames in
  track time out, live changes crossfaded, rewind, flush.
- ``positions``: output time ↔ track time under timescale.
- ``presets``: named filter sets for the fronts (bassboost, nightcore, ...).
"""

from __future__ import annotations

__all__ = [
    "BAND_FREQUENCIES",
    "FilterChain",
    "FilterError",
    "FilteredFrame",
    "Filters",
    "PositionMap",
    "Preset",
    "RewindError",
    "missing_filters",
    "parse_filters",
    "preset",
]

from audio_engine.audio.filters.chain import FilterChain, FilteredFrame, RewindError
from audio_engine.audio.filters.graph import BAND_FREQUENCIES, missing_filters
from audio_engine.audio.filters.positions import PositionMap
from audio_engine.audio.filters.presets import Preset, preset
from protocol.filters import FilterError, Filters, parse_filters
