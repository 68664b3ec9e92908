"""One node's socket feeds the gateway's shared router, for its own sessions only.

Every node's socket client decodes its own byte stream; messages for session ids
placed on that node go on to the shared ``Router`` (sinks and players are the
same whatever node plays a session), everything else is dropped and counted.
That matters around a move: while a session goes from a drained node to another,
or after a failover, the old node may still write a few packets or a late
``finished`` (play ids are per engine, so a stale event could even carry the
new play's id): none of it reaches the session.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.router import Router
from protocol import AudioPacket, DecodedMessage, Event

__all__ = ["NodeRouter"]


class NodeRouter:
    """The router a node's ``SocketClient`` feeds.

    Args:
        router: the gateway's shared router.
        owns: whether a session id is placed on this node now.
    """

    def __init__(self, router: Router, owns: Callable[[str], bool]) -> None:
        self._router = router
        self._owns = owns
        #: Messages of sessions placed elsewhere (or nowhere), dropped.
        self.foreign = 0

    def dispatch(self, message: DecodedMessage) -> None:
        """Pass *message* on when its session is this node's (or it names none)."""
        if isinstance(message, AudioPacket | Event) and not self._owns(message.session_id):
            self.foreign += 1
            return
        self._router.dispatch(message)

    def connection_reset(self) -> None:
        """This node's socket reconnected: its sessions' sinks forget partial pages
        (sinks of sessions on other nodes keep theirs)."""
        router = self._router
        for session_id in router.session_ids():
            if self._owns(session_id):
                sink = router.sink(session_id)
                if sink is not None:
                    sink.reset()
