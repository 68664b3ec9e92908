"""A session's audio: the ``program`` of tracks, each ``track``'s passthrough or
transcoding, ``splice`` priming across switches, the ``filters`` chain, the Opus codec
seam (``opus_encoder``) and the output ``formats``."""

from __future__ import annotations

__all__: list[str] = []
