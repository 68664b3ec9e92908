"""Soak: N sessions for a long time, watching for leaks and drift (never in the tests).

Starts our engine (or targets one with --api/--socket/--pid), plays --sessions
transcoding sessions (mp3 -> Opus) for --minutes, and prints one row per
--interval: engine RSS, open file descriptors, threads, late frames and
underruns in that interval. At the end: the RSS slope (least squares after the
first minute), and the totals.

Run: .venv/bin/python bench/soak.py [--sessions 50 --minutes 10 --interval 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.probe import start_probe
from loadtest.processes import EngineProcess
from loadtest.runner import LoadConfig, _plays, _stop_all, _Workers
from loadtest.stats import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--api")
    parser.add_argument("--socket")
    parser.add_argument("--pid", type=int)
    args = parser.parse_args()

    media_dir = Path(tempfile.gettempdir()) / "audiogate-soak"
    media_dir.mkdir(exist_ok=True)
    track = media_dir / f"soak-{args.minutes + 2:g}min.mp3"
    if not track.exists():
        print(f"generating {track.name}...", file=sys.stderr)
        write_tone(track, 440.0, (args.minutes + 2) * 60, bit_rate=128_000)

    engine = None
    if args.api:
        api, socket_path, pid = args.api, args.socket, args.pid
    else:
        engine = EngineProcess(log_level="WARNING", allow_private=True).start()
        assert engine.process is not None
        api, socket_path, pid = engine.url, str(engine.socket_path), engine.process.pid
    process = psutil.Process(pid) if pid else None
    try:
        with MediaServer(media_dir) as server:
            probe = start_probe(socket_path)
            workers = _Workers(api, 4)
            config = LoadConfig(server.url(track.name), "opus", session_prefix="soak")
            plays = _plays(config, 0, args.sessions)
            workers.play(plays)
            started = time.monotonic()
            rows = []
            rss: list[tuple[float, float]] = []
            underruns_before = httpx.get(f"{api}/health").json().get("underruns", 0)
            total_pages = total_late = 0
            probe.start_window()
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                time.sleep(min(args.interval, args.minutes * 60 - elapsed))
                report = probe.report()
                probe.start_window()
                gaps = np.concatenate([np.frombuffer(s["gaps"], dtype=np.float64)
                                       for s in report["sessions"].values()] or [np.zeros(0)])
                late = int(np.sum(gaps > 0.060))
                total_pages += gaps.size
                total_late += late
                health = httpx.get(f"{api}/health").json()
                minute = (time.monotonic() - started) / 60
                memory = process.memory_info().rss / 2**20 if process else float(health["ram_mb"])
                fds = process.num_fds() if process else health.get("open_fds", -1)
                threads = process.num_threads() if process else health.get("threads", -1)
                rss.append((minute, memory))
                underruns = health.get("underruns", 0) - underruns_before
                rows.append((f"{minute:.1f}", f"{memory:.1f}", fds, threads,
                             f"{late / max(1, gaps.size) * 100:.3f}", underruns,
                             health.get("sessions_playing")))
                print(format_table(["minute", "rss MB", "fds", "threads", "late %",
                                    "underruns (total)", "playing"], rows[-1:])
                      .splitlines()[-1], file=sys.stderr)
            _stop_all(api, [sid for sid, _ in plays])
            workers.close()
            probe.stop()
    finally:
        if engine is not None:
            engine.terminate()

    later = [(m, r) for m, r in rss if m >= 1.0] or rss
    slope = float(np.polyfit([m for m, _ in later], [r for _, r in later], 1)[0]) \
        if len(later) >= 2 else 0.0
    print(f"soak: {args.sessions} sessions, {args.minutes:g} min, one row per "
          f"{args.interval:g} s (pid {pid}, {os.cpu_count()} cores)")
    print(format_table(["minute", "rss MB", "fds", "threads", "late %", "underruns (total)",
                        "playing"], rows))
    print(f"RSS slope after the first minute: {slope:+.3f} MB/min; late frames "
          f"{total_late}/{total_pages} ({total_late / max(1, total_pages) * 100:.3f} %)")


if __name__ == "__main__":
    main()
