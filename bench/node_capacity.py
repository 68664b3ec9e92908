"""Capacity of 1, 2 and 3 engine processes on this machine, in one run
(printed tables, never asserted).

For each engine count N, N engine processes run side by side (admission by load
off: the ramp is meant to find where pages go late, not where the engines would
start refusing), sessions are spread evenly over them, and the same ramp as
``bench/engine_capacity.py`` finds the last total with at most 1 % late pages:

* transcoding: 44.1 kHz mp3 -> Opus 128 kb/s, complexity 10;
* passthrough: 48 kHz Opus webm -> the same Opus frames.

The one-engine figures come from this same run, so the columns compare like
with like on a machine whose speed varies from run to run.

Run: .venv/bin/python bench/node_capacity.py [--engines 1 2 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from loadtest import LoadConfig, Target
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.nodes import NodesCapacityReport, run_capacity_nodes
from loadtest.processes import EngineProcess
from loadtest.stats import format_table


def _progress(label: str, fraction: float) -> None:
    print(f"\r  {label:<48} {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)
    if fraction >= 1.0:
        print(file=sys.stderr)


def _engines(count: int) -> list[EngineProcess]:
    settings = {"ENGINE_MAX_SESSIONS": "5000", "ENGINE_MAX_LOAD": "1"}
    engines: list[EngineProcess] = []
    try:
        for _ in range(count):
            engines.append(EngineProcess(settings, log_level="WARNING",
                                         allow_private=True).start())
    except BaseException:
        for engine in engines:
            engine.terminate()
        raise
    return engines


def _targets(engines: list[EngineProcess]) -> list[Target]:
    out = []
    for engine in engines:
        assert engine.process is not None
        out.append(Target(engine.url, str(engine.socket_path), engine.process.pid))
    return out


def _steps_table(title: str, report: NodesCapacityReport) -> str:
    rows = []
    for step in report.steps:
        r = step.report
        rows.append((step.sessions, r.sessions_with_audio, f"{r.late_fraction * 100:.2f}",
                     f"{r.gap.p99 * 1000:.1f}", r.underruns, f"{r.cpu_percent.mean:.0f}"))
    table = format_table(["sessions", "playing", "late %", "p99 gap ms", "underruns",
                          "engines cpu %"], rows)
    return f"\n{title}\n{table}\ncapacity: {report.capacity}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="shorter windows")
    parser.add_argument("--media-dir",
                        default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media_dir = Path(args.media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    if not (media_dir / "bench.mp3").exists():
        write_tone(media_dir / "bench.mp3", 440.0, 600, bit_rate=128_000)
    if not (media_dir / "bench.webm").exists():
        write_tone(media_dir / "bench.webm", 550.0, 600)
    window = 5.0 if args.quick else 8.0
    settle = 3.0 if args.quick else 4.0

    summary: list[tuple[object, ...]] = []
    with MediaServer(media_dir) as server:
        for count in args.engines:
            row: list[object] = [count]
            for label, media, step, start, limit in (
                ("transcoding", "bench.mp3", 20, 20, 600),
                ("passthrough", "bench.webm", 200, 200, 3000),
            ):
                engines = _engines(count)
                try:
                    config = LoadConfig(server.url(media), "opus", settle=settle,
                                        window=window, session_prefix=f"n{count}{label[0]}")
                    print(f"{count} engine(s), {label}", file=sys.stderr)
                    report = run_capacity_nodes(_targets(engines), config, step=step,
                                                start=start, max_sessions=limit,
                                                progress=_progress)
                finally:
                    for engine in engines:
                        engine.terminate()
                print(_steps_table(f"{count} engine(s), {label}", report))
                cpu = " + ".join(f"{c:.0f}" for c in report.cpu_at_capacity)
                row += [report.capacity, cpu]
            summary.append(tuple(row))
    print()
    print(format_table(["engines", "transcoding capacity", "cpu % at it",
                        "passthrough capacity", "cpu % at it"], summary))


if __name__ == "__main__":
    main()
