"""The gateway's end of the engine socket: connect, decode, route, reconnect.

A thin loop around ``protocol.StreamDecoder``: bytes from ``data_received`` go
straight through the decoder to the router, so the reader never waits on a sink.
After any close (or a framing error) the client waits an exponentially growing,
jittered delay and reconnects with a fresh decoder; every sink is told to forget
its partial pages.

On every connect it writes one hello line saying it takes any order of replies,
events and audio (sinks are registered by session id before plays start), so our
engine sends it first audio without the margin the Node front needs. A Go engine
never reads its socket; the line is harmless there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from gateway.router import Router
from protocol import ConsumerOrder, Hello, RemoteProtocolError, StreamDecoder

__all__ = ["HELLO", "READ_SIZE", "SocketClient"]

log = logging.getLogger(__name__)


#: Bytes taken per read. A tick of 1000 sessions is ~350 KB; reading it in 32 KB
#: pieces (~90 packets) hands each frame to its sink within a millisecond of
#: the read instead of after a whole 256 KB batch has been decoded.
READ_SIZE = 32 * 1024
#: The line written on every connect (docs/protocol.md, "The consumer hello").
HELLO = bytes(Hello("audiogate-gateway", ConsumerOrder.ANY))


class _Reader(asyncio.BufferedProtocol):
    def __init__(self, client: SocketClient) -> None:
        self._client = client
        self._decoder = StreamDecoder()
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(HELLO)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # The decoder appends the view to its own buffer: one copy per read.
        self.data_received(self._view[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        client = self._client
        client.last_read_at = time.perf_counter()
        client.bytes_received += len(data)
        decoder = self._decoder
        try:
            decoder.receive_data(data)
            dispatch = client.router.dispatch
            for message in decoder.events():
                dispatch(message)
        except RemoteProtocolError as exc:
            log.error("engine stream is malformed (%s); reconnecting", exc)
            client.protocol_errors += 1
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SocketClient:
    """Keeps a connection to the engine socket and feeds the router.

    Args:
        path: the engine's Unix socket.
        router: where decoded messages go.
        backoff_initial: first reconnect delay (seconds).
        backoff_max: longest reconnect delay.
        on_state: called with True on connect and False on disconnect.
    """

    def __init__(
        self,
        path: Path,
        router: Router,
        *,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        on_state: Callable[[bool], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self.router = router
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._listeners: list[Callable[[bool], None]] = [on_state] if on_state else []
        self._rng = rng or random.Random()
        self.connected = asyncio.Event()
        self.connections = 0
        self.reconnects = 0
        self.protocol_errors = 0
        self.bytes_received = 0
        #: ``time.perf_counter()`` when the latest chunk was read (latency probes).
        self.last_read_at = 0.0
        self._transport: asyncio.BaseTransport | None = None

    async def run(self) -> None:
        """Connect and reconnect until cancelled. Cancelling is safe."""
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        while True:
            try:
                transport, reader = await loop.create_unix_connection(
                    lambda: _Reader(self), str(self.path)
                )
            except OSError as exc:
                log.debug("engine socket %s unavailable (%s)", self.path, exc)
            else:
                self._transport = transport
                self.connections += 1
                if self.connections > 1:
                    self.reconnects += 1
                    self.router.connection_reset()
                log.info("connected to the engine socket %s", self.path)
                self.connected.set()
                self._notify(True)
                delay = self.backoff_initial
                try:
                    reason = await reader.lost
                finally:
                    transport.close()
                    self._transport = None
                    self.connected.clear()
                log.warning("engine socket closed%s; reconnecting",
                            f" ({reason})" if reason else "")
                self._notify(False)
            # Jittered exponential backoff: many gateways restarting together do
            # not reconnect in lockstep.
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(self.backoff_max, delay * 2)

    def add_state_listener(self, listener: Callable[[bool], None]) -> None:
        """Call *listener* with True on every connect and False on every disconnect."""
        self._listeners.append(listener)

    def _notify(self, connected: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(connected)
            except Exception:
                log.exception("socket state listener failed")

    def close(self) -> None:
        """Drop the current connection (``run`` reconnects unless cancelled)."""
        if self._transport is not None:
            self._transport.close()
