"""Transcoding capacity with a typical filter preset against none (printed tables, never
asserted).

Starts our engine and ramps sessions with the load tools (``loadtest``, the same
method as ``bench/engine_capacity.py``: add sessions in steps until more than 1 % of pages
arrive late, report the last good count), once per case:

1. mp3 44.1 kHz -> Opus 128 kb/s, no filters (the plain transcoding path: decode,
   resample, an identity filter chain, libopus);
2. the same with bassboost + loudness normalization (``filters`` in the play body);
3. 48 kHz Opus webm with bassboost + loudness (a passthrough source made to transcode).

Run: .venv/bin/python bench/filter_capacity.py [--quick] [--only none preset webm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from audio_engine.audio.filters import preset
from loadtest import LoadConfig, Target, run_capacity
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.runner import CapacityReport
from loadtest.stats import format_table

#: The fronts' typical preset: the bass up, every track at one level.
PRESET: dict[str, Any] = {**preset("bassboost").to_lavalink(), "loudness": {"target": -14.0}}


def _progress(label: str, fraction: float) -> None:
    print(f"\r  {label:<40} {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)
    if fraction >= 1.0:
        print(file=sys.stderr)


def _steps(title: str, report: CapacityReport) -> str:
    rows = []
    for step in report.steps:
        r = step.report
        rows.append((step.sessions, r.sessions_with_audio, f"{r.late_fraction * 100:.2f}",
                     f"{r.gap.p99 * 1000:.1f}", r.underruns, f"{r.cpu_percent.mean:.0f}",
                     f"{r.rss_mb.median:.0f}"))
    table = format_table(["sessions", "playing", "late %", "p99 gap ms", "underruns",
                          "cpu %", "rss MB"], rows)
    return f"\n{title}\n{table}\ncapacity: {report.capacity}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument("--only", nargs="*", default=[], choices=["none", "preset", "webm"])
    parser.add_argument("--start", type=int, default=40, help="first step (sessions)")
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--media-dir", default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media = Path(args.media_dir)
    media.mkdir(parents=True, exist_ok=True)
    if not (media / "bench.mp3").exists():
        write_tone(media / "bench.mp3", 440.0, 600, bit_rate=128_000)
    if not (media / "bench.webm").exists():
        write_tone(media / "bench.webm", 550.0, 600)
    window, settle = (5.0, 3.0) if args.quick else (10.0, 5.0)
    cases = [
        ("none", "mp3 -> Opus, no filters", "bench.mp3", {}),
        ("preset", "mp3 -> Opus, bassboost + loudness", "bench.mp3", {"filters": PRESET}),
        ("webm", "webm Opus, bassboost + loudness (transcoded)", "bench.webm",
         {"filters": PRESET}),
    ]
    results = []
    with MediaServer(media) as server:
        for key, title, name, extra in cases:
            if args.only and key not in args.only:
                continue
            engine = EngineProcess(log_level="WARNING", allow_private=True).start()
            assert engine.process is not None
            try:
                target = Target(engine.url, str(engine.socket_path), engine.process.pid)
                config = LoadConfig(server.url(name), "opus", settle=settle, window=window,
                                    session_prefix=key, play_extra=extra)
                print(title, file=sys.stderr)
                report = run_capacity(target, config, step=args.step, start=args.start,
                                      progress=_progress)
            finally:
                engine.terminate()
            print(_steps(title, report))
            # CPU per session at the first step (the same count in every case): engine
            # CPU time, so it compares the cases even when a loaded machine ends the
            # ramp early; and at the last good step.
            first = report.steps[0] if report.steps else None
            last = next((s for s in reversed(report.steps) if s.good), None)
            cpu_first = (first.report.cpu_percent.mean / first.sessions if first
                         else float("nan"))
            cpu_last = last.report.cpu_percent.mean / last.sessions if last else float("nan")
            results.append((title, report.capacity, f"{cpu_first:.2f}", f"{cpu_last:.2f}"))
    print(format_table(["case", "capacity (sessions)",
                        f"engine CPU % per session at {args.start}",
                        "at the last good step"], results))


if __name__ == "__main__":
    main()
