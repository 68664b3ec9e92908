"""One end of a front-worker channel as an asyncio protocol: calls with answers,
casts, and the raw writes of batches and event lines.

Both ends use it: the front's handle on a worker (``workers.WorkerProcess``) and the
worker's link to its front (``worker.WorkerLink``) add what is theirs (batches in, or
the hub a session manager writes to) on top.

A call's handler may be a plain function or a coroutine function; a coroutine runs
as a task the peer owns (``aclose`` cancels and awaits them). A call whose answer
does not come within its timeout fails with ``PeerGone`` when the peer is gone, or
``CallTimedOut``; a caller that is cancelled sends the other end ``cancel`` for that
call, so work nobody waits for any more is stopped there too.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from audio_engine.cluster.channel import (
    Batch,
    ChannelError,
    ChannelReader,
    Failure,
    Kind,
    encode_call,
    encode_cast,
    encode_result,
)
from lifecycle import Process, TaskOwner, declare
from protocol import NEED_DATA

__all__ = ["CallFailed", "CallTimedOut", "Handler", "Peer", "PeerGone"]

log = logging.getLogger(__name__)

#: A call or cast handler: positional arguments in, a picklable value (or an
#: awaitable of one) out; ``CallFailed`` raised to answer with a ``Failure``.
Handler = Callable[..., Any]


_OWNER = "a channel's `Peer` (the front's worker handle, a worker's link)"
CALL = declare(
    "call-{key}", owner=_OWNER, process=Process.ENGINE,
    what="answering a call that is a coroutine (a worker's shutdown, a resolution job "
         "the front runs for a worker)",
    ends="answered, cancelled by the caller's `cancel`, or the channel closes "
         "(cancelled and awaited)")


class PeerGone(Exception):
    """The other end closed the channel (or died) before answering."""


class CallTimedOut(Exception):
    """No answer within the call's timeout."""


class CallFailed(Exception):
    """The other end answered with a ``Failure`` (raised by handlers to answer one)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure

    @property
    def kind(self) -> str:
        return self.failure.kind


class Peer(asyncio.Protocol):
    """Calls, casts and raw messages over one channel.

    Args:
        name: for logs.
        handlers: what the other end may call or cast, by method name.
    """

    def __init__(self, name: str, handlers: dict[str, Handler] | None = None) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.transport: asyncio.Transport | None = None
        self._reader = ChannelReader()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        #: Handler tasks of coroutine calls, by call id (to cancel on request).
        self._running: dict[int, asyncio.Task[None]] = {}
        self._tasks = TaskOwner(_OWNER, logger=log)
        self.closed = asyncio.Event()
        self.lost_reason: Exception | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.receive_data(data)
        try:
            while (message := reader.next_message()) is not NEED_DATA:
                assert isinstance(message, tuple)
                kind, body = message
                match kind:
                    case Kind.CALL:
                        self._on_call(*body)
                    case Kind.RESULT:
                        self._on_result(*body)
                    case Kind.CAST:
                        self._on_cast(*body)
                    case Kind.BATCH:
                        self.on_batch(body)
                    case Kind.EVENTS:
                        self.on_events(body)
        except ChannelError as exc:
            log.error("channel %s broken: %s", self.name, exc)
            self.lost_reason = exc
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_reason = self.lost_reason or exc
        self.transport = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PeerGone(f"{self.name} is gone"))
        self._pending.clear()
        for task in self._running.values():
            task.cancel()
        self.closed.set()
        self.on_lost(exc)

    # -- what subclasses receive ------------------------------------------------------------

    def on_batch(self, batch: Batch) -> None:
        """A tick's bytes arrived (the front's side)."""
        raise ChannelError("unexpected batch")

    def on_events(self, lines: bytes) -> None:
        """Event lines to write now arrived (the front's side)."""
        raise ChannelError("unexpected event lines")

    def on_lost(self, exc: Exception | None) -> None:
        """The channel closed."""

    # -- sending ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send already framed bytes (dropped once the channel is closed)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def queued_bytes(self) -> int:
        """Bytes written but not yet taken by the other end."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def cast(self, method: str, *args: Any) -> None:
        """Send a notice (no answer; dropped once the channel is closed)."""
        self.write(encode_cast(method, args))

    async def call(self, method: str, *args: Any, within: float = 10.0) -> Any:
        """Call *method* on the other end and return its value.

        Raises:
            CallFailed: it answered with a failure.
            PeerGone: the channel closed first.
            CallTimedOut: no answer within *within* seconds.
        Cancelling is safe: the other end is told to cancel the call.
        """
        if not self.connected:
            raise PeerGone(f"{self.name} is gone")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self.write(encode_call(call_id, method, args))
        try:
            async with asyncio.timeout(within):
                return await future
        except TimeoutError as exc:
            self.cast("cancel", call_id)
            raise CallTimedOut(f"{method} on {self.name}: no answer in {within:g} s") from exc
        except asyncio.CancelledError:
            self.cast("cancel", call_id)
            raise
        finally:
            self._pending.pop(call_id, None)

    # -- receiving calls -------------------------------------------------------------------

    def _on_call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        handler = self.handlers.get(method)
        if handler is None:
            self.write(encode_result(call_id, Failure("internal", f"no method {method!r}")))
            return
        try:
            value = handler(*args)
        except CallFailed as exc:
            self.write(encode_result(call_id, exc.failure))
            return
        except Exception as exc:
            log.exception("%s: call %s failed", self.name, method)
            self.write(encode_result(call_id, Failure("internal", f"{type(exc).__name__}")))
            return
        if inspect.isawaitable(value):
            if self._tasks.closed:
                self.write(encode_result(call_id, Failure("cancelled", "the channel closes")))
                return
            task = self._tasks.spawn(CALL, self._answer_later(call_id, method, value),
                                     key=f"{method}-{call_id}")
            self._running[call_id] = task
            task.add_done_callback(lambda _: self._running.pop(call_id, None))
            return
        self.write(encode_result(call_id, None, value))

    async def _answer_later(self, call_id: int, method: str, value: Awaitable[Any]) -> None:
        try:
            result = await value
        except CallFailed as exc:
            self.write(encode_result(call_id, exc.failure))
        except asyncio.CancelledError:
            self.write(encode_result(call_id, Failure("cancelled", "the call was cancelled")))
            raise
        except Exception as exc:
            log.exception("%s: call %s failed", self.name, method)
            self.write(encode_result(call_id, Failure("internal", f"{type(exc).__name__}")))
        else:
            self.write(encode_result(call_id, None, result))

    def _on_result(self, call_id: int, error: Failure | None, value: Any) -> None:
        future = self._pending.get(call_id)
        if future is None or future.done():
            return  # the caller gave up meanwhile
        if error is not None:
            future.set_exception(CallFailed(error))
        else:
            future.set_result(value)

    def _on_cast(self, method: str, args: tuple[Any, ...]) -> None:
        if method == "cancel":
            task = self._running.get(args[0])
            if task is not None:
                task.cancel()
            return
        handler = self.handlers.get(method)
        if handler is None:
            log.warning("%s: unknown notice %s", self.name, method)
            return
        try:
            handler(*args)
        except Exception:
            log.exception("%s: notice %s failed", self.name, method)

    async def aclose(self) -> None:
        """Cancel running handler tasks and close the channel. Idempotent."""
        await self._tasks.aclose()
        if self.transport is not None:
            self.transport.close()
