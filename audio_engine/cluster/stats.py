"""The engine's ``/health`` and ``/stats`` assembled from the front's view and its
workers' parts (plain values in, dicts out)."""

from __future__ import annotations

from typing import Any

__all__ = ["frame_stats", "pools_view", "sum_parts"]


def sum_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the workers' ``health`` dicts (numbers summed, nested dicts too)."""
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, bool) or value is None or isinstance(value, tuple):
                continue
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                total[key] = sum_parts([total.get(key, {}), value])
    return total


def frame_stats(parts: list[dict[str, Any]]) -> dict[str, int] | None:
    """Lavalink's ``frameStats`` over every worker: per-player averages of the last
    minute, weighted by each worker's players (None while nobody plays)."""
    windows = [p["frame_stats"] for p in parts if p.get("frame_stats")]
    players = sum(w[3] for w in windows)
    if not players:
        return None
    return {key: round(sum(w[i] * w[3] for w in windows) / players)
            for i, key in enumerate(("sent", "nulled", "deficit"))}


def pools_view(pools: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The summed thread pools as ``/health`` shows them."""
    return {
        name: {
            "threads": pool["threads"],
            "queued": pool["queued"],
            "jobs": pool["jobs"],
            "late_jobs": pool["late_jobs"],
            "wait_ms_mean": round(1000 * pool["wait_seconds"] / max(1, pool["jobs"]), 3),
            "run_ms_mean": round(1000 * pool["run_seconds"] / max(1, pool["jobs"]), 3),
        }
        for name, pool in pools.items()
    }
