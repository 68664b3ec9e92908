"""A stand-in for the Go engine, for testing our gateway against it.

There is no Go engine on this machine; this one follows ``shared/PROTOCOL.md``
where the Go engine differs from ours, and is driven by real Ogg Opus pages of
the file it is asked to play (decoded and encoded with PyAV's libopus):

* HTTP: the Go endpoints with Go's bodies (compact JSON, ``application/json;
  charset=utf-8``, the Go CORS headers), ``status`` says ``streaming`` while
  paused, ``/health`` has no ``features``, no ``X-Play-Id``; every other path
  (our ``/sessions``, ``/volume``, ``/seek``...) is the plain-text
  ``404 page not found``;
* socket: everything goes to the most recently connected client only; payloads
  are the session's byte stream cut into chunks of at most 4096 bytes (usually one
  page, sometimes a page split in two, several pages in a burst); each play is a
  new Ogg logical stream (new serial, header pages first); events carry no extra
  keys (no play ids, no reasons);
* pacing: page *n* of a play is due at its first page's time plus *n* times 20 ms,
  whatever happened since, so a resume after a pause sends everything that came
  due meanwhile at once (FFmpeg's ``-re`` catching up);
* ordering: a stop's ``finished`` after the stop's reply; a replaced stream's
  ``finished`` after the new stream's ``ready`` (as the Go engine does);
* ``finished`` at the end of a track, with the track's last page.

Formats: ``opus`` and ``web`` (Ogg Opus); others are refused with an ``error``
event (the gateway only asks for Ogg Opus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import uvicorn

from protocol import (
    FRAME_DURATION,
    Event,
    EventType,
    OggOpusWriter,
    encode_event_line,
    encode_packet,
)

from .waiting import wait_until

__all__ = ["GO_CHUNK", "GoEngineStandIn", "encode_opus_packets"]

#: The Go engine reads FFmpeg's output 4096 bytes at a time: no payload is larger.
GO_CHUNK = 4096
_JSON = b"application/json; charset=utf-8"
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type"),
]


def encode_opus_packets(path: str) -> list[bytes]:
    """Decode *path* and encode it as 20 ms 48 kHz stereo Opus packets (libopus)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48_000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 128_000
    codec.options = {"application": "audio", "frame_duration": "20"}
    codec.open()
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
    packets: list[bytes] = []
    pts = 0
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.pts = None
            for chunk in resampler.resample(frame):
                chunk.pts = pts
                pts += chunk.samples
                packets.extend(bytes(p) for p in codec.encode(chunk))
    for chunk in resampler.resample(None):
        chunk.pts = pts
        pts += chunk.samples
        packets.extend(bytes(p) for p in codec.encode(chunk))
    packets.extend(bytes(p) for p in codec.encode(None))
    return packets


@dataclass
class _Session:
    id: str
    url: str
    writer: OggOpusWriter
    state: str = "extracting"
    packets: list[bytes] = field(default_factory=list)
    paused: bool = False
    ready_sent: bool = False
    #: Loop time page 0 is due; page n is due n x 20 ms later (pauses or not).
    start: float | None = None
    next_page: int = 0
    bytes_sent: int = 0
    #: The replaced stream's finished, written after this stream's ready.
    late_finished: bytes = b""
    task: asyncio.Task[None] | None = None


class GoEngineStandIn:
    """The Go engine's HTTP API and socket, in this process, on loopback and a
    Unix socket in *directory*.

    Args:
        directory: where the socket file goes.
        first_audio_delay: seconds between ``ready`` and the first audio (the Go
            engine's FFmpeg start-up is 0.6-1.7 s; kept short for tests).
        seed: for the chunking of the byte stream.
    """

    def __init__(self, directory: Path, *, first_audio_delay: float = 0.2,
                 seed: int = 7) -> None:
        self.socket_path = directory / "go.sock"
        self.first_audio_delay = first_audio_delay
        self.port = 0
        self.sessions: dict[str, _Session] = {}
        self.clients: list[asyncio.StreamWriter] = []
        #: (loop time, session id, payload size) of every audio packet written.
        self.writes: list[tuple[float, str, int]] = []
        self._rng = random.Random(seed)
        self._cache: dict[str, list[bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unix: asyncio.AbstractServer | None = None
        self._http: uvicorn.Server | None = None
        self._started = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> GoEngineStandIn:
        self._unix = await asyncio.start_unix_server(self._client, str(self.socket_path))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = _QuietServer(uvicorn.Config(self._asgi, log_config=None, access_log=False,
                                             lifespan="off", server_header=False,
                                             interface="asgi3"))
        self._http = server
        self._spawn(server.serve(sockets=[sock]))
        self._spawn(self._clock())
        await wait_until(lambda: server.started, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.should_exit = True
        for session in self.sessions.values():
            if session.task is not None:
                session.task.cancel()
        if self._unix is not None:
            self._unix.close()
        for client in self.clients:
            client.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            if task.get_name() != "go-http":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def another_client(self) -> AsyncIterator[None]:
        """Connect a second socket client (as a probe or another gateway would),
        reading and discarding what it gets: the Go engine now writes to it only."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        drain = asyncio.get_running_loop().create_task(_discard(reader))
        try:
            yield
        finally:
            drain.cancel()
            writer.transport.abort()
            await asyncio.gather(drain, return_exceptions=True)

    # -- socket ------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        # The Go engine never reads its socket; this only notices the close.
        with contextlib.suppress(ConnectionError):
            await reader.read()
        if writer in self.clients:
            self.clients.remove(writer)

    def _write(self, data: bytes) -> None:
        """To the most recently connected client only (the Go engine's rule)."""
        if not self.clients:
            return
        client = self.clients[-1]
        if client.transport.is_closing():
            return
        # Test traffic is small; a client that stops reading loses bytes past 1 MB
        # rather than growing this process.
        if client.transport.get_write_buffer_size() > 1 << 20:
            return
        client.write(data)

    def _event(self, kind: EventType, session_id: str, message: str = "") -> bytes:
        return encode_event_line(Event(kind, session_id, message))

    # -- the clock ---------------------------------------------------------------

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += FRAME_DURATION
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            now = loop.time()
            for session in list(self.sessions.values()):
                if session.state == "streaming" and not session.paused:
                    self._send_due(session, now)

    def _send_due(self, session: _Session, now: float) -> None:
        assert session.start is not None
        due = min(len(session.packets), int((now - session.start) / FRAME_DURATION) + 1)
        if due <= session.next_page:
            return
        stream = bytearray()
        if session.next_page == 0:
            stream += session.writer.header_pages
        for index in range(session.next_page, due):
            last = index == len(session.packets) - 1
            stream += session.writer.audio_page(session.packets[index], eos=last)
        session.next_page = due
        for chunk in self._chunks(bytes(stream)):
            self._write(encode_packet(session.id, chunk))
            session.bytes_sent += len(chunk)
            self.writes.append((now, session.id, len(chunk)))
        if due == len(session.packets):
            session.state = "stopped"
            self._write(self._event(EventType.FINISHED, session.id))

    def _chunks(self, stream: bytes) -> list[bytes]:
        """Cut as the Go engine's 4096-byte reads do: a page is usually one read,
        sometimes two; a backlog fills whole 4096-byte reads."""
        if len(stream) < GO_CHUNK and self._rng.random() < 0.15 and len(stream) > 2:
            cut = self._rng.randrange(1, len(stream))
            return [stream[:cut], stream[cut:]]
        return [stream[i:i + GO_CHUNK] for i in range(0, len(stream), GO_CHUNK)]

    # -- plays -------------------------------------------------------------------

    async def _produce(self, session: _Session, output: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            if output not in ("opus", "web"):
                raise ValueError(f"format {output or 'pcm'} is not served by this stand-in")
            packets = self._cache.get(session.url)
            if packets is None:
                packets = await asyncio.to_thread(encode_opus_packets, session.url)
                self._cache[session.url] = packets
        except (OSError, ValueError, av.FFmpegError) as exc:
            if self.sessions.get(session.id) is session:
                session.state = "error"
                self._write(self._event(EventType.ERROR, session.id, str(exc)))
            return
        if self.sessions.get(session.id) is not session or session.state != "extracting":
            return
        session.packets = packets
        session.state = "streaming"
        session.ready_sent = True
        self._write(self._event(EventType.READY, session.id) + session.late_finished)
        session.late_finished = b""
        session.start = loop.time() + self.first_audio_delay

    def _end(self, session: _Session) -> bytes:
        """End *session*; its finished line if it had sent ready and not ended."""
        if session.task is not None:
            session.task.cancel()
        ended = session.state in ("stopped", "error")
        session.state = "stopped"
        return b"" if ended or not session.ready_sent else self._event(
            EventType.FINISHED, session.id)

    # -- HTTP --------------------------------------------------------------------

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload, content_type, after = self._route(scope["method"], scope["path"],
                                                           body)
        headers = [*_CORS]
        if content_type:
            headers.append((b"content-type", content_type))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if after:
            self._write(after)

    def _route(self, method: str, path: str, body: bytes
               ) -> tuple[int, bytes, bytes, bytes]:
        """(status, body, content type, bytes to write to the socket after the reply)."""
        if method == "OPTIONS":
            return 204, b"", b"", b""
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["health"]:
            playing = sum(1 for s in self.sessions.values() if s.state == "streaming")
            live = sum(1 for s in self.sessions.values()
                       if s.state in ("extracting", "streaming"))
            return self._json(200, {
                "status": "ok", "uptime_seconds": int(time.monotonic() - self._started),
                "ram_mb": "12.34", "sessions_active": live, "sessions_playing": playing})
        if len(parts) == 3 and parts[0] == "session":
            sid, op = parts[1], parts[2]
            match (method, op):
                case ("POST", "play"):
                    return self._play(sid, body)
                case ("POST", "stop"):
                    session = self.sessions.pop(sid, None)
                    after = self._end(session) if session is not None else b""
                    status, payload, kind, _ = self._json(
                        200, {"status": "stopped", "session_id": sid})
                    return status, payload, kind, after
                case ("POST", "pause" | "resume"):
                    session = self.sessions.get(sid)
                    if session is None:
                        return self._json(404, {"status": "error", "session_id": sid,
                                                "message": "session not found"})
                    if session.state in ("extracting", "streaming"):
                        session.paused = op == "pause"
                    return self._json(200, {"status": "paused" if op == "pause" else "playing",
                                            "session_id": sid})
                case ("GET", "status"):
                    session = self.sessions.get(sid)
                    if session is None:
                        return self._json(404, {"session_id": sid, "status": "not_found",
                                                "bytes_sent": 0})
                    return self._json(200, {"session_id": sid, "status": session.state,
                                            "bytes_sent": session.bytes_sent,
                                            "url": session.url})
        return 404, b"404 page not found", b"text/plain; charset=utf-8", b""

    def _play(self, sid: str, body: bytes) -> tuple[int, bytes, bytes, bytes]:
        try:
            request = json.loads(body)
            url = request["url"]
            if not isinstance(url, str) or not url:
                raise ValueError("url is required")
        except (ValueError, KeyError, TypeError) as exc:
            return self._json(400, {"status": "error", "session_id": sid,
                                    "message": f"invalid request: {exc}"})
        session = _Session(sid, url, OggOpusWriter(self._rng.getrandbits(32)))
        old = self.sessions.get(sid)
        if old is not None:
            session.late_finished = self._end(old)
        self.sessions[sid] = session
        session.task = self._spawn(self._produce(session, str(request.get("format") or "")))
        return self._json(200, {"status": "playing", "session_id": sid})

    @staticmethod
    def _json(status: int, value: dict[str, Any]) -> tuple[int, bytes, bytes, bytes]:
        return status, json.dumps(value, separators=(",", ":")).encode(), _JSON, b""

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        name = "go-http" if getattr(coroutine, "__name__", "") == "serve" else "go-engine"
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (the test process owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass
