"""The audio engine: Go-compatible HTTP API, one producer per session, one 20 ms
clock, and the Unix socket that carries every session's audio.

Run it with ``python -m audio_engine``; see docs/architecture.md.
"""

from __future__ import annotations

__all__ = ["EngineSettings"]

from audio_engine.settings import EngineSettings
