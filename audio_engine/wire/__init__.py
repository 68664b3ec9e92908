"""What goes on the socket and when: the 20 ms ``clock``, each session's frame
``ring``, the ``ordering`` of replies, events and first audio, and the ``consumers``
the bytes are written to."""

from __future__ import annotations

__all__: list[str] = []
