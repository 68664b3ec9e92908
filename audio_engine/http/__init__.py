"""The engine's HTTP face: the Go engine's API byte for byte, plus ours (``api``), and
Go's JSON and CORS conventions (``gojson``)."""

from __future__ import annotations

__all__: list[str] = []
