"""The engine's Prometheus metrics (served at ``/metrics``).

Counters are labelled by output format or reason, never by session id, so the
series count stays fixed however many sessions come and go; per-session numbers
are in ``GET /sessions``. The hot path (the 20 ms tick) adds to plain integers
and folds them into the counters once per tick.

Bucket edges are chosen around the 20 ms frame: tick lateness resolves the
sub-millisecond range where a healthy clock lives and the 20-40 ms range where a
consumer starts to hear gaps; time to first audio resolves the 20 ms steps
between a tick-aligned ``ready`` and the first page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "FRONT_ONLY",
    "RESOLUTION_BUCKETS",
    "TICK_LATENESS_BUCKETS",
    "TIME_TO_FIRST_AUDIO_BUCKETS",
    "EngineMetrics",
    "MetricFamilies",
    "families_of",
    "merged_exposition",
]

#: Seconds a tick ran after its deadline.
TICK_LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.1, 0.25)
#: Seconds from a play request to the session's first audio packet.
TIME_TO_FIRST_AUDIO_BUCKETS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Seconds to resolve a URL and open its source.
RESOLUTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class _Snapshot(Collector):
    """Gauges computed at scrape time from the engine's live state."""

    def __init__(self, read: Callable[[], dict[str, object]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        state = self._read()
        sessions = GaugeMetricFamily(
            "audiogate_engine_sessions", "Sessions held, by state", labels=["state"]
        )
        by_state = state.get("sessions_by_state", {})
        assert isinstance(by_state, dict)
        for name, count in by_state.items():
            sessions.add_metric([name], count)
        yield sessions
        consumers = GaugeMetricFamily(
            "audiogate_engine_consumers", "Socket consumers connected"
        )
        consumers.add_metric([], float(state.get("consumers", 0)))  # type: ignore[arg-type]
        yield consumers
        any_order = GaugeMetricFamily(
            "audiogate_engine_consumers_any_order",
            "Socket consumers whose hello said they take any order (no Node-safe margins)",
        )
        any_order.add_metric([], float(state.get("consumers_any_order", 0)))  # type: ignore[arg-type]
        yield any_order
        queue = GaugeMetricFamily(
            "audiogate_engine_consumer_queue_bytes",
            "Bytes waiting in each socket consumer's send queue",
            labels=["consumer"],
        )
        queues = state.get("consumer_queues", {})
        assert isinstance(queues, dict)
        for name, size in queues.items():
            queue.add_metric([name], size)
        yield queue
        passthrough = GaugeMetricFamily(
            "audiogate_engine_passthrough_sessions",
            "Sessions sending their source's Opus packets without re-encoding",
        )
        passthrough.add_metric([], float(state.get("passthrough", 0)))  # type: ignore[arg-type]
        yield passthrough
        if "workers" in state:
            workers = GaugeMetricFamily("audiogate_engine_workers",
                                        "Engine worker processes running")
            workers.add_metric([], float(state["workers"]))  # type: ignore[arg-type]
            yield workers


class EngineMetrics:
    """Every metric of one engine, in its own registry (so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_sent = Counter(
            "audiogate_engine_frames_sent", "20 ms frames sent to the socket", ["format"],
            registry=r,
        )
        self.underruns = Counter(
            "audiogate_engine_underruns",
            "Ticks on which a playing session had no frame ready", ["format"], registry=r,
        )
        self.frames_dropped = Counter(
            "audiogate_engine_frames_dropped",
            "Frames not delivered to a consumer, by reason", ["reason"], registry=r,
        )
        self.consumer_disconnects = Counter(
            "audiogate_engine_consumer_disconnects",
            "Socket consumers disconnected, by reason", ["reason"], registry=r,
        )
        self.session_errors = Counter(
            "audiogate_engine_session_errors", "Sessions ended by an error, by stage",
            ["stage"], registry=r,
        )
        self.source_retries = Counter(
            "audiogate_engine_source_retries", "Broken sources reopened at their position",
            registry=r,
        )
        self.plays = Counter(
            "audiogate_engine_plays", "Play requests accepted, by format", ["format"],
            registry=r,
        )
        self.plays_refused = Counter(
            "audiogate_engine_plays_refused",
            "Play requests refused before starting, by reason (load: 503, count: 429)",
            ["reason"], registry=r,
        )
        self.clock_slips = Counter(
            "audiogate_engine_clock_slipped_ticks",
            "Ticks skipped because the event loop stalled for more than 100 ms", registry=r,
        )
        self.tick_lateness = Histogram(
            "audiogate_engine_tick_lateness_seconds", "How late each 20 ms tick ran",
            buckets=TICK_LATENESS_BUCKETS, registry=r,
        )
        self.tick_duration = Histogram(
            "audiogate_engine_tick_duration_seconds", "Time spent inside one tick",
            buckets=TICK_LATENESS_BUCKETS, registry=r,
        )
        self.time_to_first_audio = Histogram(
            "audiogate_engine_time_to_first_audio_seconds",
            "From play request to the first audio packet", ["format"],
            buckets=TIME_TO_FIRST_AUDIO_BUCKETS, registry=r,
        )
        self.resolution = Histogram(
            "audiogate_engine_resolution_seconds",
            "Resolving a URL and opening its source", buckets=RESOLUTION_BUCKETS, registry=r,
        )
        self.reply_gate_timeouts = Counter(
            "audiogate_engine_reply_gate_timeouts",
            "Event lines written although their request's HTTP reply was never "
            "confirmed written (they waited the 2 s gate timeout)", registry=r,
        )
        self.resolve_jobs = Counter(
            "audiogate_engine_resolve_jobs",
            "Resolution jobs (yt-dlp, probes) by outcome: ok, error, timeout (worker "
            "killed), cancelled (caller gave up, worker killed), busy, crashed",
            ["outcome"], registry=r,
        )
        self.egress_refusals = Counter(
            "audiogate_engine_egress_refusals",
            "Connections the egress proxy refused or cut, by reason: policy (address "
            "not allowed), cap (download limit), busy", ["reason"], registry=r,
        )
        self.live_changes = Counter(
            "audiogate_engine_live_changes",
            "Changes of a playing session's sound (frames redone), by kind: filters, "
            "volume", ["kind"], registry=r,
        )
        self.track_joins = Counter(
            "audiogate_engine_track_joins",
            "Next tracks that continued a session's stream, by kind: gapless, crossfade, "
            "now (a play now that replaced the current track)",
            ["kind"], registry=r,
        )
        self.sessions_gauge = Gauge(
            "audiogate_engine_session_limit", "Most live sessions allowed", registry=r
        )
        self.worker_restarts = Counter(
            "audiogate_engine_worker_restarts",
            "Engine worker processes that died and were started again", registry=r)
        self.workers_killed = Counter(
            "audiogate_engine_workers_killed",
            "Engine workers killed by the front because their clock stopped ticking",
            registry=r)
        self.sessions_moved = Counter(
            "audiogate_engine_sessions_moved",
            "Sessions played again on another worker after theirs died", registry=r)
        self.opus_complexity = Gauge(
            "audiogate_engine_opus_complexity",
            "libopus complexity transcoding sessions encode with now (stepped down under "
            "load)", registry=r)
        self.complexity_steps = Counter(
            "audiogate_engine_complexity_steps",
            "Changes of the libopus complexity, by direction: down (load), up (room again)",
            ["direction"], registry=r)

    def watch(self, read: Callable[[], dict[str, object]]) -> None:
        """Register scrape-time gauges computed by *read*."""
        self.registry.register(_Snapshot(read))


#: A registry's samples as plain values (what a worker sends its front):
#: ``(name, type, documentation, [(sample name, labels, value)])`` per family.
MetricFamilies = list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]

#: Families the front reports alone: a per-process fact, not a sum over processes.
FRONT_ONLY = frozenset({"process_start_time_seconds", "process_max_fds", "python_info",
                        "audiogate_engine_session_limit", "audiogate_engine_workers",
                        "audiogate_engine_opus_complexity"})


def families_of(registry: CollectorRegistry) -> MetricFamilies:
    """*registry*'s samples as plain values (``_created`` timestamps left out)."""
    return [
        (family.name, family.type, family.documentation,
         [(s.name, dict(s.labels), float(s.value)) for s in family.samples
          if not s.name.endswith("_created")])
        for family in registry.collect()
    ]


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merged_exposition(front: CollectorRegistry, workers: list[MetricFamilies]) -> bytes:
    """The front's metrics and its workers' in one exposition: every sample with the
    same name and labels added up (counters, histogram buckets, gauges of sessions),
    except the per-process facts of ``FRONT_ONLY``, which are the front's."""
    order: list[str] = []
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, source in enumerate([families_of(front), *workers]):
        for name, kind, documentation, samples in source:
            if index > 0 and name in FRONT_ONLY:
                continue
            if name not in kinds:
                kinds[name] = (kind, documentation)
                values[name] = {}
                order.append(name)
            merged = values[name]
            for sample, sample_labels, value in samples:
                key = (sample, tuple(sorted(sample_labels.items())))
                merged[key] = merged.get(key, 0.0) + value
    families = []
    for name in order:
        kind, documentation = kinds[name]
        metric = Metric(name, documentation, kind)
        for (sample, pairs), value in values[name].items():
            metric.add_sample(sample, dict(pairs), value)
        families.append(metric)
    return generate_latest(_Merged(families))
