"""The engine: its parts, how they start, and how they stop.

``Engine`` wires the session manager, the consumer hub (Unix socket), the
resolver and the worker pools, and runs the single 20 ms clock and the idle
reaper (``run``). The process around it (the HTTP server, signals, the order
and deadline of shutdown) is assembled by ``audiogate.engine_process``.

``stop`` ends every session (``finished`` events go out), stops the clock,
closes the consumer connections after flushing and removes the socket file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from audio_engine.metrics import EngineMetrics
from audio_engine.sessions.admission import (
    LOAD_INTERVAL,
    Headroom,
    LoadModel,
    LoadSample,
    PlayRefusal,
)
from audio_engine.sessions.manager import ManagerLimits, SessionManager
from audio_engine.sessions.memory import MemoryReleaser
from audio_engine.sessions.pools import ElasticPool
from audio_engine.sessions.session import Session, SessionState, effective_filters
from audio_engine.settings import EngineSettings
from audio_engine.sources.egress import EgressProxy
from audio_engine.sources.resolve_pool import ResolvePool, WorkerLimits
from audio_engine.sources.resolver import Resolver
from audio_engine.sources.url_policy import UrlPolicy
from audio_engine.wire.clock import TickSchedule, run_clock
from audio_engine.wire.consumers import ConsumerHub
from audio_engine.wire.ordering import TimingPolicy
from protocol.filters import Loudness

__all__ = ["CLOCK_STALL_SECONDS", "FEATURES", "Engine"]

log = logging.getLogger(__name__)

#: A clock whose last tick is older than this is stalled: the engine is not ready.
#: 50 ticks; a loop that cannot tick for a second is sending nobody audio.
CLOCK_STALL_SECONDS = 1.0

try:
    _VERSION = version("audiogate")
except PackageNotFoundError:  # running from a source tree without installing
    _VERSION = "0.0.0"


def _rss_megabytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        import resource  # a fallback off Linux only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


#: What this engine does beyond the Go engine's API, listed in ``/health`` as
#: ``features`` (an engine whose ``/health`` has none is a Go engine): play ids on
#: events and ``X-Play-Id``, live volume and seek, the consumer hello, ``finished``
#: events with a ``reason``, Lavalink's filters (``/session/{id}/filters``), the next
#: track of a gapless queue (``/session/{id}/next``) and crossfades between tracks.
FEATURES = ("play_id", "volume", "seek", "hello", "finish_reason", "filters", "next_track",
            "crossfade")


def _busy(seconds: float) -> None:
    """Hold the thread (and the GIL, as real work would) for *seconds*."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Engine:
    """Everything of one engine except its HTTP server."""

    version = _VERSION

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        #: Loudness normalization every session gets unless its filters say otherwise.
        self.default_loudness = (Loudness(target=settings.loudness_target)
                                 if settings.loudness_target is not None else None)
        self.metrics = EngineMetrics()
        self.metrics.sessions_gauge.set(settings.max_sessions)
        self.read_pool = ElasticPool(
            settings.read_workers, max(settings.read_workers, settings.io_workers_max),
            name="engine-read",
        )
        self.open_pool = ElasticPool(
            settings.open_workers, max(settings.open_workers, settings.io_workers_max),
            name="engine-open",
        )
        self.codec_pool = ElasticPool(
            settings.codec_workers, settings.codec_workers, name="engine-codec"
        )
        policy = UrlPolicy(settings.media_dir, settings.allow_private_networks,
                           settings.endpoints)
        self.egress = EgressProxy(
            policy, on_refusal=lambda reason: self.metrics.egress_refusals.labels(reason).inc()
        )
        self.resolve_pool = ResolvePool(
            WorkerLimits(
                slots=settings.max_resolutions,
                per_caller=settings.per_caller_resolutions,
                deadline=settings.resolve_timeout,
                queue_wait=settings.resolve_timeout,
                memory_mb=settings.resolve_memory_mb,
            ),
            on_outcome=lambda outcome: self.metrics.resolve_jobs.labels(outcome).inc(),
        )
        self.hub = ConsumerHub(
            self.metrics,
            queue_limit=settings.consumer_queue_bytes,
            stall_seconds=settings.consumer_stall_seconds,
        )
        self.resolver = Resolver(
            self.resolve_pool,
            self.egress,
            policy=policy,
            job_bytes=settings.resolve_max_bytes,
            probe_timeout=settings.open_timeout,
            index_bytes=settings.index_memory,
        )
        self.memory = MemoryReleaser(self.open_pool)
        self.manager = SessionManager(
            on_session_end=self.memory.session_ended,
            hub=self.hub,
            resolver=self.resolver,
            read_pool=self.read_pool,
            open_pool=self.open_pool,
            codec_pool=self.codec_pool,
            metrics=self.metrics,
            limits=ManagerLimits(
                max_sessions=settings.max_sessions,
                idle_timeout=settings.idle_timeout,
                stuck_threshold=settings.stuck_threshold,
                source_retries=settings.source_retries,
                opus_complexity=settings.opus_complexity,
                opus_encoder=settings.opus_encoder,
                open_timeout=settings.open_timeout,
                read_timeout=settings.read_timeout,
                index_bytes=settings.index_memory,
                default_loudness=self.default_loudness,
            ),
            timing=TimingPolicy(
                event_margin=settings.event_margin_ms / 1000,
                first_audio_margin=settings.first_audio_margin_ms / 1000,
            ),
        )
        budget = settings.cpu_budget or float(_usable_cores())
        self.load = LoadModel(budget=budget, max_load=settings.max_load,
                              session_cpu=settings.debug_session_cpu)
        #: Worst tick lateness since the last load sample.
        self._worst_lateness = 0.0
        self.metrics.watch(self._snapshot)
        self.started_at = time.monotonic()
        self._process = psutil.Process()
        self._schedule: TickSchedule | None = None
        self._last_tick_at: float | None = None
        self._stopping = asyncio.Event()
        self._run_done = asyncio.Event()
        self._running = False
        self._stopped = False

    async def start(self, listener: socket.socket, path: Path, *,
                    tcp: socket.socket | None = None, tls: ssl.SSLContext | None = None
                    ) -> None:
        """Start the egress proxy (loopback, a free port) and accept socket
        consumers on *listener* (a Unix socket bound to *path*; the engine owns
        it from here and removes *path* on ``stop``) and, when given, on *tcp*
        (a bound TCP socket; TLS with *tls*), where each consumer must present
        the settings' token in its hello first."""
        await self.egress.start()
        await self.hub.start(listener, path)
        if tcp is not None:
            token = self.settings.consumer_token
            if token is None:
                raise ValueError("a TCP socket needs ENGINE_NODE_TOKEN or ENGINE_API_TOKEN")
            await self.hub.start_tcp(tcp, token=token,
                                     hello_timeout=self.settings.hello_timeout, tls=tls)

    async def run(self) -> None:
        """Run the 20 ms clock and the idle reaper until ``stop``.

        Raises whatever ends the clock or the reaper (a bug: fatal for the
        process). Cancelling is safe.
        """
        self._running = True
        try:
            loop = asyncio.get_running_loop()
            self._schedule = TickSchedule(loop.time())
            async with asyncio.TaskGroup() as tasks:
                clock = tasks.create_task(
                    run_clock(self._tick, schedule=self._schedule), name="clock")
                reaper = tasks.create_task(self._reap_idle(), name="idle-reaper")
                sampler = tasks.create_task(self._sample_load(), name="load-sampler")
                await self._stopping.wait()
                clock.cancel()
                reaper.cancel()
                sampler.cancel()
        finally:
            self._run_done.set()

    def _tick(self, index: int, lateness: float) -> None:
        self._last_tick_at = time.monotonic()
        self._worst_lateness = max(self._worst_lateness, lateness)
        slipped = self._schedule.slipped if self._schedule else 0
        self.manager.tick(index, lateness)
        if self._schedule is not None and self._schedule.slipped != slipped:
            self.metrics.clock_slips.inc(self._schedule.slipped - slipped)
        stall = self.settings.debug_loop_stall_ms
        if stall and index % self.settings.debug_loop_stall_every == 0:
            _busy(stall / 1000)

    async def _sample_load(self) -> None:
        while True:
            self.load.add(self._load_sample())
            await asyncio.sleep(LOAD_INTERVAL)

    def _load_sample(self) -> LoadSample:
        now = time.monotonic()
        lateness, self._worst_lateness = self._worst_lateness, 0.0
        return LoadSample(
            at=now,
            cpu_seconds=time.process_time(),
            playing=sum(1 for s in self.manager.sessions
                        if s.live and s.status is SessionState.STREAMING),
            ticks=self.manager.ticks,
            slipped=self._schedule.slipped if self._schedule else 0,
            nulled=self.manager.total_underruns,
            lateness=lateness,
            pool_lag=max(pool.overdue(now) for pool in (self.read_pool, self.codec_pool)),
        )

    def _active_sessions(self) -> int:
        """Live, unpaused sessions: what a faked per-session cost is counted on
        (0 when the CPU is measured: the count is not needed, and a burst of
        plays would pay for it on every play)."""
        if self.load.session_cpu <= 0:
            return 0
        return sum(1 for s in self.manager.sessions if s.live and not s.paused)

    def headroom(self) -> Headroom:
        """The load over the last few seconds (admission by load, ``/stats``)."""
        return self.load.headroom(self._active_sessions())

    def play_refusal(self, session_id: str) -> PlayRefusal | None:
        """Why a play of *session_id* must be refused for load, or None. A play
        that replaces a live session adds none and is never refused for load."""
        if self.load.max_load >= 1.0:
            return None
        old = self.manager.get(session_id)
        if old is not None and old.live:
            return None
        refusal = self.load.refusal(self._active_sessions())
        if refusal is not None:
            self.metrics.plays_refused.labels("load").inc()
        return refusal

    async def _reap_idle(self) -> None:
        interval = min(60.0, self.settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.manager.reap_idle()

    def readiness(self) -> list[str]:
        """Why the engine cannot take work now (empty: ready): shutting down,
        the socket not listening, the clock not started or stalled."""
        reasons = []
        if self._stopping.is_set():
            reasons.append("shutting down")
        if not self.hub.listening:
            reasons.append("the audio socket is not listening")
        if self._last_tick_at is None:
            reasons.append("the clock has not started")
        else:
            silent = time.monotonic() - self._last_tick_at
            if silent > CLOCK_STALL_SECONDS:
                reasons.append(f"the clock has not ticked for {silent:.1f} s")
        return reasons

    async def stop(self) -> None:
        """End sessions, stop the clock, close the socket, stop the pools.
        Idempotent; cancelling leaves the rest to ``close_now``."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        # Resolution workers first: they are killed, never waited for.
        await self.resolve_pool.close()
        await self.manager.close()
        await self.memory.close()
        if self._running:
            await self._run_done.wait()
        await self.close_now()

    async def close_now(self) -> None:
        """What ``stop`` did not get to when it ran out of time, or after a crash
        (also its last step): kill the resolution workers, close the egress proxy,
        flush and close the consumers (removing the socket file), stop taking
        pool jobs (queued ones are cancelled). Idempotent; waits at most the
        resolution pool's 2 s for its killed workers."""
        self._stopping.set()
        await self.resolve_pool.close()
        await self.egress.close()
        await self.hub.close()
        for pool in (self.read_pool, self.open_pool, self.codec_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- statistics ----------------------------------------------------------------

    def _snapshot(self) -> dict[str, object]:
        sessions = self.manager.sessions
        return {
            "sessions_by_state": dict(self.manager.counts()),
            "consumers": len(self.hub.consumers),
            "consumers_any_order": sum(1 for c in self.hub.consumers if c.any_order),
            "consumer_queues": {c.name: c.queued_bytes for c in self.hub.consumers},
            "passthrough": sum(1 for s in sessions if s.live and s.passthrough),
        }

    def health(self) -> dict[str, Any]:
        """``/health``: the Go engine's fields first, then ours."""
        sessions = self.manager.sessions
        live = [s for s in sessions if s.live]
        playing = [s for s in live if s.status is SessionState.STREAMING]
        return {
            "status": "ok",
            "uptime_seconds": int(time.monotonic() - self.started_at),
            "ram_mb": f"{_rss_megabytes():.2f}",
            "sessions_active": len(live),
            "sessions_playing": len(playing),
            "engine": "audiogate",
            "version": self.version,
            "features": list(FEATURES),
            "sessions_total": len(sessions),
            "sessions_by_state": dict(self.manager.counts()),
            "passthrough_sessions": sum(1 for s in live if s.passthrough),
            "consumers": len(self.hub.consumers),
            "consumers_any_order": sum(1 for c in self.hub.consumers if c.any_order),
            "ticks": self.manager.ticks,
            "clock_slipped_ticks": self._schedule.slipped if self._schedule else 0,
            "frames_sent": self.manager.total_frames_sent,
            "underruns": self.manager.total_underruns,
            "max_sessions": self.settings.max_sessions,
            "cpu_seconds": round(time.process_time(), 3),
            "frameStats": self._frame_stats(),
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "open_fds": _open_fds(),
            "resolution": {
                "workers": self.resolve_pool.workers,
                "running": self.resolve_pool.running,
                "waiting": self.resolve_pool.waiting,
                "workers_started": self.resolve_pool.started,
                "workers_killed": self.resolve_pool.killed,
            },
            "egress": {"connections": self.egress.connections, "grants": self.egress.grants},
            "memory": {"releases": self.memory.releases,
                       "released_mb": round(self.memory.released_bytes / 2**20, 1)},
            "pools": {
                pool.name: {
                    "threads": pool.size,
                    "queued": pool.queued,
                    "jobs": pool.jobs_done,
                    "late_jobs": pool.late_jobs,
                    "wait_ms_mean": round(1000 * pool.wait_seconds / max(1, pool.jobs_done), 3),
                    "run_ms_mean": round(1000 * pool.run_seconds / max(1, pool.jobs_done), 3),
                }
                for pool in (self.read_pool, self.open_pool, self.codec_pool)
            },
        }

    def active_filters(self, session: Session) -> tuple[str, ...]:
        """The filters a session's audio goes through now (its volume and the default
        loudness included), by Lavalink's names."""
        return effective_filters(session.filters, volume=session.volume,
                                 loudness_default=session.loudness_default,
                                 default_loudness=self.default_loudness).active()

    def _frame_stats(self) -> dict[str, int] | None:
        last = self.manager.frame_stats.last
        if last is None or not last.players:
            return None
        return {"sent": last.sent, "nulled": last.nulled, "deficit": last.deficit}

    def lavalink_stats(self) -> dict[str, Any]:
        """``/stats`` in Lavalink's shape, for node balancers written for it."""
        live = [s for s in self.manager.sessions if s.live]
        memory = psutil.virtual_memory()
        rss = self._process.memory_info().rss
        cores = psutil.cpu_count() or 1
        return {
            "players": len(live),
            "playingPlayers": sum(1 for s in live if s.status is SessionState.STREAMING),
            "uptime": int((time.monotonic() - self.started_at) * 1000),
            "memory": {"free": memory.available, "used": rss, "allocated": rss,
                       "reservable": memory.total},
            "cpu": {
                "cores": cores,
                "systemLoad": round(psutil.cpu_percent(interval=None) / 100, 4),
                "lavalinkLoad": round(self._process.cpu_percent(interval=None) / 100 / cores, 4),
            },
            "frameStats": self._frame_stats(),
            "headroom": self._headroom_view(),
        }

    def _headroom_view(self) -> dict[str, Any]:
        """Ours, beside Lavalink's keys: the admission inputs over the last few
        seconds, for a pool that places sessions faster than per-minute stats."""
        room = self.headroom()
        refusal = self.load.refusal(self._active_sessions())
        return {
            "load": round(room.load, 4),
            "sessionCost": round(room.session_cost, 5),
            "maxLoad": self.load.max_load,
            "cpuBudget": self.load.budget,
            "admitting": refusal is None,
            "tickLatenessMs": round(room.tick_lateness * 1000, 2),
            "poolLagMs": round(room.pool_lag * 1000, 2),
            "nulled": room.nulled,
            "deficit": room.deficit,
            "expectedFrames": room.expected_frames,
            "windowSeconds": round(room.seconds, 2),
        }
