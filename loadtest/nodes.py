"""Capacity of several engine processes together (engine nodes on one machine).

The same method as ``run_capacity`` (Lavamark's): sessions are added in steps
until more than the allowed share of pages arrive late or a session fails; the
last good total is the capacity. A step whose window is late is measured once
more before it counts as failed: on a machine shared with other work, one
window can catch someone else's burst. Sessions are spread evenly over the engines
(session *i* plays on engine ``i % N``), each engine has its own probe process
on its socket and its own play workers, and the engines' CPU is summed.

Everything runs on the one machine: with N engines there are N probes too, so
the figures are for engines and measurement together, as for one engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.probe import ProbeHandle, start_probe
from loadtest.runner import (
    CapacityStep,
    LoadConfig,
    Progress,
    Target,
    _build_report,
    _plays,
    _quiet,
    _Sampler,
    _stop_all,
    _underruns,
    _Workers,
)
from loadtest.stats import Summary, summarize

__all__ = ["NodesCapacityReport", "run_capacity_nodes"]


@dataclass
class NodesCapacityReport:
    """Every step over all engines, the last good total, and per-engine CPU."""

    engines: int
    steps: list[CapacityStep]
    capacity: int
    late_limit: float
    #: Mean CPU % of each engine at the last good step (100 = one core).
    cpu_at_capacity: list[float]


class _Node:
    """One engine's probe, play workers and CPU sampler."""

    def __init__(self, target: Target, workers: int) -> None:
        self.target = target
        self.probe: ProbeHandle = start_probe(target.socket_path)
        self.workers = _Workers(target.api_url, workers)
        self.sampler = _Sampler(target.pid)
        self.ids: list[str] = []
        self.sent: dict[str, tuple[float, int, str]] = {}

    def close(self) -> None:
        self.workers.close()
        self.probe.stop()


def _merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    sessions: dict[str, Any] = {}
    for report in reports:
        sessions.update(report["sessions"])
    return {"sessions": sessions}


def run_capacity_nodes(targets: Sequence[Target], config: LoadConfig, *, step: int,
                       start: int = 0, max_sessions: int = 5000, late_limit: float = 0.01,
                       workers_per_engine: int = 2,
                       progress: Progress = _quiet) -> NodesCapacityReport:
    """Add *step* sessions at a time over all *targets* (first step: *start*)
    until more than *late_limit* of the pages of a window are late, a session
    fails, or *max_sessions* is reached."""
    nodes = [_Node(target, workers_per_engine) for target in targets]
    steps: list[CapacityStep] = []
    capacity = 0
    cpu_at_capacity = [0.0] * len(nodes)
    total = 0
    try:
        count = start or step
        while count <= max_sessions:
            plays = _plays(config, total, count - total)
            shares: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in nodes]
            for index, play in enumerate(plays):
                shares[(total + index) % len(nodes)].append(play)
            total = count
            progress(f"{count} sessions on {len(nodes)} engines: starting", 0.0)
            for node, share in zip(nodes, shares, strict=True):
                node.ids += [session_id for session_id, _ in share]
                node.sent.update(node.workers.play(share))
            _wait(nodes, config.settle)
            current = _measure(nodes, config, count, progress)
            if current.good and current.report.late_fraction > late_limit:
                # One late window on a shared machine may be someone else's burst:
                # the step fails only if a second window, right after, is late too.
                current = _measure(nodes, config, count, progress)
            steps.append(current)
            if not current.good or current.report.late_fraction > late_limit:
                break
            capacity = count
            cpu_at_capacity = [
                sum(n.sampler.cpu) / len(n.sampler.cpu) if n.sampler.cpu else 0.0
                for n in nodes]
            count += step
        for node in nodes:
            _stop_all(node.target.api_url, node.ids)
        return NodesCapacityReport(len(nodes), steps, capacity, late_limit, cpu_at_capacity)
    finally:
        for node in nodes:
            node.close()


def _measure(nodes: Sequence[_Node], config: LoadConfig, count: int,
             progress: Progress) -> CapacityStep:
    """One measured window over every engine."""
    before = [_underruns(node.target.api_url) for node in nodes]
    for node in nodes:
        node.probe.start_window()
        node.sampler.cpu.clear()
        node.sampler.rss.clear()
    _wait(nodes, config.window, progress, f"{count} sessions: measuring")
    after = [_underruns(node.target.api_url) for node in nodes]
    pairs = [(a, b) for a, b in zip(after, before, strict=True)
             if a is not None and b is not None]
    underruns = sum(a - b for a, b in pairs) if len(pairs) == len(nodes) else None
    merged = _merge([node.probe.report() for node in nodes])
    sent = {k: v for node in nodes for k, v in node.sent.items()}
    ids = [i for node in nodes for i in node.ids]
    report = _build_report(merged, sent, ids, config.late_threshold,
                           _Sampler(None), underruns, None, config.window)
    report.cpu_percent = _sum_cpu(nodes)
    return CapacityStep(count, report)


def _sum_cpu(nodes: Sequence[_Node]) -> Summary:
    means = [sum(n.sampler.cpu) / len(n.sampler.cpu) for n in nodes if n.sampler.cpu]
    return summarize([sum(means)]) if means else summarize([])


def _wait(nodes: Sequence[_Node], seconds: float, progress: Progress = _quiet,
          label: str = "") -> None:
    """Sample every engine's CPU every half second for *seconds*."""
    for node in nodes:
        node.sampler.sample()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        progress(label, elapsed / seconds)
        time.sleep(min(0.5, seconds - elapsed))
        for node in nodes:
            node.sampler.sample()
    progress(label, 1.0)
