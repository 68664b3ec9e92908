"""One engine worker's sessions: their manager, pools, egress proxy and clock.

The engine is a front process (the HTTP API and the sockets, ``audio_engine.cluster``)
and worker processes that each own a share of the sessions. ``Engine`` is what runs
in a worker: it wires the session manager, the resolver (whose yt-dlp jobs run in the
front's pool), the egress proxy and the thread pools, and runs the 20 ms clock, the
idle reaper and the load sampler (``run``). Its bytes go to the front through the
``Hub`` it is given. The process around it is assembled by
``audiogate.engine_worker``.

``stop`` ends every session (``finished`` events go out) and stops the clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from audio_engine.audio.calibrate import bare_pipeline_cost, mp3_tone
from audio_engine.audio.codec import ComplexityDial
from audio_engine.cluster.reports import (
    CLOCK_STALL_SECONDS,
    VERSION,
    SessionSnapshot,
    WorkerReport,
    open_fds,
    rss_megabytes,
)
from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import LOAD_INTERVAL
from audio_engine.sessions.manager import Hub, SessionManager
from audio_engine.sessions.memory import MemoryReleaser
from audio_engine.sessions.pools import ElasticPool
from audio_engine.sessions.session import Session, SessionState, effective_filters
from audio_engine.settings import EngineSettings
from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.resolver import JobRunner, Resolver
from audio_engine.sources.url_policy import UrlPolicy
from audio_engine.wire.clock import TickSchedule, run_clock
from lifecycle import Process, declare
from protocol.filters import Loudness

__all__ = ["CLOCK", "IDLE_REAPER", "LOAD_REPORTER", "Engine"]

log = logging.getLogger(__name__)

_RUN = "`Engine.run`'s task group"
CLOCK = declare(
    "clock", owner=_RUN, process=Process.WORKER,
    what="the worker's 20 ms clock: one frame of every playing session per tick",
    ends="`Engine.stop`, after every session ended")
IDLE_REAPER = declare(
    "idle-reaper", owner=_RUN, process=Process.WORKER,
    what="removing sessions nobody touched for `ENGINE_IDLE_TIMEOUT`",
    ends="`Engine.stop`")
LOAD_REPORTER = declare(
    "load-reporter", owner=_RUN, process=Process.WORKER,
    what="the worker's report to the front every 0.5 s (CPU, clock, sessions)",
    ends="`Engine.stop`")
_POOLS = "Engine (its pools)"
for _pool, _work in (("engine-read", "steady reads of playing sources"),
                     ("engine-open", "opening, seeking and closing sources"),
                     ("engine-codec", "decoding, filters, resampling, encoding")):
    declare(f"{_pool}_{{key}}", owner=_POOLS, process=Process.WORKER, thread=True,
            what=f"{_work}, earliest deadline first, at niceness +5 over the clock",
            ends="`Engine.stop` (queued jobs cancelled; an extra thread leaves when idle)")
declare("{key}-monitor", owner=_POOLS, process=Process.WORKER, thread=True,
        what="a pool's watch for threads stuck in the kernel (it then adds one)",
        ends="the pool's shutdown")


class Engine:
    """Everything of one worker: see the module docstring.

    Args:
        settings: the engine's settings (the front's, passed on).
        hub: where the session manager's bytes go (the front).
        jobs: where yt-dlp jobs run (the front's resolution pool).
        complexity: the libopus complexity transcoding sessions encode with now
            (the front steps it down under load).
        thread_niceness: added to the niceness of the pools' threads, so that the
            event loop (the clock) wins the CPU against the engine's own codec work.
        codec_threads: codec threads when the settings leave it to the engine
            (``ENGINE_CODEC_WORKERS`` 0): the worker's share of the cores.
    """

    version = VERSION

    def __init__(self, settings: EngineSettings, *, hub: Hub, jobs: JobRunner,
                 complexity: ComplexityDial | None = None, thread_niceness: int = 0,
                 codec_threads: int = 1) -> None:
        self.settings = settings
        self.hub = hub
        #: Loudness normalization every session gets unless its filters say otherwise.
        self.default_loudness = (Loudness(target=settings.loudness_target)
                                 if settings.loudness_target is not None else None)
        self.complexity = complexity or ComplexityDial(settings.opus_complexity)
        self.metrics = EngineMetrics()
        self.read_pool = ElasticPool(
            settings.read_workers, max(settings.read_workers, settings.io_workers_max),
            name="engine-read", niceness=thread_niceness,
        )
        self.open_pool = ElasticPool(
            settings.open_workers, max(settings.open_workers, settings.io_workers_max),
            name="engine-open", niceness=thread_niceness,
        )
        codec = settings.codec_workers or codec_threads
        self.codec_pool = ElasticPool(codec, codec, name="engine-codec",
                                      niceness=thread_niceness)
        policy = UrlPolicy(settings.media_dir, settings.allow_private_networks,
                           settings.endpoints)
        self.egress = EgressProxy(
            policy, on_refusal=lambda reason: self.metrics.egress_refusals.labels(reason).inc()
        )
        self.resolver = Resolver(
            jobs,
            self.egress,
            policy=policy,
            job_bytes=settings.resolve_max_bytes,
            probe_timeout=settings.open_timeout,
            index_bytes=settings.index_memory,
        )
        self.memory = MemoryReleaser(self.open_pool)
        self.manager = SessionManager(
            on_session_end=self.memory.session_ended,
            hub=hub,
            resolver=self.resolver,
            read_pool=self.read_pool,
            open_pool=self.open_pool,
            codec_pool=self.codec_pool,
            metrics=self.metrics,
            settings=settings,
            timing=settings.timing,
            complexity=self.complexity,
            default_loudness=self.default_loudness,
        )
        #: Worst tick lateness since the last report.
        self._worst_lateness = 0.0
        self.metrics.watch(self._snapshot)
        self.started_at = time.monotonic()
        self._schedule: TickSchedule | None = None
        self.last_tick_at: float | None = None
        #: The bare pipeline's cost here, µs per frame, once timed (``start``).
        self.bare_micros: float | None = None
        self._stopping = asyncio.Event()
        self._run_done = asyncio.Event()
        self._running = False
        self._stopped = False
        #: How the clock's thread is scheduled, in words (set by the process that runs
        #: the engine: ``audiogate.scheduling``).
        self.clock_scheduling = "normal"

    async def start(self, *, calibrate: bool = False) -> None:
        """Start the egress proxy (loopback, a free port); with *calibrate*, time the
        bare codec pipeline first (``audio.calibrate``, about 50 ms of CPU, in a
        thread), for the front's cost model."""
        await self.egress.start()
        if calibrate:
            self.bare_micros = await asyncio.to_thread(
                lambda: bare_pipeline_cost(mp3_tone(1.0)))

    async def run(self, report: Callable[[WorkerReport], None] | None = None) -> None:
        """Run the 20 ms clock, the idle reaper and the load reporter (calling
        *report* every ``LOAD_INTERVAL``) until ``stop``.

        Raises whatever ends one of them (a bug: fatal for the process). Cancelling
        is safe.
        """
        self._running = True
        try:
            loop = asyncio.get_running_loop()
            self._schedule = TickSchedule(loop.time())
            async with asyncio.TaskGroup() as tasks:
                clock = tasks.create_task(
                    run_clock(self._tick, schedule=self._schedule), name=CLOCK.name)
                reaper = tasks.create_task(self._reap_idle(), name=IDLE_REAPER.name)
                sampler = tasks.create_task(self._report(report), name=LOAD_REPORTER.name)
                await self._stopping.wait()
                clock.cancel()
                reaper.cancel()
                sampler.cancel()
        finally:
            self._run_done.set()

    def _tick(self, index: int, lateness: float) -> None:
        self.last_tick_at = time.monotonic()
        self._worst_lateness = max(self._worst_lateness, lateness)
        slipped = self._schedule.slipped if self._schedule else 0
        self.manager.tick(index, lateness)
        if self._schedule is not None and self._schedule.slipped != slipped:
            self.metrics.clock_slips.inc(self._schedule.slipped - slipped)

    async def _report(self, report: Callable[[WorkerReport], None] | None) -> None:
        while True:
            sample = self.sample()
            if report is not None:
                report(sample)
            await asyncio.sleep(LOAD_INTERVAL)

    def sample(self) -> WorkerReport:
        """The worker's state now (resets the worst lateness)."""
        now = time.monotonic()
        lateness, self._worst_lateness = self._worst_lateness, 0.0
        manager = self.manager
        return WorkerReport(
            at=now,
            cpu_seconds=time.process_time(),
            ticks=manager.ticks,
            slipped=self._schedule.slipped if self._schedule else 0,
            nulled=manager.total_underruns,
            frames_sent=manager.total_frames_sent,
            lateness=lateness,
            pool_lag=max(pool.overdue(now) for pool in (self.read_pool, self.codec_pool)),
            last_tick_at=self.last_tick_at,
            rss_mb=rss_megabytes(),
            bare_micros=self.bare_micros,
            sessions={s.id: self.snapshot(s) for s in manager.sessions if s.live},
            ended=frozenset(s.id for s in manager.sessions if not s.live),
        )

    def snapshot(self, session: Session) -> SessionSnapshot:
        """What the front keeps of *session* (see ``SessionSnapshot``)."""
        return SessionSnapshot(
            play_id=session.play_id, position=session.position, paused=session.paused,
            ready_sent=session.ready_sent, serial=session.serial,
            granule=session.granule, sequence=session.sequence,
            passthrough=session.passthrough, filters=self.active_filters(session))

    async def _reap_idle(self) -> None:
        interval = min(60.0, self.settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.manager.reap_idle()

    def readiness(self) -> list[str]:
        """Why this worker cannot take work now (empty: ready)."""
        reasons = []
        if self._stopping.is_set():
            reasons.append("shutting down")
        if self.last_tick_at is None:
            reasons.append("the clock has not started")
        else:
            silent = time.monotonic() - self.last_tick_at
            if silent > CLOCK_STALL_SECONDS:
                reasons.append(f"the clock has not ticked for {silent:.1f} s")
        return reasons

    async def stop(self) -> None:
        """End sessions (``finished`` with reason ``shutdown``), stop the clock, the
        egress proxy and the pools. Idempotent; cancelling leaves the rest to
        ``close_now``."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        await self.manager.close()
        await self.memory.close()
        if self._running:
            await self._run_done.wait()
        await self.close_now()

    async def close_now(self) -> None:
        """What ``stop`` did not get to: close the egress proxy, stop taking pool jobs
        (queued ones are cancelled). Idempotent."""
        self._stopping.set()
        await self.egress.close()
        for pool in (self.read_pool, self.open_pool, self.codec_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- statistics ----------------------------------------------------------------

    def _snapshot(self) -> dict[str, object]:
        sessions = self.manager.sessions
        return {
            "sessions_by_state": dict(self.manager.counts()),
            "passthrough": sum(1 for s in sessions if s.live and s.passthrough),
        }

    def health(self) -> dict[str, object]:
        """This worker's part of ``/health`` (the front adds them up)."""
        sessions = self.manager.sessions
        live = [s for s in sessions if s.live]
        return {
            "sessions_total": len(sessions),
            "sessions_active": len(live),
            "sessions_playing": sum(1 for s in live if s.status is SessionState.STREAMING),
            "sessions_by_state": dict(self.manager.counts()),
            "passthrough_sessions": sum(1 for s in live if s.passthrough),
            "ticks": self.manager.ticks,
            "clock_scheduling": self.clock_scheduling,
            "clock_slipped_ticks": self._schedule.slipped if self._schedule else 0,
            "frames_sent": self.manager.total_frames_sent,
            "underruns": self.manager.total_underruns,
            "cpu_seconds": round(time.process_time(), 3),
            "rss_mb": round(rss_megabytes(), 2),
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "open_fds": open_fds(),
            "egress": {"connections": self.egress.connections, "grants": self.egress.grants},
            "opus_complexity": self.complexity.level,
            "memory": {"releases": self.memory.releases,
                       "released_mb": round(self.memory.released_bytes / 2**20, 1)},
            "pools": {
                pool.name: {
                    "threads": pool.size,
                    "queued": pool.queued,
                    "jobs": pool.jobs_done,
                    "late_jobs": pool.late_jobs,
                    "wait_seconds": pool.wait_seconds,
                    "run_seconds": pool.run_seconds,
                }
                for pool in (self.read_pool, self.open_pool, self.codec_pool)
            },
            "frame_stats": self._frame_stats(),
        }

    def active_filters(self, session: Session) -> tuple[str, ...]:
        """The filters a session's audio goes through now (its volume and the default
        loudness included), by Lavalink's names."""
        return effective_filters(session.filters, volume=session.volume,
                                 loudness_default=session.loudness_default,
                                 default_loudness=self.default_loudness).active()

    def _frame_stats(self) -> tuple[int, int, int, int] | None:
        last = self.manager.frame_stats.last
        if last is None or not last.players:
            return None
        return (last.sent, last.nulled, last.deficit, last.players)
