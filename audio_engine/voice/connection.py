"""``VoiceConnection``: one guild's Discord voice connection, a thin asyncio shell.

The protocol lives in ``gateway.VoiceGateway`` (sans-I/O); this module owns the
sockets and the tasks: one runner task per connection, and per WebSocket attempt a
``TaskGroup`` of a reader, a writer, a heartbeat, the handshake deadline and (after
READY) IP discovery. The UDP endpoint outlives attempts that resume.

Audio goes out through ``send_opus``, called by whoever owns the 20 ms clock (an engine
worker's tick): it encrypts and ``sendto``s at once and never waits. It drops the frame
(counted) while the connection is not usable or the kernel's send buffer backs up.

Typical use::

    voice = VoiceConnection(credentials, on_close=report_websocket_closed)
    await voice.connect()                 # raises VoiceConnectError if it never connects
    ... every 20 ms: voice.send_opus(frame)
    await voice.close()                   # idempotent; no on_close for our own close
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, NoReturn, cast
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from applog import SessionLogger, session_logger
from audio_engine.voice.actions import (
    Action,
    CloseForResume,
    DiscoverIp,
    SendBinary,
    SendJson,
    SessionReady,
    StartHeartbeat,
)
from audio_engine.voice.gateway import (
    DEFAULT_MAX_ATTEMPTS,
    CloseDecision,
    Phase,
    VoiceCredentials,
    VoiceGateway,
    VoiceGatewayError,
    reconnect_delay,
)
from audio_engine.voice.opcodes import (
    GATEWAY_VERSION,
    CloseAction,
    EncryptionMode,
    SpeakingFlag,
    VoiceCloseCode,
)
from audio_engine.voice.transport import (
    IP_DISCOVERY_SIZE,
    InvalidDiscoveryResponse,
    RtpPacketizer,
    TransportEncryptor,
    ip_discovery_request,
    parse_ip_discovery_response,
)
from lifecycle import Process, TaskOwner, declare

__all__ = [
    "VoiceClosed",
    "VoiceConnectError",
    "VoiceConnection",
    "VoiceConnectionState",
    "VoiceStats",
    "gateway_url",
]

_log = logging.getLogger(__name__)

_OWNER = "VoiceConnection"
_ATTEMPT = "`VoiceConnection`'s task group (one WebSocket)"
_ATTEMPT_ENDS = "its WebSocket closes (the group cancels and awaits the others)"
RUNNER = declare(
    "voice-{key}", owner=_OWNER, process=Process.WORKER,
    what="a Lavalink player's Discord voice connection: its WebSockets, one after the "
         "other (resumes, reconnects)",
    ends="closed for good (Discord's close, or attempts used up), or "
         "`VoiceConnection.close` (cancelled, awaited)")
READER = declare(
    "voice-{key}-reader", owner=_ATTEMPT, process=Process.WORKER,
    what="reading the voice gateway's messages", ends=_ATTEMPT_ENDS)
WRITER = declare(
    "voice-{key}-writer", owner=_ATTEMPT, process=Process.WORKER,
    what="writing the voice connection's outgoing messages", ends=_ATTEMPT_ENDS)
HANDSHAKE_DEADLINE = declare(
    "voice-{key}-handshake-deadline", owner=_ATTEMPT, process=Process.WORKER,
    what="ending a voice handshake that takes longer than 10 s", ends=_ATTEMPT_ENDS)
HEARTBEAT = declare(
    "voice-{key}-heartbeat", owner=_ATTEMPT, process=Process.WORKER,
    what="the voice gateway's heartbeat, at the interval its Hello says",
    ends="a newer Hello, or " + _ATTEMPT_ENDS)
DISCOVERY = declare(
    "voice-{key}-discovery", owner=_ATTEMPT, process=Process.WORKER,
    what="discovering the voice connection's public address over UDP (its Ready)",
    ends="the answer, or " + _ATTEMPT_ENDS)

#: Gateway messages waiting for the writer. The gateway sends a few messages per
#: minute (heartbeats, speaking, DAVE); 64 only fills if the socket stopped draining.
_OUTBOX_SIZE: Final = 64
#: Largest gateway message accepted. DAVE welcomes carry the MLS tree of the whole call
#: (a few hundred bytes per member); 1 MiB is hundreds of times a large call's.
_MAX_MESSAGE_SIZE: Final = 1 << 20
#: Incoming messages websockets may buffer before it stops reading the socket.
_MAX_INCOMING_QUEUE: Final = 16
#: Bytes of packets the UDP transport may hold when the kernel refuses more: about ten
#: frames of 128 kb/s Opus. Beyond that frames are dropped, never queued without bound.
_MAX_UDP_BACKLOG: Final = 4096
#: Seconds an attempt may take from opening the WebSocket to a usable session.
_HANDSHAKE_TIMEOUT: Final = 10.0
#: IP discovery: UDP may lose the request, so it is sent up to three times, 1 s apart.
_DISCOVERY_TRIES: Final = 3
_DISCOVERY_WAIT: Final = 1.0


def gateway_url(endpoint: str) -> str:
    """The WebSocket URL of a voice *endpoint* as Discord gives it (``host:port``, no
    scheme: ``wss://`` is added), or with its own ``ws://``/``wss://`` scheme (a local
    stand-in), with ``v=8`` in the query.

    Raises:
        ValueError: for another scheme or no host.
    """
    url = endpoint if "://" in endpoint else f"wss://{endpoint}"
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"voice endpoint {endpoint!r} is not a ws:// or wss:// host")
    query = f"{parts.query}&v={GATEWAY_VERSION}" if parts.query else f"v={GATEWAY_VERSION}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


class VoiceConnectionState(Enum):
    """What the owner of a connection sees."""

    NEW = "new"
    #: Opening the first WebSocket and handshaking.
    CONNECTING = "connecting"
    #: Frames sent with ``send_opus`` go out.
    CONNECTED = "connected"
    #: Resuming or identifying again after a close (frames are dropped meanwhile).
    RECONNECTING = "reconnecting"
    #: Over; ``closed_with`` says why unless we closed it ourselves.
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class VoiceClosed:
    """A final close, as Lavalink's ``WebSocketClosedEvent`` reports it: Discord's close
    code (1006 when the connection dropped without one), its reason, and whether
    Discord (rather than we) closed it."""

    code: int
    reason: str
    by_remote: bool


class VoiceConnectError(ConnectionError):
    """The connection closed for good before it was ever usable."""

    def __init__(self, closed: VoiceClosed) -> None:
        super().__init__(f"voice connection closed with {closed.code}: {closed.reason}")
        self.closed = closed


@dataclass(slots=True)
class VoiceStats:
    """Counters of one connection (monotonic; the owner computes rates)."""

    packets_sent: int = 0
    #: ``send_opus`` while not connected (handshaking, resuming, closed).
    frames_dropped_disconnected: int = 0
    #: ``send_opus`` while the UDP socket's backlog was full.
    frames_dropped_congested: int = 0
    #: ``send_opus`` whose frame DAVE failed to encrypt.
    frames_dropped_encryption: int = 0
    #: Gateway messages dropped because the outbox was full.
    messages_dropped: int = 0


class _AttemptEnded(Exception):
    """Ends one WebSocket attempt; carries the close for ``connection_lost``."""

    def __init__(self, code: int | None, reason: str, *, by_remote: bool) -> None:
        super().__init__(reason)
        self.code, self.reason, self.by_remote = code, reason, by_remote


def _first_leaf(group: BaseExceptionGroup[_AttemptEnded]) -> _AttemptEnded:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, _AttemptEnded)
    return first


class _UdpLink(asyncio.DatagramProtocol):
    """The connected UDP socket to the voice server: sends packets, hands IP discovery
    answers to whoever waits for one, ignores everything else it receives."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self._waiter: asyncio.Future[bytes] | None = None
        self._paused = False
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # What create_datagram_endpoint hands over (CPython's UDP transport does not
        # inherit from DatagramTransport, so this is a cast, not a check).
        self.transport = cast(asyncio.DatagramTransport, transport)
        # asyncio's UDP transports buffer what the kernel refuses and call
        # pause_writing() past the high-water mark; the mark is ours (the method is
        # not part of DatagramTransport's declared interface, hence getattr).
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=_MAX_UDP_BACKLOG)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and len(data) == IP_DISCOVERY_SIZE:
            waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1  # ICMP errors of earlier packets: counted, sending goes on

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def send(self, packet: bytes) -> bool:
        """Send *packet* unless the socket is gone or backed up; False when dropped."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._paused:
            return False
        transport.sendto(packet)
        return True

    async def discover(self, ssrc: int) -> tuple[str, int]:
        """Our external (address, port) by IP discovery for *ssrc*.

        Raises:
            TimeoutError: if no valid answer came after all tries.
        """
        loop = asyncio.get_running_loop()
        for _ in range(_DISCOVERY_TRIES):
            self._waiter = loop.create_future()
            if not self.send(ip_discovery_request(ssrc)):
                break
            deadline = loop.time() + _DISCOVERY_WAIT
            try:
                while True:
                    async with asyncio.timeout_at(deadline):
                        data = await self._waiter
                    try:
                        return parse_ip_discovery_response(data, ssrc)
                    except InvalidDiscoveryResponse:
                        self._waiter = loop.create_future()  # not ours: keep waiting
            except TimeoutError:
                continue
            finally:
                self._waiter = None
        raise TimeoutError(f"no IP discovery answer for SSRC {ssrc}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class VoiceConnection:
    """One guild's voice connection (see the module docstring).

    Args:
        credentials: the voice server, session and ids from the Lavalink client.
        on_close: called once, on the event loop, with the close that ended the
            connection for good (not called for our own ``close()``).
        dave: take part in DAVE end-to-end encryption when the call uses it.
        max_attempts: failed WebSocket attempts in a row before giving up.
        clock: monotonic seconds, for heartbeat nonces and ping.
    """

    def __init__(self, credentials: VoiceCredentials, *,
                 on_close: Callable[[VoiceClosed], None] | None = None, dave: bool = True,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = gateway_url(credentials.endpoint)
        self.stats = VoiceStats()
        self._core = VoiceGateway(credentials, dave=dave, max_attempts=max_attempts)
        self._on_close = on_close
        self._clock = clock
        self._log: SessionLogger = session_logger(_log, str(credentials.guild_id))
        self._state = VoiceConnectionState.NEW
        self._key = str(credentials.guild_id)
        self._tasks = TaskOwner(_OWNER, logger=_log)
        self._runner: asyncio.Task[None] | None = None
        # Set on every change of ``_state``; waiters clear it and look again.
        self._state_changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._closed_with: VoiceClosed | None = None
        self._outbox: asyncio.Queue[str | bytes] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._udp: _UdpLink | None = None
        self._packetizer: RtpPacketizer | None = None
        self._closing_locally = False

    # -- what the owner reads ----------------------------------------------------------

    @property
    def state(self) -> VoiceConnectionState:
        """Where the connection stands."""
        return self._state

    @property
    def usable(self) -> bool:
        """Frames sent with ``send_opus`` go out now (``state`` is CONNECTED)."""
        return self._state is VoiceConnectionState.CONNECTED

    @property
    def closed_with(self) -> VoiceClosed | None:
        """The final close Discord (or a failure) caused; None while open or after our
        own ``close()``."""
        return self._closed_with

    @property
    def ping_ms(self) -> int:
        """Last heartbeat round trip in ms, -1 while not connected (Lavalink's ``ping``)."""
        ping = self._core.ping
        if ping is None or self._state is not VoiceConnectionState.CONNECTED:
            return -1
        return round(ping * 1000)

    @property
    def mode(self) -> EncryptionMode | None:
        """The transport encryption mode in use."""
        return self._core.mode

    @property
    def dave_active(self) -> bool:
        """Whether frames are end-to-end encrypted (DAVE) right now."""
        return self._core.dave is not None and self._core.dave.active

    @property
    def resumes(self) -> int:
        """Closes after which the session was resumed."""
        return self._core.resumes

    @property
    def reidentifies(self) -> int:
        """Closes after which a new session was identified."""
        return self._core.reidentifies

    # -- what the owner calls ----------------------------------------------------------

    async def connect(self) -> None:
        """Start the connection (once) and wait until voice can flow.

        It gives up by itself after ``max_attempts`` failed attempts of at most 10 s
        each. Cancelling the wait (``asyncio.timeout`` around it) is safe and leaves the
        connection trying; ``close()`` stops it.

        Raises:
            VoiceConnectError: if it closed for good before being usable (or was
                closed before it started).
        """
        if self._runner is None and self._state is VoiceConnectionState.NEW:
            self._set_state(VoiceConnectionState.CONNECTING)
            self._runner = self._tasks.spawn(RUNNER, self._run(), key=self._key)
        settled = (VoiceConnectionState.CONNECTED, VoiceConnectionState.CLOSED)
        while self._state not in settled:
            self._state_changed.clear()
            await self._state_changed.wait()
        if self._state is VoiceConnectionState.CLOSED:
            raise VoiceConnectError(self._closed_with or VoiceClosed(
                VoiceCloseCode.NORMAL, "closed", by_remote=False))

    def send_opus(self, frame: bytes) -> bool:
        """Send one 20 ms Opus frame now; never blocks. False if it was dropped (not
        connected, or the socket backed up). The first frame also marks us speaking."""
        packetizer, udp = self._packetizer, self._udp
        if self._state is not VoiceConnectionState.CONNECTED or packetizer is None \
                or udp is None:
            self.stats.frames_dropped_disconnected += 1
            if packetizer is not None:
                packetizer.skip()
            return False
        if not self._core.speaking:
            self.set_speaking(True)
        dave = self._core.dave
        try:
            payload = dave.encrypt(frame) if dave is not None else frame
        except Exception:  # davey's errors are untyped; the tick must go on
            self.stats.frames_dropped_encryption += 1
            packetizer.skip()
            return False
        if not udp.send(packetizer.packetize(payload)):
            self.stats.frames_dropped_congested += 1
            return False
        self.stats.packets_sent += 1
        return True

    def set_speaking(self, speaking: bool) -> None:
        """Tell Discord we speak or stopped (op 5). Before pausing, send five frames of
        ``OPUS_SILENCE_FRAME`` so receivers do not interpolate (Discord's advice)."""
        flags = SpeakingFlag.MICROPHONE if speaking else SpeakingFlag.NONE
        self._apply(self._core.set_speaking(flags))

    async def close(self) -> None:
        """Close the connection (WebSocket close 1000, UDP closed, tasks ended).
        Idempotent; safe to cancel (the runner is still ended). ``on_close`` is not
        called."""
        self._core.close()
        self._closing_locally = True
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(runner)
        self._shutdown()

    async def wait_closed(self) -> VoiceClosed | None:
        """Wait until the connection is over; its final close, or None after ``close()``."""
        await self._finished.wait()
        return self._closed_with

    async def __aenter__(self) -> VoiceConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the runner --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                decision = await self._attempt()
                if decision.action is CloseAction.FINAL:
                    break
                self._log.info("voice closed (%s, %s): %s", decision.code, decision.reason,
                               decision.action.value)
                self._set_state(VoiceConnectionState.RECONNECTING)
                if decision.action is CloseAction.REIDENTIFY:
                    self._packetizer = None  # a new session brings a new SSRC and key
                await asyncio.sleep(reconnect_delay(self._core.failed_attempts))
            if not self._closing_locally:
                self._report(VoiceClosed(
                    decision.code if decision.code is not None else VoiceCloseCode.ABNORMAL,
                    decision.reason, decision.by_remote))
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("voice connection failed")
            self._report(VoiceClosed(VoiceCloseCode.INTERNAL_ERROR, "internal error",
                                     by_remote=False))
        finally:
            self._shutdown()

    async def _attempt(self) -> CloseDecision:
        """One WebSocket: handshake, then run until it closes."""
        try:
            async with connect(self.url, open_timeout=_HANDSHAKE_TIMEOUT, close_timeout=2,
                               ping_interval=None, proxy=None, max_size=_MAX_MESSAGE_SIZE,
                               max_queue=_MAX_INCOMING_QUEUE) as ws:
                ended = await self._session(ws)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            ended = _AttemptEnded(None, f"could not open the voice WebSocket: {exc}",
                                  by_remote=False)
        return self._core.connection_lost(ended.code, ended.reason, by_remote=ended.by_remote)

    async def _session(self, ws: ClientConnection) -> _AttemptEnded:
        self._outbox = asyncio.Queue(maxsize=_OUTBOX_SIZE)
        ended: _AttemptEnded | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                self._group = tasks
                self._apply(self._core.start(now=self._clock()))
                key = self._key
                tasks.create_task(self._read(ws), name=READER.task_name(key))
                tasks.create_task(self._write(ws), name=WRITER.task_name(key))
                tasks.create_task(self._handshake_deadline(),
                                  name=HANDSHAKE_DEADLINE.task_name(key))
        except* _AttemptEnded as group_error:
            ended = _first_leaf(group_error)
        finally:
            self._group, self._outbox, self._heartbeat = None, None, None
            if self._state is VoiceConnectionState.CONNECTED:
                self._set_state(VoiceConnectionState.RECONNECTING)
        assert ended is not None, "a voice session ends only with _AttemptEnded"
        return ended

    async def _read(self, ws: ClientConnection) -> NoReturn:
        try:
            async for message in ws:
                if isinstance(message, str):
                    actions = self._core.receive_text(message, now=self._clock())
                else:
                    actions = self._core.receive_binary(message)
                self._apply(actions)
        except ConnectionClosed as exc:
            raise self._ended(exc) from exc
        except VoiceGatewayError as exc:
            self._log.warning("voice gateway broke the protocol: %s", exc)
            await ws.close(1002, "protocol error")
            raise _AttemptEnded(None, str(exc), by_remote=False) from exc
        rcvd = ws.protocol.close_rcvd
        raise _AttemptEnded(rcvd.code if rcvd else None, rcvd.reason if rcvd else "",
                            by_remote=not self._closing_locally)

    async def _write(self, ws: ClientConnection) -> NoReturn:
        assert self._outbox is not None
        outbox = self._outbox
        try:
            while True:
                await ws.send(await outbox.get())
        except ConnectionClosed as exc:
            raise self._ended(exc) from exc

    async def _beat(self, interval: float) -> NoReturn:
        while True:
            await asyncio.sleep(interval)
            self._apply(self._core.heartbeat(now=self._clock()))

    async def _handshake_deadline(self) -> None:
        await asyncio.sleep(_HANDSHAKE_TIMEOUT)
        if self._core.phase is not Phase.CONNECTED:
            raise _AttemptEnded(None, "voice handshake timed out", by_remote=False)

    async def _discover(self, action: DiscoverIp) -> None:
        udp = self._udp
        if udp is None or udp.transport is None or udp.remote != (action.address, action.port):
            if udp is not None:
                udp.close()
            loop = asyncio.get_running_loop()
            try:
                _, udp = await loop.create_datagram_endpoint(
                    _UdpLink, remote_addr=(action.address, action.port))
            except OSError as exc:
                raise _AttemptEnded(None, f"voice UDP: {exc}", by_remote=False) from exc
            udp.remote = (action.address, action.port)
            self._udp = udp
        try:
            address, port = await udp.discover(action.ssrc)
        except TimeoutError as exc:
            raise _AttemptEnded(None, str(exc), by_remote=False) from exc
        self._apply(self._core.ip_discovered(address, port))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendJson():
                    self._enqueue(action.to_text())
                case SendBinary():
                    self._enqueue(action.to_bytes())
                case StartHeartbeat(interval=interval):
                    tasks = self._group
                    if tasks is not None:
                        if self._heartbeat is not None:
                            self._heartbeat.cancel()
                        self._heartbeat = tasks.create_task(
                            self._beat(interval), name=HEARTBEAT.task_name(self._key))
                case DiscoverIp():
                    tasks = self._group
                    if tasks is not None:
                        tasks.create_task(self._discover(action),
                                          name=DISCOVERY.task_name(self._key))
                case SessionReady(ssrc=ssrc, mode=mode, secret_key=key):
                    self._packetizer = RtpPacketizer(ssrc, TransportEncryptor(mode, key))
                    self._became_usable()
                case CloseForResume(reason=reason):
                    self._log.info("voice gateway unresponsive: %s", reason)
                    raise _AttemptEnded(None, reason, by_remote=False)
        if self._core.phase is Phase.CONNECTED and self._state is not \
                VoiceConnectionState.CONNECTED and self._packetizer is not None:
            self._became_usable()  # resumed: the session and key are the ones we had

    def _enqueue(self, message: str | bytes) -> None:
        outbox = self._outbox
        if outbox is None:
            return  # between attempts: the core repeats what matters on the next one
        try:
            outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.stats.messages_dropped += 1
            self._log.warning("voice gateway outbox full: a message was dropped")

    def _became_usable(self) -> None:
        self._set_state(VoiceConnectionState.CONNECTED)

    def _set_state(self, state: VoiceConnectionState) -> None:
        self._state = state
        self._state_changed.set()

    def _ended(self, exc: ConnectionClosed) -> _AttemptEnded:
        code = exc.rcvd.code if exc.rcvd is not None else None
        reason = exc.rcvd.reason if exc.rcvd is not None else str(exc)
        return _AttemptEnded(code, reason, by_remote=not self._closing_locally)

    def _report(self, closed: VoiceClosed) -> None:
        self._closed_with = closed
        self._log.info("voice connection closed for good: %d %s", closed.code, closed.reason)
        if self._on_close is not None:
            try:
                self._on_close(closed)
            except Exception:
                self._log.exception("on_close callback failed")

    def _shutdown(self) -> None:
        self._set_state(VoiceConnectionState.CLOSED)
        self._packetizer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        self._finished.set()
