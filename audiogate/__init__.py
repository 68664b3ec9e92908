"""The composition root: where the processes are assembled.

``engine_process`` and ``gateway_process`` build one process each (bind their
sockets first, own every long-lived task in a task group, stop in a fixed order
under a deadline); ``stack`` runs both on one machine (``audiogate run``),
restarting the engine child when it dies; ``cli`` is the ``audiogate`` command.
The libraries (``protocol``, ``applog``, ``audio_engine``, ``gateway``, ``bot``,
``playground_ws``) never import this package.
"""

from __future__ import annotations

__all__: list[str] = []
