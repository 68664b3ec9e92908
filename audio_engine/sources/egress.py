"""The engine's egress proxy: every connection FFmpeg and yt-dlp make to the
network goes through it, and it checks each one against the URL policy.

A URL that a user typed is only the first hop. FFmpeg follows HTTP redirects
and opens HLS segments, and yt-dlp fetches whatever a page points to; checking
the first URL alone lets any of those reach an internal address. So the engine
hands FFmpeg (``http_proxy``) and the resolution workers (yt-dlp's ``proxy``) the
address of this proxy on 127.0.0.1, and the proxy:

* resolves each destination name once, refuses it if any address is forbidden
  (``UrlPolicy.resolve``), and connects to the address it checked, so a DNS
  answer that changes between check and connect (rebinding) gains nothing;
* serves only holders of a *grant*: a random credential (``Proxy-Authorization:
  Basic``) per media source or resolution job. A grant names whom its traffic is
  for (logs carry it), caps the bytes it may download (a resolution job reading
  an endless page is cut off at its cap), remembers why a connection was
  refused (the user's error message says so, without echoing internal
  addresses), and is revoked when its owner is done: its connections are closed.

It runs on the engine's event loop; relaying costs one read and one write per
64 KB, a few hundred per second at a thousand playing sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from audio_engine.sources.proxy_http import (
    MAX_HEAD_BYTES,
    Destination,
    HeadError,
    ProxyRequest,
    forward_head,
    parse_request_head,
    proxy_response,
    rewrite_response_head,
)
from audio_engine.sources.url_policy import PolicyError, UrlPolicy
from lifecycle import Process, TaskOwner, declare

__all__ = ["EgressProxy", "Grant"]

log = logging.getLogger(__name__)

#: Bytes read per relay step: FFmpeg's own I/O buffer is 32 KB.
_CHUNK = 64 * 1024
#: Seconds a client has to send its request head, and an origin its response head
#: once the request went out (FFmpeg's and yt-dlp's own timeouts are shorter).
_HEAD_TIMEOUT = 30.0
#: Seconds a half-closed tunnel waits for its other direction to finish.
_LINGER = 5.0


@dataclass(eq=False, slots=True)
class Grant:
    """The right to use the proxy, for one media source or one resolution job."""

    token: str
    #: Whom the traffic is for (a session id or a job name), for logs.
    label: str
    #: Most bytes the grant may download over all its connections (None: no cap).
    max_bytes: int | None = None
    #: Bytes downloaded so far.
    received: int = 0
    #: Why the last connection was refused or cut: a message for the user.
    problem: str | None = None
    #: Connections refused because their destination is not allowed.
    refused: int = 0
    revoked: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class _OverCap(Exception):
    """A grant passed its byte cap (the argument is the grant)."""


CONNECTION = declare(
    "egress-connection", owner="EgressProxy", process=Process.ENGINE,
    what="one client connection of the egress proxy (started by its server, kept in a "
         "set): one request, relayed to the address the policy checked",
    ends="the exchange ends, its grant is revoked, or `EgressProxy.close` (cancelled "
         "and awaited)")
PIPE = declare(
    "egress-pipe-{key}", owner="EgressProxy", process=Process.ENGINE,
    what="one direction of a connection the egress proxy relays (a front's catalogue "
         "job, or a worker's source: every process that opens media has its own proxy)",
    ends="its connection ends, or its grant is revoked (cancelled and awaited by the "
         "connection)")


class EgressProxy:
    """An HTTP proxy on 127.0.0.1 that applies *policy* to every connection.

    Args:
        policy: what may be reached.
        connect_timeout: seconds to connect to an origin.
        max_connections: connections open at once, over all grants (more are
            refused): each costs two sockets and two buffers.
        per_grant: connections one grant may have open at once (FFmpeg uses one
            or two; an HLS source one per segment, in turn).
        on_refusal: called with a reason label ("policy", "cap", ...) for metrics.
    """

    def __init__(self, policy: UrlPolicy, *, connect_timeout: float = 10.0,
                 max_connections: int = 4096, per_grant: int = 16,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.per_grant = per_grant
        self._on_refusal = on_refusal or (lambda reason: None)
        self._grants: dict[str, Grant] = {}
        #: The connections' own tasks (started by the server: one per client).
        self._tasks: set[asyncio.Task[None]] = set()
        #: Their pipes (a direction each).
        self._pipes = TaskOwner("EgressProxy", logger=log)
        self._server: asyncio.Server | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port, see ``port``)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=MAX_HEAD_BYTES, backlog=1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, revoke every grant, close every connection. Idempotent."""
        if self._server is not None:
            self._server.close()
        for grant in list(self._grants.values()):
            self.revoke(grant)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pipes.aclose()

    # -- grants --------------------------------------------------------------------

    def grant(self, label: str, *, max_bytes: int | None = None) -> Grant:
        """A new credential for *label*'s traffic; revoke it when done."""
        grant = Grant(secrets.token_urlsafe(18), label, max_bytes)
        self._grants[grant.token] = grant
        return grant

    def revoke(self, grant: Grant) -> None:
        """Forget *grant* and close its connections. Idempotent."""
        grant.revoked = True
        self._grants.pop(grant.token, None)
        for task in list(grant.tasks):
            task.cancel()

    def url(self, grant: Grant) -> str:
        """The proxy URL (credential included) that FFmpeg and yt-dlp are given."""
        return f"http://{grant.token}:x@127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._tasks)

    @property
    def grants(self) -> int:
        """Grants held now."""
        return len(self._grants)

    # -- one client connection -------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            self._on_refusal("busy")
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer, task)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        except _OverCap as exc:
            over: Grant = exc.args[0]
            self._on_refusal("cap")
            log.info("egress for %s cut at its %s-byte cap", over.label, over.max_bytes)
            # A reset, not a close: a body that ends at a close would look
            # complete to the client.
            writer.transport.abort()
        except asyncio.CancelledError:
            # Revoked or shutting down: the connection's owner asked for its end.
            writer.transport.abort()
            raise
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     task: asyncio.Task[None]) -> None:
        async with asyncio.timeout(_HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        try:
            request = parse_request_head(head)
        except HeadError as exc:
            writer.write(proxy_response(400, "Bad Request", str(exc)))
            return
        token = request.token
        grant = self._grants.get(token) if token else None
        if grant is None:
            # FFmpeg sends its credential only after a 407 naming the scheme.
            writer.write(proxy_response(
                407, "Proxy Authentication Required", "a proxy credential is required",
                (("Proxy-Authenticate", 'Basic realm="audiogate egress"'),)))
            return
        if len(grant.tasks) >= self.per_grant:
            self._on_refusal("busy")
            writer.write(proxy_response(503, "Service Unavailable", "too many connections"))
            return
        grant.tasks.add(task)
        try:
            await self._forward(request, grant, reader, writer)
        finally:
            grant.tasks.discard(task)

    async def _forward(self, request: ProxyRequest, grant: Grant,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            destination = request.destination()
        except HeadError as exc:
            writer.write(proxy_response(400, "Bad Request", str(exc)))
            return
        if grant.max_bytes is not None and grant.received >= grant.max_bytes:
            writer.write(proxy_response(403, "Forbidden", "download limit reached"))
            return
        upstream = await self._connect(destination, grant, writer)
        if upstream is None:
            return
        origin_reader, origin_writer = upstream
        try:
            if request.method == "CONNECT":
                writer.write(proxy_response(200, "Connection established"))
                await self._tunnel(reader, writer, origin_reader, origin_writer, grant)
            else:
                origin_writer.write(forward_head(request, destination))
                await self._exchange(reader, writer, origin_reader, origin_writer, grant)
        finally:
            origin_writer.close()

    async def _connect(
        self, destination: Destination, grant: Grant, writer: asyncio.StreamWriter,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Check *destination* and connect to one of its checked addresses; on
        refusal answer the client and return None."""
        try:
            addresses = await self.policy.resolve(destination.host, destination.port)
        except PolicyError as exc:
            grant.refused += 1
            grant.problem = (
                "the URL led to an address that is not allowed (private or local)"
                if "not allowed" in str(exc) else "could not reach the source (a host name "
                "did not resolve)")
            self._on_refusal("policy")
            log.info("egress for %s refused: %s", grant.label, exc)
            writer.write(proxy_response(403, "Forbidden", "destination not allowed"))
            return None
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await asyncio.open_connection(str(address), destination.port,
                                                         limit=MAX_HEAD_BYTES)
            except (OSError, TimeoutError):
                continue
        grant.problem = "could not reach the source (the connection failed)"
        writer.write(proxy_response(502, "Bad Gateway", "could not connect"))
        return None

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        origin_reader: asyncio.StreamReader,
                        origin_writer: asyncio.StreamWriter, grant: Grant) -> None:
        """One plain HTTP exchange: the request body goes up while the response
        head is rewritten (``Connection: close``) and the body relayed down."""
        upload = self._pipes.spawn(PIPE, _pipe(reader, origin_writer, None), key=grant.label)
        try:
            while True:
                async with asyncio.timeout(_HEAD_TIMEOUT):
                    head = await origin_reader.readuntil(b"\r\n\r\n")
                try:
                    status, rewritten = rewrite_response_head(head)
                except HeadError:
                    writer.write(proxy_response(502, "Bad Gateway", "bad response head"))
                    return
                writer.write(rewritten)
                if not 100 <= status < 200 or status == 101:
                    break
            await _pipe(origin_reader, writer, grant)
        finally:
            upload.cancel()
            await asyncio.wait([upload])

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      origin_reader: asyncio.StreamReader,
                      origin_writer: asyncio.StreamWriter, grant: Grant) -> None:
        up = self._pipes.spawn(PIPE, _pipe(reader, origin_writer, None), key=grant.label)
        down = self._pipes.spawn(PIPE, _capped_pipe(origin_reader, writer, grant),
                                 key=grant.label)
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down in done and down.result():
                raise _OverCap(grant)  # ends the tunnel at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.gather(up, down)), _LINGER)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.wait([up, down])


async def _capped_pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       grant: Grant) -> bool:
    """``_pipe`` of a download, as a task: True when it stopped at the grant's cap."""
    try:
        await _pipe(reader, writer, grant)
    except _OverCap:
        return True
    return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                grant: Grant | None) -> None:
    """Copy until EOF, then half-close; downloads count against *grant*'s cap.

    Raises:
        _OverCap: the grant's byte cap was passed (its problem says so).
    """
    try:
        while data := await reader.read(_CHUNK):
            if grant is not None:
                grant.received += len(data)
                if grant.max_bytes is not None and grant.received > grant.max_bytes:
                    grant.problem = (f"the download went past its limit of "
                                     f"{grant.max_bytes / (1 << 20):g} MB")
                    raise _OverCap(grant)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        return
