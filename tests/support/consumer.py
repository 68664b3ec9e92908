"""A socket consumer for tests: connects to an engine, timestamps every message.

Reading runs in its own asyncio task that does nothing but read and decode, so
arrival times reflect the engine's pacing, not the test's work.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol import (
    NEED_DATA,
    AudioPacket,
    DecodedMessage,
    Event,
    EventType,
    Hello,
    OggOpusReader,
    OggPage,
    OggPageReader,
    OpusPacket,
    StreamDecoder,
)

__all__ = ["Arrival", "SocketConsumer"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One decoded message and when its bytes were read (``time.monotonic``)."""

    at: float
    read_index: int
    message: DecodedMessage


class SocketConsumer:
    """Reads an engine socket until closed. Use ``async with``.

    With *hello*, it writes that line first, as our gateway does; without, it is a
    Go-style consumer (it never writes).
    """

    def __init__(self, path: Path | tuple[str, int], *, read_size: int = 65536,
                 hello: Hello | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.path = path
        self.read_size = read_size
        self.hello = hello
        self.tls = tls
        self.arrivals: list[Arrival] = []
        self.reads = 0
        #: Every byte read from the engine, decoded or not.
        self.bytes_read = 0
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.paused = False

    async def __aenter__(self) -> SocketConsumer:
        if isinstance(self.path, tuple):  # a TCP node (optionally TLS)
            host, port = self.path
            reader, self._writer = await asyncio.open_connection(
                host, port, limit=1 << 22, ssl=self.tls,
                server_hostname=host if self.tls else None)
        else:
            reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=1 << 22)
        if self.hello is not None:
            self._writer.write(bytes(self.hello))
        self._task = asyncio.create_task(self._read(reader))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = StreamDecoder()
        try:
            while True:
                try:
                    data = await reader.read(self.read_size)
                except (ConnectionError, ssl.SSLError):
                    return  # closed by the engine (a refused consumer)
                if not data:
                    return
                now = time.monotonic()
                self.reads += 1
                self.bytes_read += len(data)
                decoder.receive_data(data)
                for message in decoder.events():
                    self.arrivals.append(Arrival(now, self.reads, message))
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until *predicate()* holds, re-checking after every read."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if self.closed.is_set() and not predicate():
                    raise ConnectionError("consumer closed before the condition held")
                await self._changed.wait()

    async def wait_event(self, session_id: str, kind: EventType, timeout: float = 10.0,
                         count: int = 1) -> Event:
        """Wait for the *count*-th event of *kind* for *session_id*; return it."""
        await self.wait_for(lambda: len(self.events(session_id, kind)) >= count, timeout)
        return self.events(session_id, kind)[count - 1]

    async def wait_packets(self, session_id: str, count: int, timeout: float = 10.0) -> None:
        """Wait until *count* audio packets of *session_id* arrived."""
        await self.wait_for(lambda: len(self.packets(session_id)) >= count, timeout)

    # -- views -----------------------------------------------------------------

    def events(self, session_id: str | None = None, kind: EventType | None = None) -> list[Event]:
        return [
            a.message for a in self.arrivals
            if isinstance(a.message, Event)
            and (session_id is None or a.message.session_id == session_id)
            and (kind is None or a.message.type == kind)
        ]

    def first_audio_arrival(self, session_id: str) -> Arrival:
        """The arrival of *session_id*'s first audio packet."""
        return self.packet_arrivals(session_id)[0]

    def event_arrival(self, session_id: str, kind: EventType, count: int = 1) -> Arrival:
        """The arrival of the *count*-th event of *kind* for *session_id*."""
        return [a for a in self.event_arrivals(session_id)
                if a.message.type == kind][count - 1]  # type: ignore[union-attr]

    def event_arrivals(self, session_id: str) -> list[Arrival]:
        return [a for a in self.arrivals
                if isinstance(a.message, Event) and a.message.session_id == session_id]

    def packet_arrivals(self, session_id: str) -> list[Arrival]:
        return [a for a in self.arrivals
                if isinstance(a.message, AudioPacket) and a.message.session_id == session_id]

    def packets(self, session_id: str) -> list[bytes]:
        return [a.message.payload for a in self.packet_arrivals(session_id)]  # type: ignore[union-attr]

    def pages(self, session_id: str) -> list[tuple[float, OggPage]]:
        """Every Ogg page of *session_id* with its arrival time."""
        out: list[tuple[float, OggPage]] = []
        reader = OggPageReader()
        for arrival in self.packet_arrivals(session_id):
            reader.receive_data(arrival.message.payload)  # type: ignore[union-attr]
            while (page := reader.next_page()) is not NEED_DATA:
                assert isinstance(page, OggPage)
                out.append((arrival.at, page))
        assert reader.crc_failures == 0 and reader.skipped_bytes == 0
        return out

    def audio_page_times(self, session_id: str) -> list[float]:
        """Arrival times of the audio pages (header pages left out)."""
        return [t for t, page in self.pages(session_id) if page.granule_position > 0]

    def opus_packets(self, session_id: str) -> list[bytes]:
        reader = OggOpusReader()
        for payload in self.packets(session_id):
            reader.receive_data(payload)
        out = []
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, OpusPacket):
                out.append(event.data)
        return out
