"""The gateway: the consumer side of the engine socket, as a library the fronts use.

``runtime.Gateway`` wires the socket client, the router, the engine API client
(and its watch) and the per-key players; ``app.create_app`` is its HTTP app
(health, readiness, metrics). It imports no front end and nothing of the
engine's: the process that hosts it and the fronts is assembled in
``audiogate.gateway_process`` (``python -m gateway``).
"""

from __future__ import annotations

from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]
