"""Many Discord voice servers in one process, for load runs of the Lavalink face
(``bench/lavalink_capacity.py``): what the engine's voice connections talk to when
hundreds of players play at once.

One WebSocket port takes every connection and plays Discord's part of the voice
gateway v8 for each (HELLO, READY with its own SSRC, SESSION DESCRIPTION with a fresh
key, heartbeat ACKs; no DAVE: the load driver sends no ``channelId``); one UDP port
answers IP discovery and counts the RTP packets of every SSRC. It does not decrypt or
decode (the tests' stand-in, tests/support/discord_voice.py, proves the audio; here
only the timing matters): for each player it counts packets and the gaps between
consecutive ones longer than ``LATE_GAP`` (a packet later than Discord's jitter
buffer would wait for).

Arrival times are the kernel's (``SO_TIMESTAMPNS``), read by a thread that does
nothing else: a farm that is itself descheduled on a busy machine does not make the
engine's packets look late. It runs in a child process of its own (``VoiceFarm``), so
its CPU is not the engine's and not the driver's; the parent asks it for a fresh window
and for the counts over a pipe.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["LATE_GAP", "PlayerCounts", "VoiceFarm"]

#: A gap between two packets of one player longer than this is a late packet (the
#: same bound as the socket benchmarks' late pages).
LATE_GAP: Final = 0.060
_MODE: Final = "aead_aes256_gcm_rtpsize"


@dataclass(slots=True)
class PlayerCounts:
    """One player's packets in the window: count, late ones, longest gap (s)."""

    guild_id: str
    packets: int = 0
    late: int = 0
    longest_gap: float = 0.0
    last: float | None = field(default=None, repr=False)


#: ``struct timespec`` in the ancillary data of ``SO_TIMESTAMPNS`` (Linux's 35; the
#: socket module does not name it).
_TIMESPEC = struct.Struct("@qq")
_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)


class _Farm:
    def __init__(self) -> None:
        self.by_ssrc: dict[int, PlayerCounts] = {}
        self.connections = 0
        #: The UDP thread and the event loop both touch the counts.
        self.lock = threading.Lock()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.udp.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.udp.settimeout(0.2)  # the thread looks at ``stopping`` this often
        self.udp.bind(("127.0.0.1", 0))
        self.stopping = threading.Event()
        self.udp_port = self.udp.getsockname()[1]

    # -- WebSocket side (one coroutine per connection) -------------------------------------

    async def handle(self, ws: Any) -> None:
        self.connections += 1
        seq = 0

        async def send(op: int, data: Any) -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"op": op, "d": data, "seq": seq}))

        await ws.send(json.dumps({"op": 8, "d": {"heartbeat_interval": 5000}}))
        ssrc = 0
        try:
            async for message in ws:
                if not isinstance(message, str):
                    continue
                payload = json.loads(message)
                op, data = payload.get("op"), payload.get("d") or {}
                if op == 0:  # identify
                    ssrc = secrets.randbits(31) + 1
                    with self.lock:
                        self.by_ssrc[ssrc] = PlayerCounts(str(data.get("server_id", "")))
                    await send(2, {"ssrc": ssrc, "ip": "127.0.0.1", "port": self.udp_port,
                                   "modes": [_MODE], "heartbeat_interval": 1})
                elif op == 1:  # select protocol
                    await send(4, {"mode": _MODE, "secret_key": list(os.urandom(32)),
                                   "dave_protocol_version": 0})
                elif op == 3:  # heartbeat
                    await ws.send(json.dumps({"op": 6, "d": {"t": data.get("t")}}))
                elif op == 7:  # resume
                    await send(9, None)
        except Exception:  # a closed connection ends its coroutine, nothing more
            pass
        finally:
            with self.lock:
                self.by_ssrc.pop(ssrc, None)

    # -- UDP side (a thread of its own) ---------------------------------------------------

    def receive(self) -> None:
        """Count packets until the socket is closed (kernel arrival times)."""
        while not self.stopping.is_set():
            try:
                data, ancillary, _, addr = self.udp.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            arrival = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    arrival = seconds + nanoseconds / 1e9
            self.datagram(data, addr, arrival)

    def datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":  # IP discovery
            answer = (struct.pack(">HHI", 2, 70, struct.unpack_from(">I", data, 4)[0])
                      + addr[0].encode().ljust(64, b"\x00") + struct.pack(">H", addr[1]))
            self.udp.sendto(answer, addr)
            return
        if len(data) < 12:
            return
        with self.lock:
            counts = self.by_ssrc.get(struct.unpack_from(">I", data, 8)[0])
            if counts is not None:
                self._count(counts, now)

    @staticmethod
    def _count(counts: PlayerCounts, now: float) -> None:
        if counts.last is not None:
            gap = now - counts.last
            counts.longest_gap = max(counts.longest_gap, gap)
            if gap > LATE_GAP:
                counts.late += 1
        counts.last = now
        counts.packets += 1

    def window(self) -> None:
        with self.lock:
            for counts in self.by_ssrc.values():
                counts.packets = counts.late = 0
                counts.longest_gap = 0.0

    def report(self) -> dict[str, tuple[int, int, float]]:
        with self.lock:
            return {c.guild_id: (c.packets, c.late, c.longest_gap)
                    for c in self.by_ssrc.values()}


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    from websockets.asyncio.server import serve

    farm = _Farm()
    loop = asyncio.get_running_loop()
    receiver = threading.Thread(target=farm.receive, name="voice-farm-udp", daemon=True)
    receiver.start()
    server = await serve(farm.handle, "127.0.0.1", 0, ping_interval=None, max_size=1 << 20)
    ws_port = server.sockets[0].getsockname()[1] if server.sockets else 0
    conn.send(("ready", ws_port))
    reader = asyncio.Event()
    loop.add_reader(conn.fileno(), reader.set)
    try:
        while True:
            await reader.wait()
            reader.clear()
            while conn.poll():
                command = conn.recv()
                match command:
                    case "window":
                        farm.window()
                        conn.send("ok")
                    case "report":
                        conn.send((farm.report(), farm.connections, time.process_time()))
                    case "stop":
                        return
    finally:
        loop.remove_reader(conn.fileno())
        server.close()
        farm.stopping.set()
        receiver.join(2)
        farm.udp.close()


def _main(conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_serve(conn))


class VoiceFarm:
    """The farm in a child process. Use as a context manager; ``endpoint`` is the
    ``ws://`` endpoint every player's voice object names."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_main, args=(child,), daemon=True,
                                        name="voice-farm")
        self.endpoint = ""
        self.pid: int | None = None

    def __enter__(self) -> VoiceFarm:
        self._process.start()
        self.pid = self._process.pid
        if not self._conn.poll(30):
            raise RuntimeError("the voice farm did not start")
        _, port = self._conn.recv()
        self.endpoint = f"ws://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()

    def window(self) -> None:
        """Start a new counting window (every player's counts back to zero)."""
        self._conn.send("window")
        self._conn.recv()

    def report(self) -> tuple[dict[str, tuple[int, int, float]], int, float]:
        """Per guild id: (packets, late packets, longest gap s) in the window; the
        WebSocket connections made so far; the farm's CPU seconds."""
        self._conn.send("report")
        report: tuple[dict[str, tuple[int, int, float]], int, float] = self._conn.recv()
        return report
