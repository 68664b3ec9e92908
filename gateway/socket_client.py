"""The gateway's end of the engine socket: connect, decode, route, reconnect.

A thin loop around ``protocol.StreamDecoder``: bytes from ``data_received`` go
straight through the decoder to the router, so the reader never waits on a sink.
A connection that closes in the middle of a message (``StreamDecoder.receive_eof``)
is counted as a protocol error, like malformed bytes. After any close (or a framing
error) the client waits an exponentially growing,
jittered delay and reconnects with a fresh decoder; every sink is told to forget
its partial pages.

On every connect it writes one hello line saying it takes any order of replies,
events and audio (sinks are registered by session id before plays start), so our
engine sends it first audio without the margin the Node front needs. A Go engine
never reads its socket; the line is harmless there.

The engine is reached on its Unix socket (a path) or, for an engine node on
another machine, on TCP (``tcp://host:port``) or TLS (``tls://host:port``): the
same framing, with the node's token in the hello (the engine sends nothing to a
TCP consumer before it has checked that token).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from lifecycle import Backoff
from protocol import (
    ConsumerOrder,
    DecodedMessage,
    Hello,
    RemoteProtocolError,
    StreamDecoder,
    TruncatedStream,
)

__all__ = [
    "HELLO",
    "READ_SIZE",
    "AddressKind",
    "Dispatcher",
    "SocketAddress",
    "SocketClient",
    "hello_line",
]

log = logging.getLogger(__name__)


#: Bytes taken per read. A tick of 1000 sessions is ~350 KB; reading it in 32 KB
#: pieces (~90 packets) hands each frame to its sink within a millisecond of
#: the read instead of after a whole 256 KB batch has been decoded.
READ_SIZE = 32 * 1024
#: Seconds a fresh TCP/TLS connection must stay open to count as made (a node
#: refuses a wrong token within milliseconds of the hello).
PROBATION = 0.3
#: Seconds a TCP/TLS connect (handshake included) may take before it is retried.
CONNECT_TIMEOUT = 5.0
#: The line written on every connect (docs/protocol.md, "The consumer hello").
HELLO = bytes(Hello("audiogate-gateway", ConsumerOrder.ANY))


def hello_line(token: str | None = None) -> bytes:
    """The gateway's hello, carrying *token* for an engine node's TCP socket."""
    if not token:
        return HELLO
    return bytes(Hello("audiogate-gateway", ConsumerOrder.ANY, {"token": token}))


class AddressKind(StrEnum):
    """How an engine's socket is reached."""

    UNIX = "unix"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """An engine socket: a Unix path, or a host and port (plain TCP or TLS)."""

    kind: AddressKind
    path: Path | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """``/run/x.sock`` (or ``unix:///run/x.sock``), ``tcp://host:port``,
        ``tls://host:port`` (IPv6 hosts in brackets).

        Raises:
            ValueError: what is wrong with *text*, in words.
        """
        text = text.strip()
        scheme, sep, rest = text.partition("://")
        if not sep:
            if not text.startswith("/"):
                raise ValueError(f"{text!r} is neither an absolute socket path nor "
                                 "tcp://host:port or tls://host:port")
            return cls(AddressKind.UNIX, path=Path(text))
        try:
            kind = AddressKind(scheme.lower())
        except ValueError as exc:
            raise ValueError(f"unknown socket scheme {scheme!r} (use unix, tcp or tls)") \
                from exc
        if kind is AddressKind.UNIX:
            return cls.parse(rest if rest.startswith("/") else "/" + rest)
        host, colon, port = rest.rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} needs a host and a port, e.g. {scheme}://10.0.0.5:8190")
        return cls(kind, host=host, port=int(port))

    def __str__(self) -> str:
        if self.kind is AddressKind.UNIX:
            return str(self.path)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind.value}://{host}:{self.port}"


class Dispatcher(Protocol):
    """Where decoded messages go: the gateway's ``Router``, or a node's filter
    in front of it (``gateway.nodes.routing.NodeRouter``)."""

    def dispatch(self, message: DecodedMessage) -> None:
        """Deliver one decoded message (must not block)."""
        ...

    def connection_reset(self) -> None:
        """The connection was replaced: partial Ogg pages are void."""
        ...


class _Reader(asyncio.BufferedProtocol):
    def __init__(self, client: SocketClient, hello: bytes) -> None:
        self._client = client
        self._hello = hello
        self._decoder = StreamDecoder()
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None
        #: The decoder refused the stream (it is unusable now).
        self._failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._hello)

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
        if self._failed:
            return
        try:
            decoder.receive_data(data)
            dispatch = client.router.dispatch
            for message in decoder.events():
                dispatch(message)
        except RemoteProtocolError as exc:
            log.error("engine stream is malformed (%s); reconnecting", exc)
            self._failed = True
            client.protocol_errors += 1
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_of_stream()
        if not self.lost.done():
            self.lost.set_result(exc)

    def _end_of_stream(self) -> None:
        """The connection closed: what was complete is delivered; a message cut off
        half-way is a protocol error, counted like malformed bytes."""
        decoder = self._decoder
        if decoder.eof or self._failed:
            return
        try:
            decoder.receive_eof()
            while messages := decoder.events():
                for message in messages:
                    self._client.router.dispatch(message)
        except TruncatedStream as exc:
            log.warning("the engine socket closed in the middle of a message (%s)", exc)
            self._client.protocol_errors += 1


class SocketClient:
    """Keeps a connection to the engine socket and feeds the router.

    Args:
        path: the engine's Unix socket path, or a ``SocketAddress``.
        router: where decoded messages go.
        token: sent in the hello (an engine node's TCP socket requires it).
        tls: the client context for a ``tls://`` address (default: the system's
            certificate authorities).
        backoff_initial: first reconnect delay (seconds); it doubles, jittered
            by ±50 % so many gateways restarted together do not reconnect in lockstep.
        backoff_max: longest reconnect delay (``backoff.cap``).
        on_state: called with True on connect and False on disconnect.
    """

    def __init__(
        self,
        path: Path | SocketAddress,
        router: Dispatcher,
        *,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        on_state: Callable[[bool], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.address = (path if isinstance(path, SocketAddress)
                        else SocketAddress(AddressKind.UNIX, path=Path(path)))
        self.path = self.address.path
        self.router = router
        self._hello = hello_line(token)
        self._tls = tls
        if self.address.kind is AddressKind.TLS and tls is None:
            self._tls = ssl.create_default_context()
        #: Delays between connection attempts (reset on every connect).
        self.backoff = Backoff(backoff_initial, cap=backoff_max, jitter=0.5, rng=rng)
        self._listeners: list[Callable[[bool], None]] = [on_state] if on_state else []
        self.connected = asyncio.Event()
        self.connections = 0
        self.reconnects = 0
        self.protocol_errors = 0
        #: TCP connections the node closed right after the hello (a wrong token).
        self.refusals = 0
        self.bytes_received = 0
        #: ``time.perf_counter()`` when the latest chunk was read (latency probes).
        self.last_read_at = 0.0
        self._transport: asyncio.BaseTransport | None = None

    async def run(self) -> None:
        """Connect and reconnect until cancelled. Cancelling is safe."""
        loop = asyncio.get_running_loop()
        backoff = self.backoff
        while True:
            try:
                transport, reader = await self._connect(loop)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                log.debug("engine socket %s unavailable (%s)", self.address, exc)
            else:
                if self.address.kind is not AddressKind.UNIX and await self._refused(reader):
                    transport.close()
                    self.refusals += 1
                    log.error("the engine node %s closed the connection right after the "
                              "hello: is the token right?", self.address)
                    await asyncio.sleep(backoff.next())
                    continue
                self._transport = transport
                self.connections += 1
                if self.connections > 1:
                    self.reconnects += 1
                    self.router.connection_reset()
                log.info("connected to the engine socket %s", self.address)
                self.connected.set()
                self._notify(True)
                backoff.reset()
                try:
                    reason = await reader.lost
                finally:
                    transport.close()
                    self._transport = None
                    self.connected.clear()
                log.warning("engine socket closed%s; reconnecting",
                            f" ({reason})" if reason else "")
                self._notify(False)
            await asyncio.sleep(backoff.next())

    @staticmethod
    async def _refused(reader: _Reader) -> bool:
        """Whether a node closed a fresh TCP connection within ``PROBATION``: it
        refuses a hello at once (a wrong token), and sends no word of welcome
        to a right one, so a connection counts as made only once it outlived
        that."""
        try:
            await asyncio.wait_for(asyncio.shield(reader.lost), PROBATION)
        except TimeoutError:
            return False
        return True

    async def _connect(self, loop: asyncio.AbstractEventLoop
                       ) -> tuple[asyncio.BaseTransport, _Reader]:
        address = self.address
        if address.kind is AddressKind.UNIX:
            return await loop.create_unix_connection(
                lambda: _Reader(self, self._hello), str(address.path))
        # A node that does not answer (a dead host) must not hold the loop for
        # the kernel's minutes-long connect timeout.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await loop.create_connection(
                lambda: _Reader(self, self._hello), address.host, address.port,
                ssl=self._tls if address.kind is AddressKind.TLS else None,
                server_hostname=address.host if address.kind is AddressKind.TLS else None)

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
