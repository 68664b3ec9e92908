"""The gateway: the consumer side of the engine socket and the home of both fronts.

``runtime.Gateway`` wires the socket client, the router, the engine API client
and the per-key players; ``app.run_gateway`` serves them (``python -m gateway``).
"""

from __future__ import annotations

from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]
