"""Load scenarios against any engine that speaks the contract (ours or Go's).

Plays are sent through the HTTP API by worker processes (so the driver's own
work does not distort the measurement), audio is timed by one probe process on
the socket (``probe``), and the engine's CPU and RSS are sampled when its PID is
known. Three scenarios:

* ``run_load``: N sessions, started together, measured over a window;
* ``run_capacity``: add sessions in steps until more than the allowed fraction
  of pages arrive late; the last good count is the capacity (Lavamark's method);
* ``run_sequential``: one play at a time on an idle engine (time to first audio).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import psutil

from loadtest.probe import start_probe
from loadtest.stats import Summary, summarize

__all__ = [
    "CapacityReport",
    "CapacityStep",
    "LoadConfig",
    "LoadReport",
    "Target",
    "run_capacity",
    "run_load",
    "run_playground",
    "run_sequential",
]

Progress = Callable[[str, float], None]


def _quiet(_: str, __: float) -> None:
    return


@dataclass(frozen=True, slots=True)
class Target:
    """Where the engine is: its HTTP base URL, its socket, and (if local) its PID."""

    api_url: str
    socket_path: str
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What each session plays and how the run is measured."""

    media_url: str
    format: str = "opus"
    workers: int = 4
    #: Seconds after the plays before the measurement window opens.
    settle: float = 4.0
    #: Seconds the window stays open.
    window: float = 10.0
    #: A page later than this after the previous one counts as late.
    late_threshold: float = 0.060
    session_prefix: str = "load"
    #: Per-session URL instead of ``media_url`` (index -> URL), e.g. distinct tones.
    media_for: Callable[[int], str] | None = None
    #: More keys for every play's body (our engine's ``filters``, ``crossfade``, ...).
    play_extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class LoadReport:
    """The figures of one measured window."""

    sessions: int
    sessions_with_audio: int
    errors: dict[str, str]
    time_to_first_audio: Summary
    gap: Summary
    late_fraction: float
    pages: int
    underruns: int | None
    cpu_percent: Summary
    rss_mb: Summary
    rss_per_session_mb: float | None
    window_seconds: float
    http_failures: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        out = dict(self.__dict__)
        for key, value in out.items():
            if isinstance(value, Summary):
                out[key] = value.as_dict()
        return out


# -- worker processes ---------------------------------------------------------------


def _worker_main(api_url: str, conn: multiprocessing.connection.Connection) -> None:
    """Receives lists of (session_id, body) and posts them all concurrently,
    answering with {session_id: (sent_at, status, text)}."""

    async def post_all(client: httpx.AsyncClient, plays: list[tuple[str, dict[str, Any]]]
                       ) -> dict[str, tuple[float, int, str]]:
        async def one(session_id: str, body: dict[str, Any]) -> tuple[str, tuple[float, int, str]]:
            sent = time.monotonic()
            try:
                response = await client.post(f"/session/{session_id}/play", json=body)
                return session_id, (sent, response.status_code, response.text[:200])
            except httpx.HTTPError as exc:
                return session_id, (sent, 0, str(exc))

        return dict(await asyncio.gather(*(one(s, b) for s, b in plays)))

    async def serve() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=api_url, timeout=60.0, limits=limits) as client:
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command is None:
                    return
                conn.send(await post_all(client, command))

    asyncio.run(serve())


class _Workers:
    def __init__(self, api_url: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes = []
        self._processes = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(api_url, child), daemon=True)
            process.start()
            self._pipes.append(parent)
            self._processes.append(process)

    def play(self, plays: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[float, int, str]]:
        """Spread *plays* over the workers, fire them at once, collect the results."""
        shares = [plays[i :: len(self._pipes)] for i in range(len(self._pipes))]
        for pipe, share in zip(self._pipes, shares, strict=True):
            pipe.send(share)
        results: dict[str, tuple[float, int, str]] = {}
        for pipe in self._pipes:
            results.update(pipe.recv())
        return results

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()


# -- measurement --------------------------------------------------------------------


class _Sampler:
    """Samples the engine's CPU use and RSS: its process and every child of it (an
    engine's worker processes, and their resolution workers), so a front over workers
    counts whole. A child that ended (a restarted worker) keeps what it used."""

    def __init__(self, pid: int | None) -> None:
        self._process = psutil.Process(pid) if pid else None
        self.cpu: list[float] = []
        self.rss: list[float] = []
        #: CPU seconds by process seen so far (an ended one's last reading stays).
        self._busy: dict[int, float] = {}
        self._last: tuple[float, float] | None = None

    def _tree(self) -> list[psutil.Process]:
        assert self._process is not None
        try:
            return [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return [self._process]

    def sample(self) -> None:
        if self._process is None:
            return
        rss = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
                rss += process.memory_info().rss / (1024 * 1024)
            except psutil.Error:
                continue
            self._busy[process.pid] = times.user + times.system
        now = time.monotonic()
        busy = sum(self._busy.values())
        if self._last is not None:
            self.cpu.append(100 * (busy - self._last[1]) / max(1e-6, now - self._last[0]))
        self._last = (now, busy)
        self.rss.append(rss)

    def rss_now(self) -> float | None:
        if self._process is None:
            return None
        total = 0.0
        for process in self._tree():
            try:
                total += process.memory_info().rss / (1024 * 1024)
            except psutil.Error:
                continue
        return total


def _underruns(api_url: str) -> int | None:
    try:
        value = httpx.get(f"{api_url}/health", timeout=10).json().get("underruns")
    except (httpx.HTTPError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


def _window(probe: object, sampler: _Sampler, seconds: float, progress: Progress,
            label: str) -> None:
    sampler.sample()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        progress(label, elapsed / seconds)
        time.sleep(min(0.5, seconds - elapsed))
        sampler.sample()
    progress(label, 1.0)


def _build_report(
    report: dict[str, Any],
    sent: dict[str, tuple[float, int, str]],
    ids: list[str],
    late_threshold: float,
    sampler: _Sampler,
    underruns: int | None,
    rss_base: float | None,
    window_seconds: float,
) -> LoadReport:
    sessions = report["sessions"]
    ttfa = []
    gaps: list[np.ndarray] = []
    errors: dict[str, str] = {}
    with_audio = 0
    for sid in ids:
        seen = sessions.get(sid)
        if seen is None:
            continue
        for _, kind, message in seen["events"]:
            if kind == "error":
                errors[sid] = message
        if seen["first_audio_at"] is not None:
            with_audio += 1
            if sid in sent:
                ttfa.append(seen["first_audio_at"] - sent[sid][0])
        if len(seen["gaps"]):
            gaps.append(np.frombuffer(seen["gaps"], dtype=np.float64))
    all_gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    late = float(np.mean(all_gaps > late_threshold)) if all_gaps.size else 0.0
    rss_now = sampler.rss_now()
    per_session = ((rss_now - rss_base) / len(ids)
                   if rss_now is not None and rss_base is not None and ids else None)
    failures = {sid: text for sid, (_, status, text) in sent.items() if status != 200}
    return LoadReport(
        sessions=len(ids),
        sessions_with_audio=with_audio,
        errors=errors,
        time_to_first_audio=summarize(ttfa),
        gap=summarize(all_gaps),
        late_fraction=late,
        pages=int(all_gaps.size),
        underruns=underruns,
        cpu_percent=summarize(sampler.cpu),
        rss_mb=summarize(sampler.rss),
        rss_per_session_mb=per_session,
        window_seconds=window_seconds,
        http_failures=failures,
    )


def _plays(config: LoadConfig, start: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{config.session_prefix}-{i}",
         {"url": config.media_for(i) if config.media_for else config.media_url,
          "format": config.format, **config.play_extra})
        for i in range(start, start + count)
    ]


def _stop_all(api_url: str, ids: list[str]) -> None:
    async def stop() -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            for chunk in range(0, len(ids), 100):
                await asyncio.gather(*(client.post(f"/session/{sid}/stop")
                                       for sid in ids[chunk : chunk + 100]))

    asyncio.run(stop())


def run_load(target: Target, sessions: int, config: LoadConfig,
             progress: Progress = _quiet) -> LoadReport:
    """Start *sessions* at once, let them settle, measure one window, stop them."""
    probe = start_probe(target.socket_path)
    workers = _Workers(target.api_url, config.workers)
    sampler = _Sampler(target.pid)
    try:
        rss_base = sampler.rss_now()
        underruns_before = _underruns(target.api_url)
        plays = _plays(config, 0, sessions)
        progress(f"starting {sessions} sessions", 0.0)
        sent = workers.play(plays)
        _window(probe, sampler, config.settle, progress, "settling")
        probe.start_window()
        sampler.cpu.clear()
        sampler.rss.clear()
        underruns_start = _underruns(target.api_url)
        _window(probe, sampler, config.window, progress, "measuring")
        report = probe.report()
        underruns_end = _underruns(target.api_url)
        underruns = (underruns_end - underruns_start
                     if underruns_end is not None and underruns_start is not None else None)
        del underruns_before
        result = _build_report(report, sent, [s for s, _ in plays], config.late_threshold,
                               sampler, underruns, rss_base, config.window)
        _stop_all(target.api_url, [s for s, _ in plays])
        return result
    finally:
        workers.close()
        probe.stop()


@dataclass(frozen=True, slots=True)
class CapacityStep:
    """One step of a capacity run."""

    sessions: int
    report: LoadReport

    @property
    def good(self) -> bool:
        """Every session playing and no more than the allowed late pages."""
        return self.report.sessions_with_audio == self.sessions and not self.report.errors


@dataclass
class CapacityReport:
    """All steps, and the last count that met the limit."""

    steps: list[CapacityStep]
    capacity: int
    late_limit: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "capacity": self.capacity,
            "late_limit": self.late_limit,
            "steps": [{"sessions": s.sessions, **s.report.as_dict()} for s in self.steps],
        }


def run_capacity(target: Target, config: LoadConfig, *, step: int, start: int = 0,
                 max_sessions: int = 5000, late_limit: float = 0.01,
                 progress: Progress = _quiet) -> CapacityReport:
    """Add *step* sessions at a time (first step: *start* or *step*) until more
    than *late_limit* of the pages in a window are late, a session fails, or
    *max_sessions* is reached."""
    probe = start_probe(target.socket_path)
    workers = _Workers(target.api_url, config.workers)
    sampler = _Sampler(target.pid)
    ids: list[str] = []
    sent: dict[str, tuple[float, int, str]] = {}
    steps: list[CapacityStep] = []
    capacity = 0
    try:
        rss_base = sampler.rss_now()
        count = start or step
        while count <= max_sessions:
            plays = _plays(config, len(ids), count - len(ids))
            ids += [s for s, _ in plays]
            progress(f"{count} sessions: starting", 0.0)
            sent.update(workers.play(plays))
            _window(probe, sampler, config.settle, progress, f"{count} sessions: settling")
            probe.start_window()
            sampler.cpu.clear()
            sampler.rss.clear()
            before = _underruns(target.api_url)
            _window(probe, sampler, config.window, progress, f"{count} sessions: measuring")
            after = _underruns(target.api_url)
            report = _build_report(
                probe.report(), sent, ids, config.late_threshold, sampler,
                after - before if after is not None and before is not None else None,
                rss_base, config.window,
            )
            current = CapacityStep(count, report)
            steps.append(current)
            if not current.good or report.late_fraction > late_limit:
                break
            capacity = count
            count += step
        _stop_all(target.api_url, ids)
        return CapacityReport(steps, capacity, late_limit)
    finally:
        workers.close()
        probe.stop()


def run_sequential(target: Target, config: LoadConfig, plays: int, spacing: float = 0.3,
                   progress: Progress = _quiet, *, hello: bool = True) -> Summary:
    """Time to first audio of *plays* plays made one at a time (an idle engine), at a
    probe that sends the hello (our gateway's timing) or not (the Node front's)."""
    probe = start_probe(target.socket_path, hello=hello)
    ids: list[str] = []
    sent: dict[str, float] = {}
    try:
        with httpx.Client(base_url=target.api_url, timeout=30) as client:
            for index in range(plays):
                sid = f"{config.session_prefix}-seq-{index}"
                ids.append(sid)
                sent[sid] = time.monotonic()
                client.post(f"/session/{sid}/play",
                            json={"url": config.media_url, "format": config.format})
                time.sleep(spacing)
                client.post(f"/session/{sid}/stop")
                progress("sequential plays", (index + 1) / plays)
        report = probe.report()["sessions"]
        return summarize([report[sid]["first_audio_at"] - sent[sid]
                          for sid in ids if sid in report and report[sid]["first_audio_at"]])
    finally:
        probe.stop()


# -- through the playground's WebSockets ----------------------------------------------


def _playground_worker(base_url: str, urls: list[str], seconds: float, settle: float,
                       conn: multiprocessing.connection.Connection) -> None:
    """One worker: a tab per URL, each a new playground user; reports per tab the
    time to first frame and the gaps between frames inside the window."""
    import websockets

    async def tab(url: str, window_start: float, window_end: float) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            page = await client.get("/")
            cookie = page.cookies.get("ag_user")
        ws_url = base_url.replace("http", "ws", 1) + "/ws"
        first: float | None = None
        last: float | None = None
        gaps: list[float] = []
        errors: list[str] = []
        async with websockets.connect(ws_url, additional_headers={"Cookie": f"ag_user={cookie}"},
                                      max_size=1 << 20) as socket:
            sent = time.monotonic()
            await socket.send(json.dumps({"type": "play", "url": url}))
            while (now := time.monotonic()) < window_end:
                try:
                    message = await asyncio.wait_for(socket.recv(), window_end - now)
                except TimeoutError:
                    break
                now = time.monotonic()
                if isinstance(message, bytes):
                    if first is None:
                        first = now
                    elif last is not None and now >= window_start:
                        gaps.append(now - last)
                    last = now
                else:
                    data = json.loads(message)
                    if data.get("type") == "error":
                        errors.append(str(data.get("message")))
                    elif data.get("type") == "ping":
                        await socket.send('{"type":"pong"}')
            await socket.send('{"type":"stop"}')
        return {"ttfa": (first - sent) if first else None, "gaps": gaps, "errors": errors}

    async def main() -> list[dict[str, Any]]:
        start = time.monotonic()
        return list(await asyncio.gather(*(tab(u, start + settle, start + settle + seconds)
                                           for u in urls)))

    conn.send(asyncio.run(main()))


def run_playground(base_url: str, sessions: int, config: LoadConfig, target: Target | None = None,
                   progress: Progress = _quiet) -> LoadReport:
    """*sessions* playground tabs (each its own user) through a gateway at
    *base_url*; frames timed as the tabs receive them."""
    context = multiprocessing.get_context("spawn")
    urls = [config.media_for(i) if config.media_for else config.media_url for i in range(sessions)]
    shares = [urls[i :: config.workers] for i in range(config.workers)]
    pipes = []
    processes = []
    sampler = _Sampler(target.pid if target else None)
    for share in shares:
        if not share:
            continue
        parent, child = context.Pipe()
        process = context.Process(target=_playground_worker, args=(
            base_url, share, config.window, config.settle, child), daemon=True)
        process.start()
        pipes.append(parent)
        processes.append(process)
    _window(_NoProbe(), sampler, config.settle + config.window, progress, "playground tabs")
    tabs: list[dict[str, Any]] = []
    for pipe, process in zip(pipes, processes, strict=True):
        if pipe.poll(config.settle + config.window + 60):
            tabs += pipe.recv()
        process.join(10)
    gaps = np.array([g for t in tabs for g in t["gaps"]])
    late = float(np.mean(gaps > config.late_threshold)) if gaps.size else 0.0
    return LoadReport(
        sessions=sessions,
        sessions_with_audio=sum(1 for t in tabs if t["ttfa"] is not None),
        errors={str(i): "; ".join(t["errors"]) for i, t in enumerate(tabs) if t["errors"]},
        time_to_first_audio=summarize([t["ttfa"] for t in tabs if t["ttfa"] is not None]),
        gap=summarize(gaps),
        late_fraction=late,
        pages=int(gaps.size),
        underruns=None,
        cpu_percent=summarize(sampler.cpu),
        rss_mb=summarize(sampler.rss),
        rss_per_session_mb=None,
        window_seconds=config.window,
    )


class _NoProbe:
    def start_window(self) -> float:
        return time.monotonic()
