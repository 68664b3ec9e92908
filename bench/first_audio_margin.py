"""The timing margins, measured with the Node-like consumer (printed tables, never asserted).

1. Silent tracks by first-audio margin: for each margin, an engine with
   ENGINE_FIRST_AUDIO_MARGIN_MS set to it, and many runs of N plays started at once
   by tests/support/node_consumer.py (its play flow, its drop-before-stream rule,
   its strict Ogg demuxer). A track is silent when its stream never got the
   OpusHead page. Each size runs with an idle consumer loop and with busy ones.
2. Violations by event margin (ENGINE_EVENT_MARGIN_MS), busy consumer: per run, 20
   plays that fail at once (missing files, a refused port) while 10 play, then
   20 stops; an ``error`` handled before its play's reply (the Node process
   would exit) or a ``finished`` before its stop's reply (the front would start
   the next queued track) counts.
3. Idle time to first audio with the default margins: from sending POST /play to
   the first audio packet at a plain reader that sent our gateway's hello, and at
   one that sent none (Go-style, the Node front's timing); one play at a time.

Tracks are 48 kHz Ogg Opus local files (the passthrough path), one tone each.

Run: .venv/bin/python bench/first_audio_margin.py [--runs 10] [--quick]
(about 25 minutes with the defaults on a 2-core machine; --quick: about 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.socket_client import HELLO
from loadtest.processes import EngineProcess
from loadtest.stats import format_table, summarize
from protocol import EventType, parse_hello
from tests.support.consumer import SocketConsumer
from tests.support.media import write_opus_tone
from tests.support.node_consumer import LoopLoad, NodeConsumer, SessionRecord
from tests.support.waiting import poll_until_async

#: The consumer loop: idle, or busy half the time in slices of 5-15 ms (busy10),
#: 12-38 ms (busy25) or 20-60 ms (busy40).
LOADS = {
    "idle": LoopLoad(),
    "busy10": LoopLoad(busy_ms=10.0, idle_ms=10.0, seed=3),
    "busy25": LoopLoad(busy_ms=25.0, idle_ms=25.0, seed=5),
    "busy40": LoopLoad(busy_ms=40.0, idle_ms=40.0, seed=9),
}
TRACK_SECONDS = 1.0


def _tracks(directory: Path, count: int) -> list[Path]:
    return [write_opus_tone(directory / f"t{i}.ogg", 300.0 + 20.0 * i, TRACK_SECONDS,
                            serial=i + 1) for i in range(count)]


def _engine(directory: Path, **settings: str) -> EngineProcess:
    return EngineProcess(settings, media_dir=directory, allow_private=True, log_level="WARNING")


async def _silent_run(engine: EngineProcess, tracks: list[Path], plays: int, load: LoopLoad,
                      tag: str) -> int:
    ids = [f"{tag}-{i}" for i in range(plays)]
    async with NodeConsumer(engine.socket_path, engine.url, load=load) as node:
        results = await node.play_many(list(zip(ids, map(str, tracks[:plays]), strict=True)))
        assert all(isinstance(r, SessionRecord) for r in results), results[:3]
        await node.wait_ended(ids, within=60)
        return sum(1 for sid in ids if not node.records[sid].audible)


async def silent_tracks(directory: Path, tracks: list[Path], margins: list[int],
                        sizes: list[int], loads: list[str], runs: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for margin in margins:
        with _engine(directory, ENGINE_FIRST_AUDIO_MARGIN_MS=str(margin)) as engine:
            for size in sizes:
                for load_name in loads:
                    load = LOADS[load_name]
                    counts = [await _silent_run(engine, tracks, size, load,
                                                f"m{margin}-{size}-{load.busy_ms:g}-{run}")
                              for run in range(runs)]
                    rows.append([f"{margin} ms", size, load_name, runs,
                                 f"{sum(counts)}/{size * runs}",
                                 sum(1 for c in counts if c), max(counts)])
                    print(f"  margin {margin} ms, {size} plays, {load_name}: {counts}",
                          flush=True)
    return rows


async def _violation_run(engine: EngineProcess, directory: Path, tracks: list[Path],
                         load: LoopLoad, tag: str) -> tuple[int, int, int]:
    async with NodeConsumer(engine.socket_path, engine.url, load=load) as node:
        playing = [(f"{tag}-ok-{i}", str(tracks[i])) for i in range(10)]
        await node.play_many(playing)
        failing = [(f"{tag}-f{i}", str(directory / f"absent-{i}.ogg")) for i in range(10)]
        failing += [(f"{tag}-r{i}", f"http://127.0.0.1:1/x{i}.ogg") for i in range(10)]
        await node.play_many(failing)
        # A long track, so that every stop ends a playing session.
        stops = [(f"{tag}-s{i}", str(directory / "long.ogg")) for i in range(20)]
        await node.play_many(stops)
        await node.stop_many([sid for sid, _ in stops])
        await node.wait_ended([sid for sid, _ in stops], within=20)
        kinds = [v.kind for v in node.violations]
        stopped = sum(1 for sid, _ in stops if node.records[sid].finished_reason == "stopped")
        return (kinds.count("error-before-play-reply"),
                kinds.count("finished-before-stop-reply"), stopped)


async def violations(directory: Path, tracks: list[Path], margins: list[int],
                     loads: list[str], runs: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for margin in margins:
        with _engine(directory, ENGINE_EVENT_MARGIN_MS=str(margin)) as engine:
            for load_name in loads:
                counts = [await _violation_run(engine, directory, tracks, LOADS[load_name],
                                               f"e{margin}-{LOADS[load_name].busy_ms:g}-{run}")
                          for run in range(runs)]
                errors = sum(c[0] for c in counts)
                finishes = sum(c[1] for c in counts)
                stopped = sum(c[2] for c in counts)
                rows.append([f"{margin} ms", load_name, runs, f"{errors}/{20 * runs}",
                             f"{finishes}/{stopped}",
                             sum(1 for c in counts if c[0] or c[1])])
                print(f"  event margin {margin} ms, {load_name}: {counts}", flush=True)
    return rows


async def _first_audio(engine: EngineProcess, tracks: list[Path], hello: bool,
                       plays: int) -> tuple[list[float], list[float]]:
    to_audio: list[float] = []
    to_ready: list[float] = []
    async with SocketConsumer(engine.socket_path,
                              hello=parse_hello(HELLO) if hello else None) as reader, \
            httpx.AsyncClient(base_url=engine.url, timeout=30) as api:
        async def registered() -> bool:
            health = (await api.get("/health")).json()
            return bool(health["consumers_any_order"] == int(hello))

        await poll_until_async(registered, timeout=10)
        for index in range(plays):
            sid = f"ttfa-{int(hello)}-{index}"
            started = time.monotonic()
            response = await api.post(f"/session/{sid}/play",
                                      json={"url": str(tracks[index % len(tracks)]),
                                            "format": "opus"})
            assert response.status_code == 200
            await reader.wait_packets(sid, 1)
            to_ready.append(reader.event_arrival(sid, EventType.READY).at - started)
            to_audio.append(reader.first_audio_arrival(sid).at - started)
            await api.post(f"/session/{sid}/stop")
            await asyncio.sleep(0.1)
    return to_audio, to_ready


async def first_audio(directory: Path, tracks: list[Path], plays: int) -> list[list[object]]:
    rows: list[list[object]] = []
    with _engine(directory) as engine:
        for hello, name in ((True, "hello, order any (our gateway)"),
                            (False, "no hello (Go-style, the Node front)")):
            audio, ready = await _first_audio(engine, tracks, hello, plays)
            a, r = summarize(audio).scaled(1000), summarize(ready).scaled(1000)
            rows.append([name, plays, r.median, r.p95, a.median, a.p95, a.max])
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="runs per cell of tables 1, 2")
    parser.add_argument("--margins", default="0,20,40,60,80", help="first-audio margins, ms")
    parser.add_argument("--sizes", default="40,100", help="plays started at once")
    parser.add_argument("--loads", default="idle,busy10,busy25",
                        help=f"consumer loop loads, of {', '.join(LOADS)}")
    parser.add_argument("--event-margins", default="0,20,60", help="event margins, ms")
    parser.add_argument("--event-loads", default="busy10", help="consumer loads of table 2")
    parser.add_argument("--skip", default="", help="tables to leave out, e.g. 2,3")
    parser.add_argument("--quick", action="store_true", help="3 runs, margins 0 and 60")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    margins = [0, 60] if args.quick else [int(m) for m in args.margins.split(",")]
    event_margins = [0, 60] if args.quick else [int(m) for m in args.event_margins.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    loads = args.loads.split(",")
    event_loads = args.event_loads.split(",")
    skip = set(args.skip.split(","))
    directory = Path(tempfile.mkdtemp(prefix="bench-margin-"))
    tracks = _tracks(directory, 100)
    write_opus_tone(directory / "long.ogg", 500.0, 20.0, serial=999)

    if "1" not in skip:
        print("1. silent tracks (Node-like consumer; a track is silent when its stream "
              "never got OpusHead)", flush=True)
        rows = await silent_tracks(directory, tracks, margins, sizes, loads, runs)
        print(format_table(["first-audio margin", "plays at once", "consumer loop", "runs",
                            "silent tracks", "runs with loss", "worst run"], rows))
    if "2" not in skip:
        print("\n2. ordering violations (20 failing plays and 20 stops per run)", flush=True)
        rows = await violations(directory, tracks, event_margins, event_loads, runs)
        print(format_table(["event margin", "consumer loop", "runs", "error before play reply",
                            "finished before stop reply / stops", "runs with any"], rows))
    if "3" not in skip:
        print("\n3. idle time to first audio, default margins (ms from POST /play)",
              flush=True)
        rows = await first_audio(directory, tracks, 20 if args.quick else 40)
        print(format_table(["consumer", "plays", "ready p50", "ready p95", "first audio p50",
                            "first audio p95", "max"], rows))


if __name__ == "__main__":
    asyncio.run(main())
