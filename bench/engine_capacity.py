"""Engine capacity and latency on this machine, against the bare codec pipeline of the
same run (printed tables, never asserted).

Starts our engine (or targets another with --api/--socket/--pid, e.g. a Go engine) and
measures, with one probe on the socket and plays sent by 4 worker processes:

1. the bare pipeline: PyAV decode + resample + libopus (complexity 10, 128 kb/s) of
   a 44.1 kHz mp3 in one tight loop, µs per 20 ms frame, best of 3; L = the sessions
   the machine's cores could carry at that cost (the physical limit);
2. transcoding capacity: mp3 44.1 kHz -> Opus 128 kb/s; sessions added in steps until
   more than 1 % of pages arrive late (> 60 ms after the previous page of the same
   session) or the engine refuses or fails a play: the last good count; the engine's
   CPU per session at that step against the bare pipeline;
3. overload: twice that capacity posted as fast as possible: plays refused (503/429),
   plays accepted but silent (no audio and no error event), pages missing of the
   accepted;
4. idle time to first audio (POST to first audio packet, one play at a time) for a
   consumer that sends the hello (our gateway) and a Go-style one (the Node front);
5. passthrough capacity: 48 kHz Opus webm -> the same Opus frames, in steps;
6. RSS per plain session (the slope over the transcoding steps).

Run: .venv/bin/python bench/engine_capacity.py [--quick] [--only ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from audio_engine.audio.calibrate import bare_pipeline_cost, mp3_tone
from loadtest import LoadConfig, Target, run_capacity, run_load, run_sequential
from loadtest.media import write_tone
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess
from loadtest.runner import CapacityReport
from loadtest.stats import format_table

#: The Go engine's figures, measured side by side on the 2-core development machine
#: (docs/performance.md), and the targets of this engine.
GO_REFERENCE = {
    "bare pipeline (µs per frame) / L (sessions)": ("-", "-"),
    "transcoding capacity, <= 1 % late (sessions)": ("60 - 70", ">= 0.85 L"),
    "CPU per transcoding session / bare pipeline": ("~1.7", "<= 1.15"),
    "overload 2x: refused / accepted silent / pages missing": ("0 / 0 / late", "- / 0 / <= 2 %"),
    "idle first audio, hello (ms)": ("-", "<= 25"),
    "idle first audio, Go-style consumer (ms)": ("~130", "<= Go's"),
    "passthrough capacity (sessions)": ("n/a", ">= 2000"),
    "RSS per plain session (MB)": ("54", "<= 1.5"),
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


def _cores(pid: int | None) -> float:
    import os

    import psutil

    if pid is not None:
        try:
            return float(len(psutil.Process(pid).cpu_affinity() or []) or os.cpu_count() or 1)
        except (psutil.Error, AttributeError):
            pass
    return float(len(os.sched_getaffinity(0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="engine base URL (default: start ours)")
    parser.add_argument("--socket", help="engine socket path")
    parser.add_argument("--pid", type=int, help="engine PID, for CPU and RSS (its children "
                        "are counted too)")
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument("--only", nargs="*", default=[],
                        choices=["bare", "transcode", "overload", "idle", "passthrough"],
                        help="run only these parts (transcode is needed by overload)")
    parser.add_argument("--media-dir", default=str(Path(tempfile.gettempdir()) / "audiogate-bench"))
    args = parser.parse_args()
    media_dir = Path(args.media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    _media(media_dir, 10.0)
    window = 5.0 if args.quick else 10.0
    settle = 3.0 if args.quick else 5.0

    def wanted(part: str) -> bool:
        return not args.only or part in args.only

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
    cores = _cores(target.pid)
    bare = 0.0
    limit = 0
    try:
        if wanted("bare") or wanted("transcode"):
            print("bare pipeline", file=sys.stderr)
            mp3 = mp3_tone(20.0)
            bare = min(bare_pipeline_cost(mp3) for _ in range(3))
            limit = int(cores * 1e6 / (bare * 50))
            results["bare pipeline (µs per frame) / L (sessions)"] = f"{bare:.0f} / {limit}"

        with MediaServer(media_dir) as server:
            mp3_config = LoadConfig(server.url("bench.mp3"), "opus", settle=settle,
                                    window=window)
            webm = LoadConfig(server.url("bench.webm"), "opus", settle=settle, window=window,
                              session_prefix="pass")
            capacity = 0
            if wanted("transcode") or wanted("overload"):
                print("transcoding capacity", file=sys.stderr)
                start = max(10, (limit // 2) // 10 * 10) if limit else 40
                transcode = run_capacity(target, mp3_config, step=10, start=start,
                                         progress=_progress)
                capacity = transcode.capacity
                share = f" ({capacity / limit:.2f} L)" if limit else ""
                results["transcoding capacity, <= 1 % late (sessions)"] = f"{capacity}{share}"
                ratio = _cost_ratio(transcode, bare)
                if ratio is not None:
                    results["CPU per transcoding session / bare pipeline"] = ratio
                slope = _rss_slope(transcode)
                if slope is not None:
                    results["RSS per plain session (MB)"] = f"{slope:.2f}"
                print(_steps_table("transcoding: mp3 44.1 kHz -> Opus 128 kb/s", transcode))

            if wanted("overload") and capacity:
                print(f"overload: {2 * capacity} plays at once", file=sys.stderr)
                over = run_load(target, 2 * capacity,
                                LoadConfig(server.url("bench.mp3"), "opus", settle=3.0,
                                           window=window, session_prefix="over"),
                                progress=_progress)
                refused = len(over.http_failures)
                accepted = over.sessions - refused
                silent = accepted - over.sessions_with_audio - sum(
                    1 for sid in over.errors if sid not in over.http_failures)
                expected = over.sessions_with_audio * window * 50
                missing = max(0.0, 1 - (over.pages + over.sessions_with_audio) / expected) \
                    if expected else 0.0
                results["overload 2x: refused / accepted silent / pages missing"] = (
                    f"{refused} / {max(0, silent)} / {missing * 100:.1f} % "
                    f"(late {over.late_fraction * 100:.2f} %)")

            if wanted("idle"):
                print("idle time to first audio", file=sys.stderr)
                ours = run_sequential(target, mp3_config, 20, progress=_progress)
                results["idle first audio, hello (ms)"] = (
                    f"{ours.median * 1000:.0f} (p95 {ours.p95 * 1000:.0f})")
                go = run_sequential(target, mp3_config, 20, progress=_progress, hello=False)
                results["idle first audio, Go-style consumer (ms)"] = (
                    f"{go.median * 1000:.0f} (p95 {go.p95 * 1000:.0f})")

            if wanted("passthrough"):
                print("passthrough capacity", file=sys.stderr)
                passthrough = run_capacity(target, webm, step=250, start=1000,
                                           max_sessions=3000, progress=_progress)
                results["passthrough capacity (sessions)"] = str(passthrough.capacity)
                print(_steps_table("passthrough: webm Opus 48 kHz", passthrough))
    finally:
        if engine is not None:
            engine.terminate()

    rows = [(name, go, target_, results.get(name, "-"))
            for name, (go, target_) in GO_REFERENCE.items()]
    print()
    print(format_table(["figure", "Go engine", "target", "this run"], rows))


def _cost_ratio(report: CapacityReport, bare: float) -> str | None:
    """The engine's CPU per transcoding session at the last good step, per frame,
    against the bare pipeline's."""
    good = [s for s in report.steps if s.good and s.report.cpu_percent.count]
    if not good or not bare:
        return None
    step = good[-1]
    micros = step.report.cpu_percent.mean / 100 / step.sessions / 50 * 1e6
    return f"{micros / bare:.2f} ({micros:.0f} µs per frame at {step.sessions} sessions)"


def _rss_slope(report: CapacityReport) -> float | None:
    """RSS added per session between the first and the last good step."""
    good = [s for s in report.steps if s.good and s.report.rss_mb.count]
    if len(good) < 2:
        return None
    first, last = good[0], good[-1]
    return (last.report.rss_mb.median - first.report.rss_mb.median) / (
        last.sessions - first.sessions)


def _steps_table(title: str, report: CapacityReport) -> str:
    rows = []
    for step in report.steps:
        r = step.report
        rows.append((
            step.sessions, r.sessions_with_audio, len(r.http_failures),
            f"{r.late_fraction * 100:.2f}", f"{r.gap.p99 * 1000:.1f}",
            f"{r.gap.max * 1000:.0f}", r.underruns, f"{r.cpu_percent.mean:.0f}",
            f"{r.rss_mb.median:.0f}",
        ))
    table = format_table(
        ["sessions", "playing", "refused", "late %", "p99 gap ms", "max gap ms", "underruns",
         "cpu %", "rss MB"], rows)
    return f"\n{title}\n{table}\ncapacity (last step with <= 1 % late pages): {report.capacity}\n"


if __name__ == "__main__":
    main()
