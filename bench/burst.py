"""Burst: do sessions already playing keep 50 pages/s while a burst of plays opens?

Starts our engine (or targets one with --api/--socket), plays --steady
transcoding sessions (mp3 -> Opus) and lets them settle, then fires --burst plays
at once through the HTTP API (4 worker processes) and measures, over --window
seconds from the first burst request:

* for each steady session: pages per second and the worst gap between pages
  (a 20 ms stream is 50 pages/s; a gap over 60 ms is a late page);
* for the burst: HTTP answers, sessions with audio, time to first audio.

Prints one table per run; figures go to docs/performance.md. Never a test.

Run: .venv/bin/python bench/burst.py [--burst 1000 --steady 5 --media webm]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.probe import start_probe
from loadtest.processes import EngineProcess
from loadtest.runner import _stop_all, _Workers
from loadtest.stats import format_table

#: Burst media: a passthrough webm (48 kHz Opus), a transcoded mp3, or a local file.
MEDIA = {"webm": "burst.webm", "mp3": "burst.mp3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--steady", type=int, default=5)
    parser.add_argument("--media", choices=[*MEDIA, "file", "refused"], default="webm",
                        help="what the burst plays (file: the webm from the media directory; "
                        "refused: a URL refused with 400, the cost of the HTTP requests alone)")
    parser.add_argument("--window", type=float, default=12.0)
    parser.add_argument("--settle", type=float, default=4.0)
    parser.add_argument("--api")
    parser.add_argument("--socket")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--env", action="append", default=[],
                        help="extra engine setting NAME=VALUE (repeatable)")
    args = parser.parse_args()

    media_dir = Path(tempfile.gettempdir()) / "audiogate-burst"
    media_dir.mkdir(exist_ok=True)
    for name, seconds in (("steady.mp3", 120.0), ("burst.webm", 60.0), ("burst.mp3", 60.0)):
        if not (media_dir / name).exists():
            print(f"generating {name}...", file=sys.stderr)
            write_tone(media_dir / name, 440.0, seconds, bit_rate=128_000)

    engine = None
    if args.api:
        api, socket_path, pid = args.api, args.socket, args.pid
    else:
        env = {"ENGINE_MAX_SESSIONS": str(args.burst + args.steady + 10)}
        env.update(item.split("=", 1) for item in args.env)
        engine = EngineProcess(env, log_level="WARNING", allow_private=True,
                               media_dir=media_dir).start(timeout=60)
        assert engine.process is not None
        api, socket_path, pid = engine.url, str(engine.socket_path), engine.process.pid
    process = psutil.Process(pid) if pid else None
    try:
        with MediaServer(media_dir) as server:
            probe = start_probe(socket_path)
            workers = _Workers(api, 4)
            steady = [(f"steady-{i}", {"url": server.url("steady.mp3"), "format": "opus"})
                      for i in range(args.steady)]
            workers.play(steady)
            time.sleep(args.settle)
            burst_url = {"file": str(media_dir / "burst.webm"),
                         "refused": "ftp://refused.invalid/x.mp3"}.get(args.media) \
                or server.url(MEDIA[args.media])
            burst = [(f"burst-{i}", {"url": burst_url, "format": "opus"})
                     for i in range(args.burst)]
            if process is not None:
                process.cpu_percent(None)
            window_started = probe.start_window()
            answers = workers.play(burst)
            answered = time.monotonic()
            time.sleep(max(0.0, window_started + args.window - time.monotonic()))
            cpu = process.cpu_percent(None) if process is not None else float("nan")
            report = probe.report()
            window = time.monotonic() - window_started
            _stop_all(api, [sid for sid, _ in steady + burst])
            workers.close()
            probe.stop()
    finally:
        if engine is not None:
            engine.terminate()
            print(f"engine log: {engine.log_path}", file=sys.stderr)

    sessions = report["sessions"]
    rows = []
    worst = 0.0
    rates = []
    for sid, _ in steady:
        gaps = np.asarray(sessions.get(sid, {}).get("gaps", []), dtype=np.float64)
        rate = (gaps.size + 1) / window if gaps.size else 0.0
        rates.append(rate)
        worst = max(worst, float(gaps.max()) if gaps.size else window)
        rows.append((sid, f"{rate:.1f}", f"{gaps.max() * 1000 if gaps.size else 0:.0f}",
                     f"{np.percentile(gaps, 99) * 1000 if gaps.size else 0:.1f}",
                     int(np.sum(gaps > 0.060))))
    ok = sum(1 for _, status, _ in answers.values() if status == 200)
    first = sorted(s["first_audio_at"] - answers[sid][0] for sid, s in sessions.items()
                   if sid.startswith("burst-") and s["first_audio_at"] is not None
                   and sid in answers)
    print(f"burst: {args.burst} plays ({args.media}) against {args.steady} playing "
          f"transcoding sessions; window {window:.1f} s from the first request; "
          f"{os.cpu_count()} cores")
    print(format_table(["steady session", "pages/s", "worst gap ms", "p99 gap ms",
                        "late pages"], rows))
    print(f"steady sessions: {min(rates):.1f}-{max(rates):.1f} pages/s, worst gap "
          f"{worst * 1000:.0f} ms")
    print(f"burst: {ok}/{len(burst)} answered 200 within {answered - window_started:.1f} s; "
          f"{len(first)} with audio in the window; time to first audio "
          + (f"median {np.median(first):.2f} s, p95 {np.percentile(first, 95):.2f} s"
             if first else "n/a")
          + f"; engine CPU {cpu:.0f} %")


if __name__ == "__main__":
    main()
