"""The engine's socket servers: every admitted consumer gets every message.

Consumers connect on the Unix socket (trusted by its file mode, as the Go
engine's) and, when ``ENGINE_TCP_PORT`` is set, on a TCP address (optionally
TLS). A TCP consumer is *gated*: it must write a hello whose ``token`` matches
the engine's within ``hello_timeout`` seconds of connecting; until then it is not
a consumer at all and is sent nothing (not one byte of audio or events); a wrong
token, a line that is not a hello, or silence past the deadline closes it
(counted by reason). With TLS the handshake runs inside that deadline, on the
consumer's own connection (``loop.start_tls``, not the server's ``ssl=``: asyncio
drops a server-side handshake that times out or fails without telling anyone), so
a client that stalls in the handshake is closed and counted as ``hello_timeout``
and one whose handshake fails (plain TCP on the TLS port) as ``tls_failed``.

Each consumer's queue is its transport's write buffer, bounded by an explicit
policy instead of ``drain()`` (the clock must never wait on anyone):

* under the limit, a tick's batch is written whole, in one ``write``;
* over the limit, the tick's audio is dropped for that consumer (counted) and
  only its event lines are written, so ``ready``/``finished``/``error`` still
  arrive in order;
* over the limit for longer than ``stall_seconds``, the consumer is disconnected
  (counted, logged): it is not reading at all.

A consumer that connects while sessions are streaming is first sent those
sessions' Ogg header pages, so its demuxers start cleanly mid-stream (the hub keeps
each streaming session's header packet as the workers' batches carry it, until the
session ends: ``remember_headers``, ``forget``).

A consumer may write one hello line when it connects (``protocol.Hello``); one
that says ``"order":"any"`` needs none of the Node-safe timing margins. Until a
consumer has said so, it is Go-style, and while any Go-style consumer is
connected the margins apply to every write (``ConsumerHub.go_style_connected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from audio_engine.metrics import EngineMetrics
from lifecycle import OwnerClosed, Process, TaskOwner, declare
from protocol import Hello, HelloReader, RemoteProtocolError

__all__ = ["Consumer", "ConsumerHub"]

log = logging.getLogger(__name__)

#: Seconds between two warnings about the same slow consumer (a consumer at the edge
#: of its limit crosses it many times a second).
_WARN_EVERY = 10.0

_OWNER = "ConsumerHub"
_TLS_HANDSHAKE = declare(
    "consumer-tls-handshake", owner=_OWNER, process=Process.ENGINE,
    what="upgrades one socket consumer's TCP connection to TLS before its hello",
    ends="when the handshake succeeds or fails (its own timeout is the hello deadline "
         "plus a second); cancelled when the hub closes")


class Consumer(asyncio.Protocol):
    """One connected reader of the socket."""

    def __init__(self, hub: ConsumerHub, name: str, *, token: bytes | None = None,
                 hello_timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> None:
        self.hub = hub
        self.name = name
        #: Server TLS context: the handshake runs first, within the hello deadline.
        self._tls = tls
        self._refused = False
        #: The token this consumer must present in its hello; None: none needed
        #: (the Unix socket), and the consumer is admitted when it connects.
        self._token = token
        self._hello_timeout = hello_timeout
        self._deadline: asyncio.TimerHandle | None = None
        #: Attached to the hub: it receives every message from now on.
        self.admitted = False
        self.transport: asyncio.WriteTransport | None = None
        #: Header packets still owed to this consumer, sent before its next batch.
        self.pending_prefix = b""
        self.over_since: float | None = None
        self._warned_at = -math.inf
        self.dropped_batches = 0
        self.bytes_written = 0
        #: What the consumer said it is; None until (unless) it sends a hello.
        self.hello: Hello | None = None
        self._hello_reader = HelloReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport
        if self._token is None:
            self._admit()
            return
        self._deadline = asyncio.get_running_loop().call_later(
            self._hello_timeout, self._refuse, "hello_timeout",
            f"sent no hello with a token within {self._hello_timeout:g} s")
        if self._tls is not None:
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # nothing of the handshake reaches data_received
            self.hub.own(self._handshake(transport, self._tls))

    async def _handshake(self, raw: asyncio.Transport, tls: ssl.SSLContext) -> None:
        """Upgrade the connection to TLS (the hello deadline runs meanwhile; the
        handshake's own timeout is a backstop a second after it)."""
        try:
            secure = await asyncio.get_running_loop().start_tls(
                raw, self, tls, server_side=True,
                ssl_handshake_timeout=self._hello_timeout + 1.0)
        except (OSError, ssl.SSLError) as exc:  # refused at the deadline, or a bad handshake
            if not self._refused:
                self._refuse("tls_failed", f"failed the TLS handshake ({exc})")
            return
        if secure is None or self._refused:
            return
        assert isinstance(secure, asyncio.WriteTransport)
        self.transport = secure

    def _admit(self) -> None:
        self.admitted = True
        self.pending_prefix = self.hub.prefix_for_new_consumer()
        self.hub.attach(self)

    def _refuse(self, reason: str, why: str) -> None:
        """Close a gated consumer that did not prove itself (nothing was sent)."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadline()
        log.warning("consumer %s %s; closing it", self.name, why)
        self.hub.metrics.consumer_disconnects.labels(reason).inc()
        if self.transport is not None:
            self.transport.abort()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        # The only thing a consumer may write is its hello; anything else, and
        # anything after it, is ignored (a Go consumer never writes at all).
        reader = self._hello_reader
        reader.receive_data(data)
        try:
            hello = reader.next_event()
        except RemoteProtocolError as exc:
            if self._token is not None:
                self._refuse("unauthorized", f"sent no valid hello ({exc})")
            else:
                log.warning("consumer %s sent no valid hello (%s); it gets the Go timing",
                            self.name, exc)
            return
        if not isinstance(hello, Hello):
            return
        if self._token is not None:
            presented = hello.extra.get("token")
            if not isinstance(presented, str) or not hmac.compare_digest(
                    presented.encode("utf-8", "surrogateescape"), self._token):
                self._refuse("unauthorized", f"({hello.client!r}) sent a wrong token")
                return
            self._cancel_deadline()
        self.hello = hello
        log.info("consumer %s is %r (order %s)", self.name, hello.client,
                 hello.order.value)
        if not self.admitted:
            self._admit()
        else:
            self.hub.said_hello(self)

    @property
    def any_order(self) -> bool:
        """The consumer said it takes any order of replies, events and audio."""
        return self.hello is not None and self.hello.any_order

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self.admitted:
            self.hub.detach(self, exc)

    @property
    def queued_bytes(self) -> int:
        """Bytes written but not yet taken by the peer."""
        return self.transport.get_write_buffer_size() if self.transport else 0

    def send(self, batch: bytes, events: bytes, audio_packets: int, now: float) -> None:
        """Write one tick's messages, applying the drop policy (module docstring)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() <= self.hub.queue_limit:
            self.over_since = None
            if self.pending_prefix:
                batch = self.pending_prefix + batch
                self.pending_prefix = b""
            transport.write(batch)
            self.bytes_written += len(batch)
            return
        if self.over_since is None:
            self.over_since = now
            if now - self._warned_at >= _WARN_EVERY:
                self._warned_at = now
                log.warning("consumer %s is not keeping up; dropping its audio (counted in "
                            "audiogate_engine_frames_dropped_total)", self.name)
        self.dropped_batches += 1
        self.hub.metrics.frames_dropped.labels("consumer_queue_full").inc(audio_packets)
        if events:
            transport.write(events)
        if now - self.over_since > self.hub.stall_seconds:
            log.warning(
                "consumer %s stalled for %.1f s; disconnecting",
                self.name, now - self.over_since,
            )
            self.hub.metrics.consumer_disconnects.labels("stalled").inc()
            transport.abort()

    def send_now(self, data: bytes) -> None:
        """Write out-of-tick event lines (never dropped while connected)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class ConsumerHub:
    """Accepts consumers (Unix socket, optional TCP) and fans each tick's bytes
    out to the admitted ones.

    Args:
        metrics: where drops and disconnects are counted.
        queue_limit: bytes a consumer may have queued before its audio is dropped.
        stall_seconds: how long a consumer may stay over the limit before it is
            disconnected.
        on_change: called when ``go_style_connected`` may have changed (a consumer
            came, went, or said hello).
        clock: monotonic time source.
    """

    def __init__(
        self,
        metrics: EngineMetrics,
        *,
        queue_limit: int,
        stall_seconds: float,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.queue_limit = queue_limit
        self.stall_seconds = stall_seconds
        self._on_change = on_change
        self._clock = clock
        #: The header packet of every session streaming Ogg pages, for consumers that
        #: connect later (one per session: two pages, about 100 bytes).
        self._headers: dict[str, bytes] = {}
        self._consumers: dict[str, Consumer] = {}
        self._names = itertools.count(1)
        self._servers: list[asyncio.AbstractServer] = []
        #: TLS handshakes in progress (``own``).
        self._handshakes = TaskOwner(_OWNER, logger=log)
        self._path: Path | None = None
        #: Where the TCP socket listens ("host:port"), when it does.
        self.tcp_address: str | None = None

    @property
    def consumers(self) -> list[Consumer]:
        """The consumers connected now."""
        return list(self._consumers.values())

    @property
    def go_style_connected(self) -> bool:
        """True while a consumer that needs the Node-safe timing is connected."""
        return any(not consumer.any_order for consumer in self._consumers.values())

    def remember_headers(self, session_id: str, packet: bytes) -> None:
        """*session_id*'s header packet went out: later consumers get it first."""
        self._headers[session_id] = packet

    def forget(self, session_id: str) -> None:
        """*session_id* sends no more audio: later consumers need not its headers."""
        self._headers.pop(session_id, None)

    def prefix_for_new_consumer(self) -> bytes:
        """Header packets for a consumer that just connected."""
        return b"".join(self._headers.values())

    def attach(self, consumer: Consumer) -> None:
        """Register a connected consumer."""
        self._consumers[consumer.name] = consumer
        log.info("consumer %s connected (%d connected)", consumer.name, len(self._consumers))
        self._on_change()

    def detach(self, consumer: Consumer, exc: Exception | None) -> None:
        """Forget a consumer whose connection closed."""
        if self._consumers.pop(consumer.name, None) is not None:
            log.info(
                "consumer %s disconnected%s (%d connected)", consumer.name,
                f": {exc}" if exc else "", len(self._consumers),
            )
            self._on_change()

    def said_hello(self, consumer: Consumer) -> None:
        """An attached consumer said what it is (its timing needs may have changed)."""
        self._on_change()

    async def start(self, listener: socket.socket, path: Path) -> None:
        """Accept consumers on *listener*, a Unix socket already bound to *path*
        (and given its mode) by the process's composition root. The hub owns it
        from here: ``close`` closes it and removes *path*."""
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: Consumer(self, f"c{next(self._names)}"), sock=listener
        )
        self._servers.append(server)
        self._path = path
        log.info("listening on %s", path)

    async def start_tcp(self, listener: socket.socket, *, token: str,
                        hello_timeout: float, tls: ssl.SSLContext | None = None) -> None:
        """Accept gated consumers on *listener*, a bound TCP socket (TLS with
        *tls*): each must send a hello carrying *token* within *hello_timeout*
        seconds (the TLS handshake included) before it is sent anything."""
        if not token:
            raise ValueError("a TCP socket needs a non-empty token")
        expected = token.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()

        def consumer() -> Consumer:
            return Consumer(self, f"t{next(self._names)}", token=expected,
                            hello_timeout=hello_timeout, tls=tls)

        server = await loop.create_server(consumer, sock=listener)
        self._servers.append(server)
        host, port = listener.getsockname()[:2]
        self.tcp_address = f"{host}:{port}"
        log.info("listening on tcp %s%s", self.tcp_address, " (TLS)" if tls else "")

    @property
    def listening(self) -> bool:
        """True while consumers can connect (on every socket started)."""
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    def broadcast(self, batch: bytes, events: bytes, audio_packets: int) -> None:
        """Send one tick's messages (*batch*, in order; *events*: its event lines
        alone) to every consumer."""
        if not self._consumers or not batch:
            return
        now = self._clock()
        for consumer in tuple(self._consumers.values()):
            consumer.send(batch, events, audio_packets, now)

    def send_event(self, line: bytes) -> None:
        """Send an event line outside a tick (stop, replace, early error)."""
        for consumer in tuple(self._consumers.values()):
            consumer.send_now(line)

    def own(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a consumer's TLS handshake as a task of the hub (cancelled by ``close``)."""
        try:
            self._handshakes.spawn(_TLS_HANDSHAKE, coroutine)
        except OwnerClosed:
            log.debug("socket consumer connected while the engine closes")

    async def close(self) -> None:
        """Stop accepting, flush what each consumer can take, close, unlink. Idempotent."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        await self._handshakes.aclose()
        for consumer in tuple(self._consumers.values()):
            if consumer.transport is not None:
                consumer.transport.close()
        self._consumers.clear()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None

