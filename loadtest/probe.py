"""The measuring consumer of a load run: reads an engine's socket in its own process.

It does nothing but read, decode and keep per-session timing, so its numbers
reflect the engine's pacing. A Go engine sends to its most recently connected
client only, so a load run uses exactly one probe whatever the engine.

Per session it records the arrival of the first audio packet and the gap between
consecutive audio packets (arrival = the time of the ``recv`` that completed it;
``time.monotonic``, which is one clock for every process of the machine).

By default it says in a hello that it takes any order of replies, events and audio,
as our gateway does, so our engine's figures are those our gateway sees; without the
hello it is a Go-style consumer like the Node front, whose first audio waits the
engine's margins (bench/first_audio_margin.py).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import selectors
import socket
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    AudioPacket,
    ConsumerOrder,
    Event,
    Hello,
    RemoteProtocolError,
    StreamDecoder,
)

__all__ = ["ProbeHandle", "SessionTiming", "start_probe"]

#: Read size: large enough to take a whole 20 ms tick of 1000 sessions at once.
_READ_SIZE = 1 << 20


@dataclass
class SessionTiming:
    """What the probe saw of one session."""

    first_audio_at: float | None = None
    packets: int = 0
    payload_bytes: int = 0
    last_at: float | None = None
    gaps: array[float] = field(default_factory=lambda: array("d"))
    events: list[tuple[float, str, str]] = field(default_factory=list)


def _probe_main(path: str, conn: multiprocessing.connection.Connection,
                hello: bool = True) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(path)
    if hello:
        sock.sendall(bytes(Hello("audiogate-loadtest-probe", ConsumerOrder.ANY)))
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(conn, selectors.EVENT_READ, "control")
    decoder = StreamDecoder()
    timings: dict[str, SessionTiming] = {}
    window_started = time.monotonic()
    connected = True
    conn.send(("connected", window_started))
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "control":
                command = conn.recv()
                if command == "stop":
                    sock.close()
                    return
                if command == "window":
                    window_started = time.monotonic()
                    for timing in timings.values():
                        timing.gaps = array("d")
                    conn.send(("window", window_started))
                elif command == "report":
                    conn.send(("report", _report(timings, window_started, connected, decoder)))
                continue
            try:
                data = sock.recv(_READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                connected = False
                selector.unregister(sock)
                continue
            now = time.monotonic()
            try:
                decoder.receive_data(data)
                messages = decoder.events()
            except RemoteProtocolError:
                connected = False
                selector.unregister(sock)
                continue
            for message in messages:
                if isinstance(message, AudioPacket):
                    found = timings.get(message.session_id)
                    if found is None:
                        found = timings[message.session_id] = SessionTiming()
                    timing = found
                    if timing.first_audio_at is None:
                        timing.first_audio_at = now
                    elif timing.last_at is not None and timing.last_at >= window_started:
                        timing.gaps.append(now - timing.last_at)
                    timing.last_at = now
                    timing.packets += 1
                    timing.payload_bytes += len(message.payload)
                elif isinstance(message, Event):
                    timing = timings.setdefault(message.session_id, SessionTiming())
                    timing.events.append((now, message.type.value, message.message))


def _report(timings: dict[str, SessionTiming], window_started: float, connected: bool,
            decoder: StreamDecoder) -> dict[str, Any]:
    return {
        "window_started": window_started,
        "connected": connected,
        "sessions": {
            sid: {
                "first_audio_at": t.first_audio_at,
                "packets": t.packets,
                "payload_bytes": t.payload_bytes,
                "gaps": t.gaps.tobytes(),
                "events": list(t.events),
            }
            for sid, t in timings.items()
        },
    }


class ProbeHandle:
    """Controls a running probe process."""

    def __init__(self, process: multiprocessing.process.BaseProcess,
                 conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self._conn = conn

    def _ask(self, command: str, expect: str, timeout: float = 30.0) -> Any:
        self._conn.send(command)
        if not self._conn.poll(timeout):
            raise TimeoutError(f"probe did not answer {command!r}")
        kind, value = self._conn.recv()
        if kind != expect:
            raise RuntimeError(f"probe answered {kind!r} to {command!r}")
        return value

    def start_window(self) -> float:
        """Forget gaps seen so far; returns when the new window started."""
        return float(self._ask("window", "window"))

    def report(self) -> dict[str, Any]:
        """Everything measured: per session first audio, packets, window gaps
        (as an ``array('d')`` byte string), events."""
        report: dict[str, Any] = self._ask("report", "report")
        for session in report["sessions"].values():
            gaps = array("d")
            gaps.frombytes(session["gaps"])
            session["gaps"] = gaps
        return report

    def stop(self) -> None:
        """End the probe process."""
        try:
            self._conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def start_probe(socket_path: str | os.PathLike[str], timeout: float = 10.0, *,
                hello: bool = True) -> ProbeHandle:
    """Start a probe process connected to *socket_path* (a Go-style one without
    *hello*).

    Raises:
        TimeoutError: if it could not connect within *timeout*.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_probe_main, args=(str(socket_path), child, hello),
                              daemon=True)
    process.start()
    if not parent.poll(timeout):
        process.kill()
        raise TimeoutError(f"probe could not connect to {socket_path}")
    parent.recv()
    return ProbeHandle(process, parent)
