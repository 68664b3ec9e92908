"""The engine as a front process and worker processes behind one endpoint.

- ``channel``: the byte protocol between them (sans-I/O);
- ``peer``: one end of a channel (calls, casts, batches);
- ``workers``: the front's handle on a worker process;
- ``worker``: a worker's link to its front and the calls it answers;
- ``cost``: what a session costs, admission and the libopus complexity (pure);
- ``front``: the front (placement, admission, the socket hub, failover).
"""

from __future__ import annotations

__all__: list[str] = []
