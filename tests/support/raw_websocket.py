"""A WebSocket client that writes frames byte by byte, as an attacker would: a
frame header that announces more than it sends, a payload streamed from one
shared buffer (so 32 tabs of 16 MiB cost the test nothing), or a frame that stops
half-way. It reads nothing but the handshake; ``closed_by_server`` tells whether
the server has hung up."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

__all__ = ["RawWebSocket", "frame_header"]

#: Bytes written per step (then drained): small enough to keep the test's own
#: memory flat, large enough to push 16 MiB in a fraction of a second.
_CHUNK = 256 * 1024


def frame_header(length: int, *, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A client frame's header announcing *length* payload bytes, masked with a
    zero key (so the payload goes on the wire as it is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + b"\0\0\0\0"


class RawWebSocket:
    """One upgraded connection to *port*'s ``/ws``, from *source*."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, cookie: str, source: str) -> RawWebSocket:
        """Connect and upgrade.

        Raises:
            ConnectionError: the server did not answer 101.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nCookie: ag_user={cookie}\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionError(head.decode(errors="replace"))
        return cls(reader, writer)

    async def send(self, data: bytes | memoryview) -> bool:
        """Write *data* in chunks; False once the server has closed the connection."""
        view = memoryview(data)
        try:
            for start in range(0, len(view), _CHUNK):
                self.writer.write(view[start:start + _CHUNK])
                await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def closed_by_server(self, within: float) -> bool:
        """Whether the server ends the connection within *within* seconds
        (everything it sends meanwhile is read and dropped)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            pass
        return True

    def close(self) -> None:
        """Drop the connection (no closing handshake)."""
        self.writer.close()
