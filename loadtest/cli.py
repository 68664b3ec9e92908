"""``audiogate loadtest``: load an engine (ours or a Go engine) and report.

Examples::

    audiogate loadtest --sessions 50                      # our engine, generated mp3
    audiogate loadtest --media webm --capacity --step 100 # passthrough capacity
    audiogate loadtest --api http://127.0.0.1:8180 --socket /tmp/music-playground.sock
    audiogate loadtest --playground http://127.0.0.1:8080 --sessions 10

Sessions are started by worker processes through the HTTP API; audio is timed by
one probe on the socket (a Go engine sends only to its newest consumer). With
``--playground`` each session is a browser-like tab of its own user on a
gateway's WebSocket instead. A table is printed at the end (``--json`` for
machines); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.runner import (
    CapacityReport,
    LoadConfig,
    LoadReport,
    Target,
    run_capacity,
    run_load,
    run_playground,
)
from loadtest.stats import Summary, format_table

__all__ = ["main"]

_GENERATED = {"mp3": ("load.mp3", 440.0), "webm": ("load.webm", 550.0)}


def _parser() -> argparse.ArgumentParser:
    # The module's docstring, without its reStructuredText quoting.
    text = __doc__.replace("``", "").replace("::", ":")
    parser = argparse.ArgumentParser(
        prog="audiogate loadtest", description=text.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=text.split("\n\n", 1)[1],
    )
    target = parser.add_argument_group("target (default: start our engine)")
    target.add_argument("--api", metavar="URL",
                        help="engine base URL, e.g. http://127.0.0.1:8180")
    target.add_argument("--socket", metavar="PATH",
                        help="engine Unix socket path (with --api)")
    target.add_argument("--pid", type=int, metavar="PID",
                        help="engine process id, to sample its CPU and RSS")
    target.add_argument("--playground", metavar="URL",
                        help="go through a gateway's playground WebSockets instead")
    media = parser.add_argument_group("media")
    media.add_argument("--media", default="mp3", metavar="mp3|webm|URL",
                       help="mp3 (generated, transcoded), webm (generated, passthrough) "
                       "or a URL (default: mp3)")
    media.add_argument("--minutes", type=float, default=10.0, metavar="MINUTES",
                       help="length of generated media (default: 10)")
    media.add_argument("--format", default="opus", choices=["opus", "web", "pcm"],
                       help="what the sessions ask the engine for (default: opus)")
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument("--sessions", type=int, default=20, metavar="COUNT",
                          help="sessions played at once (default: 20)")
    scenario.add_argument("--workers", type=int, default=4, metavar="COUNT",
                          help="processes starting sessions (default: 4)")
    scenario.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                          help="time between the plays and the measurement (default: 5)")
    scenario.add_argument("--window", type=float, default=10.0, metavar="SECONDS",
                          help="time measured (default: 10)")
    scenario.add_argument("--late", type=float, default=60.0, metavar="MILLISECONDS",
                          help="a frame later than this counts as late (default: 60)")
    capacity = parser.add_argument_group("capacity mode (Lavamark's method)")
    capacity.add_argument("--capacity", action="store_true",
                          help="add sessions in steps until more than --late-limit are late")
    capacity.add_argument("--step", type=int, default=20, metavar="COUNT",
                          help="sessions added per step (default: 20)")
    capacity.add_argument("--start", type=int, default=0, metavar="COUNT",
                          help="sessions of the first step (default: --step)")
    capacity.add_argument("--max", type=int, default=5000, metavar="COUNT",
                          help="most sessions tried (default: 5000)")
    capacity.add_argument("--late-limit", type=float, default=0.01, metavar="FRACTION",
                          help="share of late frames past which the search ends (default: 0.01)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def _progress(label: str, fraction: float) -> None:
    width = 30
    filled = int(width * min(1.0, max(0.0, fraction)))
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%  {label:<36}",
          end="", file=sys.stderr, flush=True)
    if fraction >= 1.0:
        print(file=sys.stderr)


def _distribution_rows(report: LoadReport) -> list[tuple[object, ...]]:
    def row(name: str, summary: Summary, scale: float = 1.0) -> tuple[object, ...]:
        s = summary.scaled(scale)
        return (name, s.mean, s.median, s.p90, s.p95, s.p99, s.max, s.count)

    return [
        row("time to first audio (ms)", report.time_to_first_audio, 1000),
        row("inter-frame gap (ms)", report.gap, 1000),
        row("engine CPU (%)", report.cpu_percent),
        row("engine RSS (MB)", report.rss_mb),
    ]


def _print_report(report: LoadReport, title: str) -> None:
    print(title)
    print(format_table(["", "mean", "median", "p90", "p95", "p99", "max", "n"],
                       _distribution_rows(report)))
    print(f"sessions playing: {report.sessions_with_audio}/{report.sessions}; "
          f"late frames (> gap limit): {report.late_fraction * 100:.2f} %; "
          f"underruns: {report.underruns if report.underruns is not None else 'n/a'}; "
          f"errors: {len(report.errors)}")
    for session, message in list(report.errors.items())[:5]:
        print(f"  {session}: {message}")


def _print_capacity(report: CapacityReport) -> None:
    rows = []
    for step in report.steps:
        r = step.report
        rows.append((step.sessions, r.sessions_with_audio, f"{r.late_fraction * 100:.2f}",
                     f"{r.gap.p99 * 1000:.1f}", f"{r.time_to_first_audio.p95 * 1000:.0f}",
                     r.underruns if r.underruns is not None else "n/a",
                     f"{r.cpu_percent.mean:.0f}", f"{r.rss_mb.median:.0f}"))
    print(format_table(["sessions", "playing", "late %", "p99 gap ms", "p95 ttfa ms",
                        "underruns", "cpu %", "rss MB"], rows))
    print(f"capacity: {report.capacity} sessions "
          f"(last step with <= {report.late_limit * 100:g} % late frames)")


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.api and not args.socket and not args.playground:
        print("error: --api needs --socket (the probe reads the engine's socket)",
              file=sys.stderr)
        return 2
    with ExitStack() as stack:
        media_dir = Path(tempfile.gettempdir()) / "audiogate-loadtest"
        if args.media in _GENERATED:
            name, tone = _GENERATED[args.media]
            path = media_dir / f"{args.minutes:g}min-{name}"
            if not path.exists():
                media_dir.mkdir(parents=True, exist_ok=True)
                print(f"generating {path.name}...", file=sys.stderr)
                write_tone(path, tone, args.minutes * 60, bit_rate=128_000
                           if args.media == "mp3" else None)
            server = stack.enter_context(MediaServer(media_dir))
            media_url = server.url(path.name)
        else:
            media_url = args.media
        target: Target | None
        if args.api:
            target = Target(args.api, args.socket or "", args.pid)
        elif args.playground:
            target = Target("", "", args.pid) if args.pid else None
        else:
            # Our media server is on loopback: this engine must accept it.
            engine = EngineProcess({"ENGINE_MAX_SESSIONS": str(max(1000, args.max))},
                                   log_level="WARNING", allow_private=True).start()
            stack.callback(engine.terminate)
            assert engine.process is not None
            target = Target(engine.url, str(engine.socket_path), engine.process.pid)
        config = LoadConfig(media_url, args.format, workers=args.workers, settle=args.settle,
                            window=args.window, late_threshold=args.late / 1000)
        result: Any
        if args.playground:
            result = run_playground(args.playground, args.sessions, config, target,
                                    progress=_progress)
        elif args.capacity:
            assert target is not None
            result = run_capacity(target, config, step=args.step, start=args.start,
                                  max_sessions=args.max, late_limit=args.late_limit,
                                  progress=_progress)
        else:
            assert target is not None
            result = run_load(target, args.sessions, config, progress=_progress)
    if args.json:
        print(json.dumps(result.as_dict(), default=str, indent=2))
    elif isinstance(result, CapacityReport):
        _print_capacity(result)
    else:
        where = args.playground or (args.api or "our engine")
        _print_report(result, f"{args.sessions} sessions of {args.media} as {args.format} "
                              f"against {where}, {args.window:g} s measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
