"""A socket consumer that behaves like the Node.js front (PROTOCOL.md section 4).

What it copies from the front, because each of these broke something when the
engine's timing differed from the Go engine's:

* its own event loop (a thread of its own here, like a separate process), kept
  busy by an artificial load (``LoopLoad``) as a loaded Node process is; its HTTP
  client is a lean one (one connection per request, a few hundred microseconds of
  work each, as Node's is), so the loop's load is the one configured and not the
  cost of a heavy client library;
* it never writes to the socket (no hello): the engine must treat it as Go-style;
* each socket read (64 KiB at most, as Node reads) is parsed at once, and every
  complete message in it is handled synchronously before anything else runs;
* the play flow: subscribe to the session's events, ``POST /play``, await the
  reply, await ``ready``, and only then create the session's stream. Audio that
  arrives for a session without a stream is dropped;
* each stream is demuxed strictly (``StrictOggDemuxer``): a stream whose first
  packet is not ``OpusHead`` yields nothing, so dropped header pages make a whole
  track silent, as with prism-media behind ``@discordjs/voice``;
* the crash conditions are recorded as violations: an ``error`` handled before
  the play's reply was handled (the front's ``ready`` promise is rejected with no
  handler: the Node process exits), and a ``finished`` handled before the stop's
  reply (the front starts the user's next queued track).

Use it with ``async with NodeConsumer(...) as node:`` from any event loop; its
methods run the flows on the consumer's own loop and return when they are done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from protocol import (
    NEED_DATA,
    AudioPacket,
    Discarded,
    Event,
    EventType,
    OggPage,
    OggPageReader,
    StreamDecoder,
)

__all__ = [
    "LoopLoad",
    "NodeConsumer",
    "PlayFailed",
    "SessionRecord",
    "StrictOggDemuxer",
    "Violation",
]

T = TypeVar("T")

#: Node's net.Socket reads at most 64 KiB at a time.
NODE_READ_SIZE = 64 * 1024
#: Seconds an HTTP call may take before the flow gives up.
HTTP_TIMEOUT = 60.0


class LoopLoad(NamedTuple):
    """Artificial load on the consumer's loop: busy slices of *busy_ms* (each
    drawn from 0.5x to 1.5x that) with *idle_ms* of free loop between them. The
    slices hold the GIL, as JavaScript work holds Node's only thread."""

    busy_ms: float = 0.0
    idle_ms: float = 10.0
    seed: int = 0


class Violation(NamedTuple):
    """Something that would break the real front."""

    kind: str
    session_id: str
    detail: str


class PlayFailed(Exception):
    """The play ended before its stream was created (``error``, or a non-200 reply)."""


class StrictOggDemuxer:
    """Demuxes one session's Ogg Opus payloads the way a strict demuxer does.

    The first packet must be ``OpusHead`` (it locks the logical stream's serial);
    otherwise the stream is dead and yields nothing, ever. ``OpusTags`` packets
    are skipped; audio packets of the locked serial are kept in ``packets``.
    Pages are cut and CRC-checked by ``protocol.OggPageReader`` (not the lenient
    ``OggOpusReader``, which joins streams in progress).
    """

    def __init__(self) -> None:
        self._reader = OggPageReader()
        self._serial: int | None = None
        #: The first packet was not OpusHead: nothing will ever come out.
        self.dead = False
        #: Raw Opus packets, in order.
        self.packets: list[bytes] = []

    def feed(self, payload: bytes) -> None:
        """Take one audio packet's payload."""
        self._reader.receive_data(payload)
        while (page := self._reader.next_page()) is not NEED_DATA:
            assert isinstance(page, OggPage)
            for packet in page.packets():
                self._packet(page.serial, packet)

    def _packet(self, serial: int, packet: bytes) -> None:
        if self.dead:
            return
        if self._serial is None:
            if packet.startswith(b"OpusHead"):
                self._serial = serial
            else:
                self.dead = True
            return
        if packet.startswith(b"OpusTags") or serial != self._serial:
            return
        self.packets.append(packet)

    @property
    def audible(self) -> bool:
        """The stream started with its header and carried audio."""
        return not self.dead and bool(self.packets)


@dataclass(eq=False)
class SessionRecord:
    """What the consumer saw of one play (times are ``time.monotonic()``)."""

    session_id: str
    subscribed_at: float
    reply_status: int | None = None
    reply_at: float | None = None
    ready_at: float | None = None
    stream_at: float | None = None
    first_packet_at: float | None = None
    first_audio_at: float | None = None
    error: str | None = None
    error_at: float | None = None
    finished_at: float | None = None
    finished_reason: str | None = None
    #: A finished that came before this play's ready: the replaced stream's end.
    replaced_finished_at: float | None = None
    stop_requested_at: float | None = None
    stop_reply_at: float | None = None
    #: Audio packets that arrived before the stream existed (dropped).
    dropped_packets: int = 0
    stream: StrictOggDemuxer | None = None
    ready: asyncio.Future[None] | None = field(default=None, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def audible(self) -> bool:
        """The track reached its stream with its header pages and carried audio."""
        return self.stream is not None and self.stream.audible


class _NodeSocket(asyncio.BufferedProtocol):
    """Reads at most ``read_size`` bytes at a time and hands each read to the
    consumer whole."""

    def __init__(self, consumer: NodeConsumer, read_size: int) -> None:
        self._consumer = consumer
        self._view = memoryview(bytearray(read_size))
        self.closed = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._consumer._on_read(bytes(self._view[:nbytes]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class NodeConsumer:
    """The Node-like consumer (module docstring).

    Args:
        socket_path: the engine's Unix socket.
        api_url: the engine's HTTP API.
        load: artificial load on the consumer's own loop.
        read_size: bytes per socket read.
    """

    def __init__(self, socket_path: Path, api_url: str, *, load: LoopLoad | None = None,
                 read_size: int = NODE_READ_SIZE) -> None:
        self.socket_path = socket_path
        self.api_url = api_url
        self.load = load or LoopLoad()
        self.read_size = read_size
        #: The latest play of each session id.
        self.records: dict[str, SessionRecord] = {}
        self.violations: list[Violation] = []
        self.reads = 0
        self.discarded = 0
        #: Events and audio for ids nobody subscribed to.
        self.strays = 0
        self._decoder = StreamDecoder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        api = urllib.parse.urlsplit(api_url)
        self._host = api.hostname or "127.0.0.1"
        self._port = api.port or 80

    # -- lifecycle (called from the test's loop) ---------------------------------

    async def __aenter__(self) -> NodeConsumer:
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,),
                                        name="node-consumer", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect and end the consumer's thread. Idempotent."""
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 15)
            self._thread = None

    # -- flows (called from the test's loop, run on the consumer's loop) -----------

    async def play(self, session_id: str, url: str, fmt: str = "opus") -> SessionRecord:
        """The front's play flow for one session; returns once its stream exists.

        Raises:
            PlayFailed: the engine refused the play or the session failed first.
        """
        return await self._call(self._play(session_id, url, fmt))

    async def play_many(self, plays: Sequence[tuple[str, str]],
                        fmt: str = "opus") -> list[SessionRecord | PlayFailed]:
        """Start every ``(session_id, url)`` play at once; each result is its
        record, or the ``PlayFailed`` that ended its flow."""
        return await self._call(self._play_many(plays, fmt))

    async def stop_many(self, session_ids: Sequence[str]) -> None:
        """``POST /stop`` for every id at once, as the front's stop handler does."""
        await self._call(self._stop_many(session_ids))

    async def wait_ended(self, session_ids: Sequence[str], within: float) -> None:
        """Wait until every id got its ``finished`` or ``error``.

        Raises:
            TimeoutError: if some did not within *within* seconds.
        """
        await self._call(self._wait_ended(session_ids, within))

    # -- the consumer's own thread and loop --------------------------------------

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._main(started))

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        try:
            transport, socket = await loop.create_unix_connection(
                lambda: _NodeSocket(self, self.read_size), str(self.socket_path)
            )
        except OSError as exc:
            started.set_exception(exc)
            return
        load = loop.create_task(self._apply_load()) if self.load.busy_ms > 0 else None
        started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            if load is not None:
                load.cancel()
                await asyncio.gather(load, return_exceptions=True)
            transport.close()
            await asyncio.wait_for(socket.closed, 5)

    async def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "use NodeConsumer with async with"
        # Cancelling the caller cancels the flow on the consumer's loop too.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def _apply_load(self) -> None:
        rng = random.Random(self.load.seed)
        while True:
            end = time.perf_counter() + rng.uniform(0.5, 1.5) * self.load.busy_ms / 1000
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(self.load.idle_ms / 1000)

    async def _post(self, path: str, document: dict[str, Any] | None = None
                    ) -> tuple[int, bytes]:
        """One HTTP/1.1 POST on its own connection; returns (status, body)."""
        body = json.dumps(document).encode() if document is not None else b""
        async with asyncio.timeout(HTTP_TIMEOUT):
            reader, writer = await asyncio.open_connection(self._host, self._port)
            try:
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode() + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                length = {k.strip().lower(): v.strip() for k, v in headers.items()}.get(
                    "content-length")
                payload = (await reader.readexactly(int(length)) if length is not None
                           else await reader.read())
                return status, payload
            finally:
                writer.close()

    async def _play(self, session_id: str, url: str, fmt: str) -> SessionRecord:
        loop = asyncio.get_running_loop()
        record = SessionRecord(session_id, time.monotonic(), ready=loop.create_future())
        self.records[session_id] = record  # subscribe before asking
        status, body = await self._post(f"/session/{session_id}/play",
                                        {"url": url, "format": fmt})
        record.reply_at = time.monotonic()
        record.reply_status = status
        if status != 200:
            raise PlayFailed(f"play refused: {status} {body!r}")
        assert record.ready is not None
        await record.ready  # raises PlayFailed when an error (or finished) came instead
        record.stream = StrictOggDemuxer()
        record.stream_at = time.monotonic()
        return record

    async def _play_many(self, plays: Sequence[tuple[str, str]],
                         fmt: str) -> list[SessionRecord | PlayFailed]:
        results = await asyncio.gather(*(self._play(sid, url, fmt) for sid, url in plays),
                                       return_exceptions=True)
        out: list[SessionRecord | PlayFailed] = []
        for result in results:
            if isinstance(result, SessionRecord | PlayFailed):
                out.append(result)
            else:
                raise result
        return out

    async def _stop_many(self, session_ids: Sequence[str]) -> None:
        async def stop(session_id: str) -> None:
            record = self.records[session_id]
            record.stop_requested_at = time.monotonic()
            status, body = await self._post(f"/session/{session_id}/stop")
            record.stop_reply_at = time.monotonic()
            assert status == 200, body

        await asyncio.gather(*(stop(sid) for sid in session_ids))

    async def _wait_ended(self, session_ids: Sequence[str], within: float) -> None:
        async with asyncio.timeout(within):
            for session_id in session_ids:
                await self.records[session_id].ended.wait()

    # -- the socket parser (synchronous, like the front's) -------------------------

    def _on_read(self, data: bytes) -> None:
        now = time.monotonic()
        self.reads += 1
        self._decoder.receive_data(data)
        for message in self._decoder.events():
            match message:
                case AudioPacket():
                    self._on_audio(message, now)
                case Event():
                    self._on_event(message, now)
                case Discarded():
                    self.discarded += 1

    def _on_audio(self, packet: AudioPacket, now: float) -> None:
        record = self.records.get(packet.session_id)
        if record is None:
            self.strays += 1
            return
        if record.first_packet_at is None:
            record.first_packet_at = now
        if record.stream is None:
            record.dropped_packets += 1
            return
        if record.first_audio_at is None:
            record.first_audio_at = now
        record.stream.feed(packet.payload)

    def _on_event(self, event: Event, now: float) -> None:
        record = self.records.get(event.session_id)
        if record is None:
            self.strays += 1
            return
        match event.type:
            case EventType.READY:
                record.ready_at = now
                self._settle(record, None)
            case EventType.ERROR:
                record.error = event.message
                record.error_at = now
                if record.reply_at is None:
                    self.violations.append(Violation(
                        "error-before-play-reply", event.session_id,
                        f"error {event.message!r} handled before the play's reply",
                    ))
                self._settle(record, PlayFailed(event.message))
                record.ended.set()
            case EventType.FINISHED:
                if record.ready is not None and not record.ready.done():
                    # Before this play's ready: the end of the stream it replaces.
                    record.replaced_finished_at = now
                    return
                record.finished_at = now
                reason = event.extra.get("reason")
                record.finished_reason = reason if isinstance(reason, str) else None
                stop_pending = (record.stop_requested_at is not None
                                and record.stop_reply_at is None)
                if stop_pending and record.finished_reason in (None, "stopped"):
                    # (The front cannot tell a stop's finished from a track that
                    # happened to end during the stop; only the former is the
                    # engine's doing, so an "end" racing a stop is not counted.)
                    self.violations.append(Violation(
                        "finished-before-stop-reply", event.session_id,
                        "finished handled before the stop's reply",
                    ))
                record.ended.set()

    @staticmethod
    def _settle(record: SessionRecord, failure: PlayFailed | None) -> None:
        future = record.ready
        if future is None or future.done():
            return
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)
