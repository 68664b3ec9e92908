"""The engine as a front process and worker processes behind one endpoint.

- ``channel``: the byte protocol between them (sans-I/O);
- ``peer``: one end of a channel (calls, casts, batches);
- ``workers``: the front's handle on one worker process; ``pool``: all of them;
- ``worker``: a worker's link to its front and the calls it answers;
- ``reports``: what a worker tells its front, and the engine's identity;
- ``directory``: which worker holds each session and what it costs (pure);
- ``cost``: what a session costs, admission and the libopus complexity (pure);
- ``governor``: the front's load governor (budget, cost per unit, measured load,
  complexity steps) around those rules;
- ``stats``: ``/health`` and ``/stats`` from the workers' parts (pure);
- ``overview``: the front's ``/health``, ``/stats``, ``/metrics`` and session list,
  gathered from every live worker;
- ``errors``: why the front refuses an operation on a session;
- ``calls``: the API operations on a placed session, forwarded to its worker;
- ``claims``: the guild ids claimed by Lavalink players, and the worker that holds
  each one's voice connection;
- ``failover``: restarting a dead or stuck worker and moving its sessions;
- ``front``: the front (placement, plays, the socket hub, what the workers send).
"""

from __future__ import annotations

__all__: list[str] = []
