"""Engine capacity and latency on this machine (printed tables, never asserted).

Starts our engine (or targets another with --api/--socket/--pid, e.g. a Go engine)
and measures, with one probe on the socket and plays sent by 4 worker processes:

1. transcoding capacity: 44.1 kHz mp3 -> Opus 128 kb/s, complexity 10; sessions
   added in steps until more than 1 % of pages arrive late (> 60 ms after the
   previous page of the same session): the last good count;
2. passthrough capacity: 48 kHz Opus webm -> the same Opus frames;
3. idle time to first audio (POST to first audio packet, one play at a time);
4. a burst of 100 plays at once: time to first audio;
5. 100 transcoding sessions: p99 inter-page gap, CPU, RSS per session.

Run: .venv/bin/python bench/engine_capacity.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from loadtest import LoadConfig, Target, run_capacity, run_load, run_sequential
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.stats import format_table

GO_REFERENCE = {
    "transcoding capacity (sessions)": ("~120", ">= 120"),
    "passthrough capacity (sessions)": ("n/a", ">= 1000"),
    "RSS per session (MB)": ("54", "<= 3"),
    "idle time to first audio (ms)": ("63", "<= 40"),
    "burst of 100: p95 time to first audio (ms)": ("2970", "<= 500"),
    "p99 inter-page gap at 100 sessions (ms)": ("39", "<= 25"),
}


def _media(directory: Path, minutes: float) -> None:
    if not (directory / "bench.mp3").exists():
        write_tone(directory / "bench.mp3", 440.0, minutes * 60, bit_rate=128_000)
    if not (directory / "bench.webm").exists():
        write_tone(directory / "bench.webm", 550.0, minutes * 60)


def _progress(label: str, fraction: float) -> None:
    print(f"\r  {label:<40} {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)
    if fraction >= 1.0:
        print(file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="engine base URL (default: start ours)")
    parser.add_argument("--socket", help="engine socket path")
    parser.add_argument("--pid", type=int, help="engine PID, for CPU and RSS")
    parser.add_argument("--quick", action="store_true", help="short windows, small steps")
    parser.add_argument("--only", nargs="*", default=[],
                        choices=["idle", "burst", "hundred", "transcode", "passthrough"],
                        help="run only these parts")
    parser.add_argument("--media-dir", default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media_dir = Path(args.media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    _media(media_dir, 10.0)
    window = 5.0 if args.quick else 10.0
    settle = 3.0 if args.quick else 5.0

    engine = None
    if args.api:
        target = Target(args.api, args.socket, args.pid)
    else:
        # The default session limit (1000) would cap the passthrough steps.
        engine = EngineProcess({"ENGINE_MAX_SESSIONS": "5000"}, log_level="WARNING",
                               allow_private=True).start()
        assert engine.process is not None
        target = Target(engine.url, str(engine.socket_path), engine.process.pid)
    results: dict[str, str] = {}
    try:
        with MediaServer(media_dir) as server:
            mp3 = LoadConfig(server.url("bench.mp3"), "opus", settle=settle, window=window)
            webm = LoadConfig(server.url("bench.webm"), "opus", settle=settle, window=window,
                              session_prefix="pass")

            def wanted(part: str) -> bool:
                return not args.only or part in args.only

            if wanted("idle"):
                print("idle time to first audio", file=sys.stderr)
                idle = run_sequential(target, mp3, 20, progress=_progress)
                results["idle time to first audio (ms)"] = (
                    f"{idle.median * 1000:.0f} (p95 {idle.p95 * 1000:.0f})")

            if wanted("burst"):
                print("burst of 100 plays", file=sys.stderr)
                burst = run_load(target, 100, LoadConfig(server.url("bench.mp3"), "opus",
                                                          settle=2.0, window=2.0,
                                                          session_prefix="burst"),
                                 progress=_progress)
                results["burst of 100: p95 time to first audio (ms)"] = (
                    f"{burst.time_to_first_audio.p95 * 1000:.0f}")

            if wanted("hundred"):
                print("100 transcoding sessions", file=sys.stderr)
                hundred = run_load(target, 100, mp3, progress=_progress)
                results["p99 inter-page gap at 100 sessions (ms)"] = (
                    f"{hundred.gap.p99 * 1000:.1f} (late {hundred.late_fraction * 100:.2f} %)")
                if hundred.rss_per_session_mb is not None:
                    results["RSS per session (MB)"] = f"{hundred.rss_per_session_mb:.2f}"

            if wanted("transcode"):
                print("transcoding capacity", file=sys.stderr)
                transcode = run_capacity(target, mp3, step=10 if args.quick else 20, start=60,
                                         progress=_progress)
                results["transcoding capacity (sessions)"] = str(transcode.capacity)
                print(_steps_table("transcoding: mp3 44.1 kHz -> Opus 128 kb/s, complexity 10",
                                   transcode))

            if wanted("passthrough"):
                print("passthrough capacity", file=sys.stderr)
                passthrough = run_capacity(target, webm, step=200, start=400,
                                           max_sessions=2400, progress=_progress)
                results["passthrough capacity (sessions)"] = str(passthrough.capacity)
                print(_steps_table("passthrough: webm Opus 48 kHz", passthrough))
                slope = _rss_slope(passthrough)
                if slope is not None:
                    results["RSS per session (MB)"] = f"{slope:.2f} (passthrough step slope)"
    finally:
        if engine is not None:
            engine.terminate()

    rows = [(name, go, target_, results.get(name, "-"))
            for name, (go, target_) in GO_REFERENCE.items()]
    print()
    print(format_table(["figure", "Go engine", "target", "this run"], rows))


def _rss_slope(report: object) -> float | None:
    """RSS added per session between the first and the last good step."""
    from loadtest.runner import CapacityReport

    assert isinstance(report, CapacityReport)
    good = [s for s in report.steps if s.good and s.report.rss_mb.count]
    if len(good) < 2:
        return None
    first, last = good[0], good[-1]
    return (last.report.rss_mb.median - first.report.rss_mb.median) / (
        last.sessions - first.sessions)


def _steps_table(title: str, report: object) -> str:
    from loadtest.runner import CapacityReport

    assert isinstance(report, CapacityReport)
    rows = []
    for step in report.steps:
        r = step.report
        rows.append((
            step.sessions, r.sessions_with_audio, f"{r.late_fraction * 100:.2f}",
            f"{r.gap.p99 * 1000:.1f}", f"{r.gap.max * 1000:.0f}", r.underruns,
            f"{r.cpu_percent.mean:.0f}", f"{r.rss_mb.median:.0f}",
        ))
    table = format_table(
        ["sessions", "playing", "late %", "p99 gap ms", "max gap ms", "underruns", "cpu %",
         "rss MB"], rows)
    return f"\n{title}\n{table}\ncapacity (last step with <= 1 % late pages): {report.capacity}\n"


if __name__ == "__main__":
    main()
