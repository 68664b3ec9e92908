"""The browser playground: each user's own stream, queue and controls in a tab.

``mount_playground`` adds the page, its static files and the WebSocket to the
gateway's app; see docs/playground.md for the protocol.
"""

from __future__ import annotations

from playground_ws.routes import mount_playground

__all__ = ["mount_playground"]
