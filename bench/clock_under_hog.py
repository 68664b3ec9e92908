"""The engine's clock beside CPU hogs: real-time clock threads against normal ones.

Four sessions play (two transcoded, one with a pitch filter, two passthrough) while
``--hogs`` busy-looping processes run beside the engine, one live change a second
(an equalizer on one transcoded session, a volume on one passthrough session), for
``--seconds``. A reader that takes any order (our gateway's kind) records every page's
arrival. For each clock setting (``ENGINE_CLOCK_PRIORITY`` 0 = normal scheduling, 10 =
round-robin real time), the table gives the gaps between pages over 60 ms, the same net
of the starvation a small normal process (the host canary of the tests) saw in the
same window (a gap the canary shared is the host's, not the engine's), and the ticks
over 20 ms late in the engine's own histogram.

    .venv/bin/python bench/clock_under_hog.py --hogs 2 --seconds 20

Figures: docs/performance.md, "The clock under a CPU hog". A bench, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.media import write_tone
from loadtest.processes import EngineProcess
from loadtest.stats import format_table
from protocol import ConsumerOrder, Hello
from tests.support.consumer import SocketConsumer
from tests.support.media import write_opus_tone
from tests.support.starvation import HostCanary

SESSIONS = ("t1", "t2", "p1", "p2")
GAP = 0.060


def _hog(until: float) -> None:
    while time.monotonic() < until:
        pass


def _late_ticks(metrics: str, above: str) -> float:
    buckets = {m[1]: float(m[2]) for m in re.finditer(
        r'audiogate_engine_tick_lateness_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics)}
    return buckets.get("+Inf", 0.0) - buckets.get(above, 0.0)


async def _probe(engine: EngineProcess, media: Path, seconds: float) -> list[object]:
    hello = Hello("clock-bench", ConsumerOrder.ANY)
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as api, \
            SocketConsumer(engine.socket_path, hello=hello) as consumer:
        flac, ogg = str(media / "long.flac"), str(media / "long.ogg")
        await api.post("/session/t1/play", json={"url": flac, "format": "opus"})
        await api.post("/session/t2/play", json={"url": flac, "format": "opus",
                                                 "filters": {"timescale": {"pitch": 1.2}}})
        await api.post("/session/p1/play", json={"url": ogg, "format": "opus"})
        await api.post("/session/p2/play", json={"url": ogg, "format": "opus"})
        await asyncio.sleep(3)
        before = (await api.get("/metrics")).text
        starts = {sid: len(consumer.packet_arrivals(sid)) for sid in SESSIONS}
        with HostCanary() as canary:
            for i in range(int(seconds)):
                gain = 0.2 if i % 2 else -0.2
                await api.post("/session/t1/filters",
                               json={"equalizer": [{"band": 0, "gain": gain}]})
                await api.post("/session/p1/volume", json={"volume": 0.8 if i % 2 else 1.0})
                await asyncio.sleep(1)
            after = (await api.get("/metrics")).text
            gaps, net, worst, worst_net = 0, 0, 0.0, 0.0
            for sid in SESSIONS:
                times = [a.at for a in consumer.packet_arrivals(sid)][starts[sid]:]
                for a, b in itertools.pairwise(times):
                    if b - a > GAP:
                        gaps += 1
                        worst = max(worst, b - a)
                        mine = b - a - canary.starved(a, b)
                        if mine > GAP:
                            net += 1
                            worst_net = max(worst_net, mine)
        scheduling = (await api.get("/health")).json()["clock_scheduling"]
        late = _late_ticks(after, "0.02") - _late_ticks(before, "0.02")
        for sid in SESSIONS:
            await api.post(f"/session/{sid}/stop")
    return [scheduling["front"].split(" (")[0], gaps, f"{worst * 1000:.0f}", net,
            f"{worst_net * 1000:.0f}", int(late)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hogs", type=int, default=2, help="busy-looping processes")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds judged per run")
    parser.add_argument("--priorities", default="0,10", help="ENGINE_CLOCK_PRIORITY values")
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="ag-clock-"))
    write_tone(media / "long.flac", 550.0, args.seconds + 10)
    write_opus_tone(media / "long.ogg", 440.0, args.seconds + 10)
    rows: list[list[object]] = []
    for priority in args.priorities.split(","):
        with EngineProcess({"ENGINE_CLOCK_PRIORITY": priority}, media_dir=media,
                           allow_private=True, log_level="WARNING") as engine:
            until = time.monotonic() + args.seconds + 8
            hogs = [multiprocessing.Process(target=_hog, args=(until,), daemon=True)
                    for _ in range(args.hogs)]
            for hog in hogs:
                hog.start()
            try:
                row = await _probe(engine, media, args.seconds)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.join()
        rows.append([priority, *row])
    print(f"{args.hogs} busy loops beside the engine, {args.seconds:g} s judged, 4 sessions")
    print(format_table(["priority", "front clock", "gaps > 60 ms", "worst ms",
                        "net of canary > 60 ms", "worst net ms", "ticks > 20 ms late"],
                       rows))


if __name__ == "__main__":
    asyncio.run(main())
