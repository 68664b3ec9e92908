"""A session's audio: the ``program`` of tracks and the geometry of their ``timeline``,
its ``output`` stream (frames, Ogg pages, the encoder), each ``track``'s passthrough or
transcoding (its ``queues`` of packets and samples, its packets on their ``raw``
timeline), ``splice`` priming across switches,
the ``filters`` chain, the Opus codec seam (``codec``) and the output ``formats``."""

from __future__ import annotations

__all__: list[str] = []
