"""Gateway router throughput and added latency (printed table, never asserted).

A separate process writes Ogg Opus packets for 1000 session ids into a Unix socket
the way an engine does; this process runs the gateway's real path on one thread:
``SocketClient`` -> ``StreamDecoder`` -> ``Router`` -> 1000 ``OpusSink``s (Ogg
reassembly + jitter buffer). Two scenarios:

* saturated: the writer sends as fast as the reader takes: packets per second;
* paced: 1000 packets per 20 ms tick (1000 sessions in real time): added latency
  of each frame from the socket read that completed it to its sink output; once
  with pull sinks (``OpusSink``, Discord's kind) and once with push sinks that
  pace their output (``PacedOpusSink``, the browser's kind).

Target (issue): >= 100 000 packets/s, p99 added latency <= 2 ms.
Run: .venv/bin/python bench/router_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

from gateway.router import Router
from gateway.sinks import OpusSink, PacedOpusSink
from gateway.socket_client import SocketClient
from loadtest.stats import format_table, summarize
from protocol import OggOpusWriter, encode_packet

SESSIONS = 1000


def _packets(seconds: float) -> list[bytes]:
    """Engine-like packets: per tick one 20 ms page (~330 bytes) per session."""
    writers = [OggOpusWriter(i + 1) for i in range(SESSIONS)]
    ids = [str(100000000000000000 + i) for i in range(SESSIONS)]
    frame = bytes([0xFC]) + os.urandom(320)
    out = [encode_packet(ids[i], w.header_pages) for i, w in enumerate(writers)]
    for _ in range(int(seconds * 50)):
        out += [encode_packet(ids[i], w.audio_page(frame)) for i, w in enumerate(writers)]
    return out


def _writer(path: str, seconds: float, paced: bool, ready: multiprocessing.synchronize.Event
            ) -> None:
    packets = _packets(seconds)
    header, body = packets[:SESSIONS], packets[SESSIONS:]
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    ready.set()
    conn, _ = server.accept()
    conn.sendall(b"".join(header))
    if not paced:
        blob = b"".join(body)
        conn.sendall(blob)
    else:
        start = time.monotonic()
        for tick in range(len(body) // SESSIONS):
            deadline = start + tick * 0.02
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.sendall(b"".join(body[tick * SESSIONS : (tick + 1) * SESSIONS]))
    time.sleep(1.0)
    conn.close()
    server.close()


class _TimedSink(OpusSink):
    def __init__(self, client: list[SocketClient], latencies: list[float]) -> None:
        super().__init__(capacity=50)
        self._client = client
        self._latencies = latencies

    def frame_ready(self, frame: bytes) -> None:
        self._latencies.append(time.perf_counter() - self._client[0].last_read_at)


class _TimedPacedSink(PacedOpusSink):
    def __init__(self, client: list[SocketClient], latencies: list[float]) -> None:
        super().__init__(capacity=50)
        self._client = client
        self._latencies = latencies

    def push(self, frame: bytes) -> None:
        self._latencies.append(time.perf_counter() - self._client[0].last_read_at)


async def _consume(path: Path, expected: int, measure: bool, sink_kind: str
                   ) -> tuple[float, list[float], int]:
    router = Router()
    latencies: list[float] = []
    holder: list[SocketClient] = []
    for i in range(SESSIONS):
        sink: OpusSink
        if not measure:
            sink = OpusSink(capacity=50)
        elif sink_kind == "paced":
            sink = _TimedPacedSink(holder, latencies)
        else:
            sink = _TimedSink(holder, latencies)
        router.register_sink(str(100000000000000000 + i), sink)
    client = SocketClient(path, router, backoff_initial=0.005)
    holder.append(client)
    task = asyncio.create_task(client.run())
    await client.connected.wait()
    while router.packets < SESSIONS:
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    first = router.packets
    while router.packets < expected:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    task.cancel()
    return (router.packets - first) / elapsed, latencies, router.unknown_packets


def run(seconds: float, paced: bool, sink_kind: str = "opus"
        ) -> tuple[float, list[float], int]:
    path = Path(tempfile.mkdtemp(prefix="ag-bench-")) / "r.sock"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    writer = context.Process(target=_writer, args=(str(path), seconds, paced, ready))
    writer.start()
    ready.wait(60)
    expected = SESSIONS * (1 + int(seconds * 50))
    try:
        return asyncio.run(_consume(path, expected, measure=paced, sink_kind=sink_kind))
    finally:
        writer.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per run")
    args = parser.parse_args()
    rate, _, unknown = run(args.seconds, paced=False)
    paced_rate, latencies, _ = run(args.seconds, paced=True)
    latency = summarize(latencies).scaled(1000)
    push_rate, push_latencies, _ = run(args.seconds, paced=True, sink_kind="paced")
    push = summarize(push_latencies).scaled(1000)
    print(f"{SESSIONS} session ids, {args.seconds:g} s of audio per run, gateway on one thread")
    print(format_table(
        ["scenario", "packets/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "target"],
        [
            ("saturated (as fast as possible)", f"{rate:,.0f}", "-", "-", "-", "-",
             ">= 100,000 packets/s"),
            ("paced (1000 sessions real time)", f"{paced_rate:,.0f}", f"{latency.median:.3f}",
             f"{latency.p90:.3f}", f"{latency.p99:.3f}", f"{latency.max:.3f}",
             "p99 <= 2 ms"),
            ("paced, pacing push sinks", f"{push_rate:,.0f}", f"{push.median:.3f}",
             f"{push.p90:.3f}", f"{push.p99:.3f}", f"{push.max:.3f}", "p99 <= 2 ms"),
        ],
    ))
    assert unknown == 0


if __name__ == "__main__":
    main()
