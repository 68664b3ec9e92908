"""Egress proxy: what relaying media costs the engine's event loop (never a test).

Runs the engine's ``EgressProxy`` alone in a child process, then --streams
readers (threads of this process) each pull one media file through it at
--kbps in real time, the way FFmpeg pulls a playing source, and reports the
proxy process's CPU over the whole run (opening included: the kernel's socket
buffers take the first megabytes of every stream at once, so most relaying
happens then), per stream and per megabyte, and the first-byte latency of a
small request.

Run: .venv/bin/python bench/egress_overhead.py [--streams 200 --kbps 128 --seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from loadtest.media_server import MediaServer
from loadtest.stats import format_table

_CHILD = """
import asyncio, sys
from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.url_policy import UrlPolicy

async def main():
    proxy = EgressProxy(UrlPolicy(allow_private=True), per_grant=100_000)
    await proxy.start()
    print(proxy.url(proxy.grant("bench")), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await proxy.close()

asyncio.run(main())
"""


def _reader(url: str, proxy: str, rate: int, stop: threading.Event, totals: list[int]) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    chunk = rate // 4  # four reads a second, like FFmpeg's 32 KB reads at 128 kb/s
    received = 0
    with opener.open(url, timeout=30) as response:
        while not stop.is_set():
            data = response.read(chunk)
            if not data:
                break
            received += len(data)
            stop.wait(0.25)
    totals.append(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--kbps", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="egress-bench-"))
    rate = args.kbps * 1000 // 8
    (root / "media.bin").write_bytes(os.urandom(int(rate * (args.seconds + 30))))
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    proxy = child.stdout.readline().strip()
    process = psutil.Process(child.pid)
    stop = threading.Event()
    totals: list[int] = []
    with MediaServer(root) as server:
        url = server.url("media.bin")
        latency = []
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
        for _ in range(20):
            started = time.perf_counter()
            with opener.open(server.url("media.bin"), timeout=10) as response:
                response.read(1)
            latency.append((time.perf_counter() - started) * 1000)
        threads = [threading.Thread(target=_reader, args=(url, proxy, rate, stop, totals),
                                    daemon=True) for _ in range(args.streams)]
        cpu_before = sum(process.cpu_times()[:2])
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        elapsed = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(10)
    child.stdin.close()
    child.wait(10)
    share = cpu / elapsed * 100
    relayed = sum(totals) / 1e6
    print(f"egress proxy: {args.streams} streams at {args.kbps} kb/s for {elapsed:.0f} s "
          f"({os.cpu_count()} cores)")
    print(format_table(
        ["streams", "proxy CPU s", "CPU % (average)", "CPU ms per MB", "MB relayed",
         "first byte ms (median)"],
        [(args.streams, f"{cpu:.2f}", f"{share:.1f}", f"{cpu * 1000 / max(relayed, 1):.1f}",
          f"{relayed:.0f}", f"{sorted(latency)[len(latency) // 2]:.2f}")]))


if __name__ == "__main__":
    main()
