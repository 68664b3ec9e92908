"""The gateway's Prometheus metrics (served at ``/metrics``).

Everything is read at scrape time from counters the code keeps anyway, so the
routing path pays nothing for metrics. Fronts (playground, bot) register their
own families with ``add_source``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics", "counter", "gauge"]

MetricSource = Callable[[], Iterable[Metric]]


def counter(name: str, documentation: str, value: float,
            labels: dict[str, str] | None = None) -> CounterMetricFamily:
    """A one-sample counter family (``_total`` is added by the exposition)."""
    family = CounterMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A one-sample gauge family."""
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


class _Sources(Collector):
    def __init__(self) -> None:
        self.sources: list[MetricSource] = []

    def collect(self) -> Iterable[Metric]:
        for source in list(self.sources):
            yield from source()


class GatewayMetrics:
    """The gateway's registry, filled by sources at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._sources = _Sources()
        self.registry.register(self._sources)

    def add_source(self, source: MetricSource) -> None:
        """Have *source* yield metric families on every scrape."""
        self._sources.sources.append(source)

    def remove_source(self, source: MetricSource) -> None:
        """Undo ``add_source`` (an owner that goes away; no error if absent)."""
        if source in self._sources.sources:
            self._sources.sources.remove(source)
