"""WebSocket messages bounded where they are read: a size and a deadline.

An application can only check a message's size once the server has read it
whole, and uvicorn's WebSocket layer reads messages of up to 16 MiB (its
default ``ws_max_size``) into memory first. The playground parses at most 8 KiB,
but 32 tabs from one address each sending 16 MiB grew the gateway by 1 GB before
that check ran, and frames that stop half-way were held until the keepalive
gave up (40 s). So the limits live in the WebSocket layer itself:

* **size**: uvicorn hands ``ws_max_size`` to the websockets protocol, which
  refuses a frame as soon as its *header* announces more (close code 1009,
  nothing of it read), counts the frames of a fragmented message together and
  bounds what permessage-deflate may inflate;
* **time**: a message must arrive whole within ``message_timeout`` seconds of its
  first byte (``message_in_progress`` says when bytes of an unfinished frame or
  fragmented message are held). A connection that stops mid-way is closed (code
  1008). The clock does not run while the application has not taken the
  previous message yet (uvicorn then stops reading, so the wait is ours, not the
  client's), and it is set once per message, never extended by more bytes.

``BoundedWebSocketProtocol`` is uvicorn's websockets-sansio protocol with the
deadline added; ``audiogate.serving.HttpService`` installs it with the size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import CloseCode
from websockets.protocol import Protocol

__all__ = ["INCOMPLETE", "TOO_LARGE", "BoundedWebSocketProtocol", "message_in_progress"]

log = logging.getLogger(__name__)

#: Reasons passed to the refusal callback (metric labels).
TOO_LARGE = "too_large"
INCOMPLETE = "incomplete"


def _waits_for_a_frame(parser: Any) -> bool:
    """Whether websockets' parser coroutine sits at the start of a frame: its
    innermost ``yield from`` is ``StreamReader.at_eof`` (waiting for a first
    byte), not ``Frame.parse`` or ``read_exact`` (inside a frame)."""
    inner = parser
    while (sub := getattr(inner, "gi_yieldfrom", None)) is not None:
        inner = sub
    code = getattr(inner, "gi_code", None)
    return getattr(code, "co_name", "") == "at_eof"


def message_in_progress(conn: Protocol) -> bool:
    """Whether *conn* holds part of a message: bytes of a frame not complete yet,
    a frame header read without its payload, or a fragmented message whose last
    frame has not come."""
    if conn.current_size is not None:  # fragments received, the final one not yet
        return True
    if conn.reader.buffer:
        return True
    return not _waits_for_a_frame(conn.parser)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol plus the message deadline.

    Reads from its config: ``ws_message_timeout`` (seconds) and
    ``on_ws_refused`` (called with ``"too_large"`` or ``"incomplete"`` once per
    connection closed for that reason).
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._message_timeout: float = config.ws_message_timeout
        self._on_refused: Callable[[str], None] = config.on_ws_refused
        self._deadline: Any = None  # asyncio.TimerHandle
        self._refused = False
        #: Messages completed (see send_receive_event_to_app and the pings).
        self._completed = 0

    def data_received(self, data: bytes) -> None:
        completed_before = self._completed
        super().data_received(data)
        if isinstance(self.conn.parser_exc, PayloadTooBig):
            self._refuse(TOO_LARGE)
        self._update_deadline(restart=self._completed != completed_before)

    async def receive(self) -> Any:
        message = await super().receive()
        self._update_deadline(restart=False)  # reading may have resumed
        return message

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    # Completed messages: data messages and control frames outside a fragmented
    # message. A ping inside one does not complete it.

    def send_receive_event_to_app(self) -> None:
        self._completed += 1
        super().send_receive_event_to_app()

    def handle_ping(self) -> None:
        if self.conn.current_size is None:
            self._completed += 1
        super().handle_ping()

    def handle_pong(self, event: Any) -> None:
        if self.conn.current_size is None:
            self._completed += 1
        super().handle_pong(event)

    def _update_deadline(self, *, restart: bool) -> None:
        if (self.transport is None or self.transport.is_closing() or self.read_paused
                or not message_in_progress(self.conn)):
            self._cancel_deadline()
            return
        if restart:
            self._cancel_deadline()  # a message completed: the next one has its own time
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._message_timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not message_in_progress(self.conn):
            return
        log.debug("closing a WebSocket from %s: a message was not completed in %.1f s",
                  self.client, self._message_timeout)
        self._refuse(INCOMPLETE)
        self.conn.fail(CloseCode.POLICY_VIOLATION, "message not completed in time")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def _refuse(self, reason: str) -> None:
        if not self._refused:
            self._refused = True
            self._on_refused(reason)
