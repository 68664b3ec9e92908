"""Lavalink players per machine and memory per player, through the engine's Lavalink v4
API, with the audio going out on the engine's own Discord voice connections (printed
tables, never asserted).

Starts our engine with its Lavalink face (LAVALINK_SERVER_PASSWORD), a voice farm in a
process of its own (loadtest/voice_farm.py: one voice gateway and one UDP port standing
in for Discord's voice servers, counting every player's RTP packets and the late ones),
and drives the engine as a Lavalink client does: one WebSocket session, then per
player a PATCH with a ``voice`` object (its connection to the farm) and a PATCH with
the track, in steps, until more than 1 % of the packets arrive late (> 60 ms after the
player's previous one) or players fall silent. Per step:

- packets per second per player (50 is real time), late packets;
- the engine's CPU (front, workers and their children) per player, against the bare
  codec pipeline of the same run (PyAV decode + resample + libopus, one session);
- the resident memory of the front and its workers; the memory per player is the
  slope over the steps.

Media: the transcoding file of bench/engine_capacity.py (mp3 44.1 kHz -> Opus 128 kb/s),
or with --passthrough 48 kHz Opus in WebM (the frames pass as they are). Admission by
load is off (ENGINE_MAX_LOAD=1): the ramp looks for where packets go late, not where
the engine would start refusing plays.

Lavalink's own figures are published, not measured here (the JVM node cannot be
fetched on this machine): see the second table and docs/lavalink.md.

Run: .venv/bin/python bench/lavalink_capacity.py [--quick] [--passthrough]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from websockets.asyncio.client import connect

from audio_engine.audio.calibrate import bare_pipeline_cost, mp3_tone
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.stats import format_table
from loadtest.voice_farm import VoiceFarm

PASSWORD = "benchpass"
USER_ID = 170939974227541168
#: First guild id of the players (each step adds the next ids).
FIRST_GUILD = 900_000_000_000_000_000
#: PATCHes in flight at once while a step adds its players (a bot's users start
#: tracks a few at a time; a burst of plays is bench/burst.py's subject, and past its
#: open gate the engine fails plays with "too busy", counted here as failures).
CONCURRENT_JOINS = 2

#: What Lavalink publishes about its resource use (the JVM node is not run here).
LAVALINK_PUBLISHED = [
    ("memory per playing track", "at most 350 KB + one thread (its stack) per track",
     "lavaplayer README, 'Resource usage' (sedmelluq/lavaplayer)"),
    ("audio buffered per player", "5 s of Opus frames (frameBufferDurationMs 5000) "
     "+ 400 ms JDA-NAS buffer", "LavalinkServer/application.yml.example"),
    ("heap", "JVM default 1 GB or 25 % of RAM (Docker's -Xmx4G removed in 4.0.0); "
     "examples use -Xmx4G (systemd) and -Xmx6G (Docker compose)",
     "docs/changelog/v4.md, docs/getting-started/systemd.md, docs/getting-started/docker.md"),
    ("RAM to run", "512 MB minimum, 1 GB+ recommended",
     "FAQ of the Lavalink docs as mirrored by mintlify.com (third party)"),
    ("players per core", "not published", "-"),
]


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _rss_mb(pid: int) -> float:
    """The front's and its engine workers' resident memory (its resolution workers
    come and go with the loads: they are left out)."""
    total = 0
    for process in _tree(pid):
        try:
            if process.pid != pid and "engine_worker" not in " ".join(process.cmdline()):
                continue
        except psutil.Error:
            continue
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / (1024 * 1024)


async def _ramp(engine: EngineProcess, farm: VoiceFarm, track_url: str, steps: list[int],
                settle: float, window: float, bare_micros: float) -> list[dict[str, Any]]:
    assert engine.process is not None
    pid = engine.process.pid
    headers = {"Authorization": PASSWORD}
    failures: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    ws_url = engine.url.replace("http://", "ws://") + "/v4/websocket"
    async with httpx.AsyncClient(base_url=engine.url, headers=headers, timeout=60) as api, \
            connect(ws_url, additional_headers={**headers, "User-Id": str(USER_ID),
                                                "Client-Name": "audiogate-bench"},
                    max_size=None) as ws:
        session = json.loads(await ws.recv())["sessionId"]

        async def read() -> None:
            async for text in ws:
                message = json.loads(text)
                if message.get("type") in ("TrackExceptionEvent", "TrackStuckEvent") or (
                        message.get("type") == "TrackEndEvent"
                        and message.get("reason") != "replaced"):
                    failures.append(message)

        reader = asyncio.create_task(read())
        loaded = (await api.get("/v4/loadtracks", params={"identifier": track_url})).json()
        if loaded.get("loadType") != "track":
            raise RuntimeError(f"the benchmark track did not load: {loaded}")
        encoded = loaded["data"]["encoded"]
        joins = asyncio.Semaphore(CONCURRENT_JOINS)

        async def add(guild: int) -> None:
            async with joins:
                path = f"/v4/sessions/{session}/players/{guild}"
                voice = await api.patch(path, json={"voice": {
                    "token": f"token-{guild}", "endpoint": farm.endpoint,
                    "sessionId": f"voice-{guild}"}})
                voice.raise_for_status()
                played = await api.patch(path, json={"track": {"encoded": encoded}})
                played.raise_for_status()

        rss_idle = _rss_mb(pid)
        players = 0
        try:
            for target in steps:
                print(f"  {target} players", file=sys.stderr, flush=True)
                await asyncio.gather(*(add(FIRST_GUILD + i) for i in range(players, target)))
                players = target
                await asyncio.sleep(settle)
                farm.window()
                cpu_before, started = _cpu_seconds(pid), time.monotonic()
                await asyncio.sleep(window)
                counts, _, _ = farm.report()
                cpu = _cpu_seconds(pid) - cpu_before
                elapsed = time.monotonic() - started
                stats = (await api.get("/v4/stats")).json()
                packets = [c[0] for c in counts.values()]
                late = sum(c[1] for c in counts.values())
                total = sum(packets)
                heard = sum(1 for p in packets if p > 0.9 * 50 * elapsed)
                row = {
                    "players": players, "playing": stats["playingPlayers"],
                    "heard": heard,
                    "pps": total / elapsed / max(1, players),
                    "late_pct": 100 * late / max(1, total),
                    "longest_gap_ms": 1000 * max((c[2] for c in counts.values()), default=0),
                    "cpu_cores": cpu / elapsed,
                    "cpu_ms_per_player_s": 1000 * cpu / elapsed / players,
                    "vs_bare": (cpu / elapsed / players) / (bare_micros * 50 / 1e6),
                    "rss_mb": _rss_mb(pid), "failures": len(failures),
                }
                rows.append(row)
                if row["late_pct"] > 1.0 or heard < players or failures:
                    break
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        for row in rows:
            row["rss_idle_mb"] = rss_idle
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer steps")
    parser.add_argument("--passthrough", action="store_true",
                        help="48 kHz Opus WebM (frames passed through) instead of mp3")
    parser.add_argument("--steps", type=int, nargs="*", help="player counts to step through")
    parser.add_argument("--media-dir",
                        default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media_dir = Path(args.media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    name = "bench.webm" if args.passthrough else "bench.mp3"
    if not (media_dir / name).exists():
        if args.passthrough:
            write_tone(media_dir / name, 550.0, 600.0)
        else:
            write_tone(media_dir / name, 440.0, 600.0, bit_rate=128_000)
    steps = args.steps or ([10, 20, 40, 60] if args.quick else
                           [10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 180, 220, 260, 300,
                            350, 400])
    settle, window = (2.0, 4.0) if args.quick else (4.0, 8.0)

    print("bare pipeline", file=sys.stderr)
    bare = min(bare_pipeline_cost(mp3_tone(20.0)) for _ in range(3))
    engine_env = {"LAVALINK_SERVER_PASSWORD": PASSWORD, "ENGINE_MAX_SESSIONS": "5000",
                  "ENGINE_MAX_LOAD": "1"}
    with MediaServer(media_dir) as media, VoiceFarm() as farm, \
            EngineProcess(engine_env, log_level="WARNING", media_dir=media_dir,
                          allow_private=True) as engine:
        print("ramp", file=sys.stderr)
        rows = asyncio.run(_ramp(engine, farm, media.url(name), steps, settle, window, bare))

    title = ("passthrough: 48 kHz Opus WebM" if args.passthrough
             else "transcoding: mp3 44.1 kHz -> Opus 128 kb/s")
    print(f"\nLavalink players through the engine ({title}); bare pipeline "
          f"{bare:.0f} µs per frame")
    print(format_table(
        ["players", "playing", "heard", "failed", "pkt/s each", "late %", "longest gap ms",
         "CPU cores", "CPU ms/s each", "x bare", "RSS MB"],
        [(r["players"], r["playing"], r["heard"], r["failures"], r["pps"], r["late_pct"],
          r["longest_gap_ms"], r["cpu_cores"], r["cpu_ms_per_player_s"], r["vs_bare"],
          r["rss_mb"]) for r in rows]))
    good = [r for r in rows if r["late_pct"] <= 1.0 and r["heard"] == r["players"]
            and not r["failures"]]
    capacity = good[-1]["players"] if good else 0
    slope = None
    if len(rows) >= 2:
        x = np.array([r["players"] for r in rows], dtype=float)
        y = np.array([r["rss_mb"] for r in rows], dtype=float)
        slope = float(np.polyfit(x, y, 1)[0])
    cores = len(psutil.Process().cpu_affinity() or []) or 1
    print()
    print(format_table(["figure", "this run"], [
        ("players, <= 1 % late packets", f"{capacity} on {cores} cores"
         + (" (the last step, not a limit)" if good and good[-1] is rows[-1] else "")),
        ("memory per player (RSS slope, MB)", f"{slope:.2f}" if slope is not None else "-"),
        ("engine RSS with no player (MB)", f"{rows[0]['rss_idle_mb']:.0f}" if rows else "-"),
    ]))
    print()
    print("Lavalink (JVM), as published:")
    print(format_table(["figure", "Lavalink", "source"], LAVALINK_PUBLISHED))


if __name__ == "__main__":
    main()
