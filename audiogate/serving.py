"""One way to serve HTTP for every process: uvicorn on a socket bound beforehand.

``HttpService`` runs an ASGI app on a listening socket the composition root
already bound (so a port in use is reported before anything starts), leaves
signals to the root (it decides the shutdown order), and closes connections
that do not deliver a whole request in time.

Why the request deadline: uvicorn arms its keep-alive timer only after a
response, so a client that connects and sends half a request line (or half a
body) and waits is held forever, one file descriptor each. Here a connection
must deliver each complete request within ``request_timeout`` seconds of the
moment the server starts waiting for it (the connection opened, or the previous
response was sent). The deadline is set once per request and never extended by
further bytes, so dripping one byte a second does not keep it open either. A
WebSocket is exempt once its upgrade request is complete; its messages have a
size limit and a deadline of their own (``websocket_limits``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.h11_impl import H11Protocol

from audiogate.errors import StartupError
from audiogate.websocket_limits import INCOMPLETE, TOO_LARGE, BoundedWebSocketProtocol

__all__ = ["HttpService"]

log = logging.getLogger(__name__)


class _Config(uvicorn.Config):
    """uvicorn's configuration plus the deadlines our protocols read."""

    def __init__(self, app: Any, *, request_timeout: float,
                 on_timeout: Callable[[], None], ws_message_timeout: float,
                 on_ws_refused: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.request_timeout = request_timeout
        self.on_timeout = on_timeout
        self.ws_message_timeout = ws_message_timeout
        self.on_ws_refused = on_ws_refused


class _DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on receiving each request."""

    def __init__(self, config: _Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._request_timeout = config.request_timeout
        self._on_timeout = config.on_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._update_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return False  # closed, or upgraded to a WebSocket
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return True  # no request yet, or between keep-alive requests
        return cycle.more_body  # headers in, body still arriving

    def _update_deadline(self) -> None:
        if not self._waiting_for_request():
            self._cancel_deadline()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self._request_timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self._waiting_for_request():
            return
        cycle = self.cycle
        idle = cycle is not None and cycle.response_complete and not self.conn.trailing_data[0]
        if not idle:  # an idle keep-alive is simply over; anything else is counted
            log.debug("closing a connection from %s: no complete request in %.1f s",
                      self.client, self._request_timeout)
            self._on_timeout()
        self.transport.close()


class HttpService:
    """Serves *app* on *listener* until ``stop()``.

    Args:
        app: the ASGI application.
        listener: a bound, listening TCP socket; closed when serving ends.
        name: for logs.
        request_timeout: seconds a connection has to deliver each complete
            request (module docstring).
        graceful_timeout: seconds in-flight requests get to finish after
            ``stop()`` before they are cancelled.
        lifespan: run the app's startup/shutdown events (the gateway's app has
            none of its own, but mounted apps may).
        ws_max_message_bytes: the largest WebSocket message read; a frame whose
            header announces more closes the connection (1009) before any of
            it is read (``websocket_limits``).
        ws_message_timeout: seconds a WebSocket message has to arrive whole
            from its first byte; then the connection is closed (1008).
    """

    def __init__(self, app: Any, listener: socket.socket, *, name: str,
                 request_timeout: float, graceful_timeout: float,
                 lifespan: bool = False, ws_max_message_bytes: int = 16 * 1024,
                 ws_message_timeout: float = 10.0) -> None:
        self.name = name
        self.listener = listener
        self.port = int(listener.getsockname()[1])
        #: Connections closed for not delivering a request in time.
        self.timed_out = 0
        #: WebSockets closed for a message too large or not completed in time.
        self.ws_refused: Counter[str] = Counter()
        self.started = asyncio.Event()
        self._config = _Config(
            app,
            request_timeout=request_timeout,
            on_timeout=self._count_timeout,
            ws_message_timeout=ws_message_timeout,
            on_ws_refused=self._count_ws_refused,
            http=_DeadlineProtocol,
            ws=BoundedWebSocketProtocol,
            ws_max_size=ws_max_message_bytes,
            lifespan="on" if lifespan else "off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, round(graceful_timeout)),
        )
        # Signals stay with the composition root: serve() below never calls
        # uvicorn's own serve(), which would install handlers of its own.
        self._server = uvicorn.Server(self._config)

    def _count_timeout(self) -> None:
        self.timed_out += 1

    def _count_ws_refused(self, reason: str) -> None:
        self.ws_refused[reason] += 1

    @property
    def connections(self) -> int:
        """HTTP connections open now (WebSockets not included)."""
        return len(self._server.server_state.connections)

    def register_metrics(self, registry: CollectorRegistry, prefix: str) -> None:
        """Add ``<prefix>_http_connections`` and
        ``<prefix>_http_incomplete_requests_closed_total`` to *registry*."""
        registry.register(_HttpCollector(self, prefix))

    async def serve(self) -> None:
        """Accept requests until ``stop()``, then finish in-flight ones (up to
        ``graceful_timeout``). ``started`` is set once the socket accepts.

        Raises:
            StartupError: the app's startup events failed.
        """
        server = self._server
        config = self._config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[self.listener])
        except SystemExit as exc:  # uvicorn's way to say the lifespan startup failed
            raise StartupError(f"the {self.name} HTTP app failed to start") from exc
        try:
            if not server.should_exit:
                self.started.set()
                await server.main_loop()
        finally:
            await server.shutdown(sockets=[self.listener])

    def stop(self) -> None:
        """Ask ``serve`` to stop accepting and return. Idempotent."""
        self._server.should_exit = True


class _HttpCollector(Collector):
    """Reads an ``HttpService``'s figures at scrape time."""

    def __init__(self, service: HttpService, prefix: str) -> None:
        self._service = service
        self._prefix = prefix

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(f"{self._prefix}_http_connections",
                                        "HTTP connections open (WebSockets not included)")
        connections.add_metric([], self._service.connections)
        yield connections
        closed = CounterMetricFamily(
            f"{self._prefix}_http_incomplete_requests_closed",
            "Connections closed for not delivering a whole request in time")
        closed.add_metric([], self._service.timed_out)
        yield closed
        refused = CounterMetricFamily(
            f"{self._prefix}_websocket_messages_refused",
            "WebSockets closed for a message: too_large (over the size limit, closed "
            "before it was read) or incomplete (not whole within the message deadline)",
            labels=["reason"])
        for reason in (TOO_LARGE, INCOMPLETE):
            refused.add_metric([reason], self._service.ws_refused[reason])
        yield refused
