"""A flood of half-sent HTTP requests against the real engine (printed table,
never asserted).

Opens N connections that each send half a request line and wait, the way a
slowloris client does, then measures while they are held and after:

* how long after opening each connection the engine closed it (the request
  deadline, ``ENGINE_HTTP_REQUEST_TIMEOUT``);
* the latency of complete ``/health`` requests made meanwhile;
* the engine's open descriptors before, while held, and after.

Run: .venv/bin/python bench/half_requests.py [--connections 1500] [--deadline 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

import httpx

from loadtest.processes import EngineProcess
from loadtest.stats import format_table, summarize


async def _held(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
    return reader, writer, time.monotonic()


async def _closed(reader: asyncio.StreamReader, opened: float) -> float:
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    return time.monotonic() - opened


async def _probe(url: str, until: asyncio.Event) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not until.is_set():
            started = time.perf_counter()
            await client.get("/health")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return latencies


async def _fds(client: httpx.AsyncClient) -> int:
    return int((await client.get("/health")).json()["open_fds"])


async def run(connections: int, deadline: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, connections + 512)), hard))
    with EngineProcess({"ENGINE_HTTP_REQUEST_TIMEOUT": str(deadline)},
                       log_level="WARNING") as engine:
        async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
            before = await _fds(client)
            held = []
            for start in range(0, connections, 250):
                held += await asyncio.gather(*(_held(engine.port)
                                               for _ in range(min(250, connections - start))))
            during = await _fds(client)
            done = asyncio.Event()
            probe = asyncio.create_task(_probe(engine.url, done))
            waits = await asyncio.gather(*(_closed(r, opened) for r, _, opened in held))
            done.set()
            latencies = await probe
            for _, writer, _ in held:
                writer.close()
            after = await _fds(client)
    closes = summarize(waits)
    health = summarize(latencies)
    print(f"{connections} half-sent requests, ENGINE_HTTP_REQUEST_TIMEOUT={deadline:g} s")
    print(format_table(
        ["", "median", "p90", "p99", "max", "n"],
        [("closed after (s)", f"{closes.median:.2f}", f"{closes.p90:.2f}", f"{closes.p99:.2f}",
          f"{closes.max:.2f}", closes.count),
         ("/health meanwhile (ms)", f"{health.median * 1000:.1f}", f"{health.p90 * 1000:.1f}",
          f"{health.p99 * 1000:.1f}", f"{health.max * 1000:.1f}", health.count)]))
    print(f"engine descriptors: {before} before, {during} while held, {after} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1500)
    parser.add_argument("--deadline", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(run(args.connections, args.deadline))


if __name__ == "__main__":
    main()
