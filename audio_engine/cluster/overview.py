"""The engine seen whole: ``/health``, ``/stats``, ``/metrics`` and every session's view,
gathered from the live workers and added to the front's own facts.

Each answer asks every live worker at once and waits at most the front's call timeout;
a worker that fails or does not answer in time is left out of that answer (its
sessions are being moved, or it is stuck and about to be killed), so one bad worker
never holds up a health check. The sums themselves are ``stats``'s (pure); this is the
part that asks.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psutil

from audio_engine.cluster.governor import LoadGovernor
from audio_engine.cluster.pool import WorkerPool
from audio_engine.cluster.reports import FEATURES, VERSION, open_fds, rss_megabytes
from audio_engine.cluster.stats import frame_stats, pools_view, sum_parts
from audio_engine.metrics import EngineMetrics, merged_exposition
from audio_engine.settings import EngineSettings
from audio_engine.sources.resolve_pool import ResolvePool
from audio_engine.wire.consumers import ConsumerHub
from audio_engine.wire.ordering import TimingPolicy

__all__ = ["Overview"]


class Overview:
    """See the module docstring. Reads its parts, changes none of them.

    Args:
        settings: the engine's settings.
        metrics: the front's metrics (its registry heads ``/metrics``).
        hub: the socket consumers.
        pool: the worker processes (the live ones are asked).
        resolve_pool: the front's resolution workers.
        governor: the load governor (complexity, budget, headroom).
        timing: the Node-safe margins (shown as they are now).
        within: seconds each worker has to answer.
    """

    def __init__(self, settings: EngineSettings, metrics: EngineMetrics, hub: ConsumerHub,
                 pool: WorkerPool, resolve_pool: ResolvePool, governor: LoadGovernor,
                 timing: TimingPolicy, *, within: float) -> None:
        self._settings = settings
        self._metrics = metrics
        self._hub = hub
        self._pool = pool
        self._resolve_pool = resolve_pool
        self._governor = governor
        self._timing = timing
        self._within = within
        self.started_at = time.monotonic()
        #: How the front's event loop thread is scheduled, in words (set by the
        #: process: ``audiogate.scheduling``).
        self.clock_scheduling = "normal"

    def snapshot(self) -> dict[str, object]:
        """The front's own gauges for ``/metrics`` (consumers, their queues, workers)."""
        consumers = self._hub.consumers
        return {
            "consumers": len(consumers),
            "consumers_any_order": sum(1 for c in consumers if c.any_order),
            "consumer_queues": {c.name: c.queued_bytes for c in consumers},
            "workers": len(self._pool.live()),
        }

    async def _gather(self, method: str) -> list[Any]:
        """Every live worker's answer to *method* (a worker that fails is left out)."""
        results = await asyncio.gather(
            *(w.call(method, within=self._within) for w in self._pool.live()),
            return_exceptions=True)
        return [r for r in results if not isinstance(r, BaseException)]

    async def views(self) -> list[dict[str, Any]]:
        """Every live session's view, worker after worker."""
        views: list[dict[str, Any]] = []
        for part in await self._gather("views"):
            views.extend(part)
        return views

    async def metrics_text(self) -> bytes:
        """``/metrics``: the front's metrics and every worker's, added up."""
        return merged_exposition(self._metrics.registry, await self._gather("metrics"))

    async def health(self) -> dict[str, Any]:
        """``/health``: the Go engine's fields first, then ours."""
        parts = await self._gather("health")
        total = sum_parts(parts)
        live = self._pool.live()
        rss = rss_megabytes() + sum(w.report.rss_mb for w in live if w.report is not None)
        consumers = self._hub.consumers
        resolve_pool = self._resolve_pool
        return {
            "status": "ok",
            "uptime_seconds": int(time.monotonic() - self.started_at),
            "ram_mb": f"{rss:.2f}",
            "sessions_active": total.get("sessions_active", 0),
            "sessions_playing": total.get("sessions_playing", 0),
            "engine": "audiogate",
            "version": VERSION,
            "features": list(FEATURES),
            "workers": len(live),
            "worker_pids": [w.pid for w in live],
            "sessions_total": total.get("sessions_total", 0),
            "sessions_by_state": total.get("sessions_by_state", {}),
            "passthrough_sessions": total.get("passthrough_sessions", 0),
            "consumers": len(consumers),
            "consumers_any_order": sum(1 for c in consumers if c.any_order),
            "ticks": max((p.get("ticks", 0) for p in parts), default=0),
            "clock_scheduling": {"front": self.clock_scheduling,
                                 "workers": [p.get("clock_scheduling", "") for p in parts]},
            "clock_slipped_ticks": total.get("clock_slipped_ticks", 0),
            # The Node-safe margins now (stretched by the host's CPU pressure).
            "margins_ms": {"event": round(self._timing.event_delay(True) * 1000, 1),
                           "first_audio": round((self._timing.audio_delay(True) or 0.0)
                                                * 1000, 1)},
            "frames_sent": total.get("frames_sent", 0),
            "underruns": total.get("underruns", 0),
            "max_sessions": self._settings.max_sessions,
            "cpu_seconds": round(time.process_time() + total.get("cpu_seconds", 0.0), 3),
            "opus_complexity": self._governor.complexity,
            "frameStats": frame_stats(parts),
            "tasks": len(asyncio.all_tasks()) + total.get("tasks", 0),
            "threads": threading.active_count() + total.get("threads", 0),
            "open_fds": open_fds() + total.get("open_fds", 0),
            "resolution": {
                "workers": resolve_pool.workers,
                "running": resolve_pool.running,
                "waiting": resolve_pool.waiting,
                "workers_started": resolve_pool.started,
                "workers_killed": resolve_pool.killed,
            },
            "egress": total.get("egress", {"connections": 0, "grants": 0}),
            "memory": total.get("memory", {"releases": 0, "released_mb": 0.0}),
            "pools": pools_view(total.get("pools", {})),
        }

    async def stats(self) -> dict[str, Any]:
        """``/stats`` in Lavalink's shape, for node balancers written for it."""
        parts = await self._gather("health")
        total = sum_parts(parts)
        memory = psutil.virtual_memory()
        rss = int((rss_megabytes() + sum(p.get("rss_mb", 0.0) for p in parts)) * 1024 * 1024)
        cores = psutil.cpu_count() or 1
        governor = self._governor
        room = governor.load.headroom()
        return {
            "players": total.get("sessions_active", 0),
            "playingPlayers": total.get("sessions_playing", 0),
            "uptime": int((time.monotonic() - self.started_at) * 1000),
            "memory": {"free": memory.available, "used": rss, "allocated": rss,
                       "reservable": memory.total},
            "cpu": {
                "cores": cores,
                "systemLoad": round(psutil.cpu_percent(interval=None) / 100, 4),
                "lavalinkLoad": round(room.load * governor.budget / cores, 4),
            },
            "frameStats": frame_stats(parts),
            "headroom": governor.headroom(),
        }
