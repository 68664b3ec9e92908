"""The router: session id -> sink for audio, session id -> listeners for events.

It runs inside the socket reader's ``data_received`` and must not block: each
packet costs one dict lookup and the sink's ``feed``. A packet for an id with no
sink is dropped and counted; an event goes only to the listeners of its id.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from gateway.sinks import Sink
from protocol import AudioPacket, DecodedMessage, Discarded, Event

__all__ = ["EventListener", "Router"]

log = logging.getLogger(__name__)

EventListener = Callable[[Event], None]


class Router:
    """Routes decoded socket messages to sinks and event listeners."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}
        self._listeners: dict[str, list[EventListener]] = defaultdict(list)
        self._any_listeners: list[EventListener] = []
        #: Audio packets for ids with no sink; messages the decoder discarded.
        self.unknown_packets = 0
        self.discarded = 0
        self.packets = 0
        self.events = 0
        #: Frames dropped by sinks that have since been closed, by sink kind (so the
        #: metric stays monotonic as sinks come and go).
        self.retired_drops: dict[str, int] = defaultdict(int)
        #: Packets received per session id since the last play event (used to tell
        #: a replaced stream's late ``finished`` from a real end with a Go engine).
        self.packets_by_session: dict[str, int] = defaultdict(int)

    # -- registration ---------------------------------------------------------------

    def register_sink(self, session_id: str, sink: Sink) -> None:
        """Route *session_id*'s audio to *sink*, closing the sink it replaces."""
        old = self._sinks.get(session_id)
        self._sinks[session_id] = sink
        if old is not None and old is not sink:
            self._retire(old)

    def unregister_sink(self, session_id: str, sink: Sink | None = None) -> None:
        """Stop routing *session_id* (only if its sink is still *sink*, when given)."""
        current = self._sinks.get(session_id)
        if current is not None and (sink is None or current is sink):
            del self._sinks[session_id]
            self._retire(current)

    def _retire(self, sink: Sink) -> None:
        self.retired_drops[sink.kind] += getattr(sink, "dropped", 0)
        sink.close()

    def sink_drops(self) -> dict[str, int]:
        """Frames dropped by full sink buffers since start, by sink kind."""
        totals = dict(self.retired_drops)
        for sink in self._sinks.values():
            totals[sink.kind] = totals.get(sink.kind, 0) + getattr(sink, "dropped", 0)
        return totals

    def sink(self, session_id: str) -> Sink | None:
        """The sink registered for *session_id*."""
        return self._sinks.get(session_id)

    def session_ids(self) -> list[str]:
        """The session ids with a sink."""
        return list(self._sinks)

    @property
    def sink_count(self) -> int:
        """Sinks registered."""
        return len(self._sinks)

    def add_listener(self, session_id: str, listener: EventListener) -> None:
        """Call *listener* with every event of *session_id*."""
        self._listeners[session_id].append(listener)

    def remove_listener(self, session_id: str, listener: EventListener) -> None:
        """Undo ``add_listener`` (no error if absent)."""
        listeners = self._listeners.get(session_id)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[session_id]

    def add_global_listener(self, listener: EventListener) -> None:
        """Call *listener* with every event of every session (metrics, logs)."""
        self._any_listeners.append(listener)

    # -- the hot path -----------------------------------------------------------------

    def dispatch(self, message: DecodedMessage) -> None:
        """Deliver one decoded message. Never raises for a sink's or listener's bug:
        that is logged, and the other sessions go on."""
        if isinstance(message, AudioPacket):
            self.packets += 1
            session_id = message.session_id
            self.packets_by_session[session_id] += 1
            sink = self._sinks.get(session_id)
            if sink is None:
                self.unknown_packets += 1
                return
            try:
                sink.feed(message.payload)
            except Exception:
                log.exception("sink for %s failed", session_id,
                              extra={"session_id": session_id})
            return
        if isinstance(message, Event):
            self.events += 1
            session_id = message.session_id
            self.packets_by_session.pop(session_id, None)
            sink = self._sinks.get(session_id)
            targets: list[Callable[[Event], None]] = list(self._listeners.get(session_id, ()))
            if sink is not None:
                targets.insert(0, sink.event)
            for target in [*targets, *self._any_listeners]:
                try:
                    target(message)
                except Exception:
                    log.exception("event listener for %s failed", session_id,
                                  extra={"session_id": session_id})
            return
        if isinstance(message, Discarded):
            self.discarded += 1
            log.warning("discarded a message from the engine: %s", message.reason)

    def connection_reset(self) -> None:
        """The socket reconnected: every sink forgets its partial pages."""
        for sink in list(self._sinks.values()):
            sink.reset()
