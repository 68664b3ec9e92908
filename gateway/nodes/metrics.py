"""The pool's Prometheus families, labelled by node name (a handful of nodes,
never session ids)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.nodes.pool import NodePool

__all__ = ["node_metric_families"]


def node_metric_families(pool: NodePool) -> Iterable[Metric]:
    """Per node: up, drained, sessions, penalty; placements, failovers, moves,
    refusals and times it went down."""
    gauges = {
        "up": GaugeMetricFamily("audiogate_gateway_node_up",
                                "1 while the node's socket is connected and its API answers",
                                labels=["node"]),
        "draining": GaugeMetricFamily("audiogate_gateway_node_draining",
                                      "1 while the node takes no new sessions",
                                      labels=["node"]),
        "sessions": GaugeMetricFamily("audiogate_gateway_node_sessions",
                                      "Sessions of this gateway placed on the node",
                                      labels=["node"]),
        "penalty": GaugeMetricFamily("audiogate_gateway_node_penalty",
                                     "The node's Lavalink-style penalty (lower: preferred)",
                                     labels=["node"]),
    }
    counters = {
        "placements": CounterMetricFamily("audiogate_gateway_node_placements",
                                          "Sessions placed on the node", labels=["node"]),
        "failovers": CounterMetricFamily("audiogate_gateway_node_failovers",
                                         "Sessions moved off the node because it went down",
                                         labels=["node"]),
        "moved": CounterMetricFamily("audiogate_gateway_node_moves",
                                     "Sessions moved off the node because it was drained",
                                     labels=["node"]),
        "refusals": CounterMetricFamily("audiogate_gateway_node_plays_refused",
                                        "Plays the node refused (503 for load, 429 for its "
                                        "count) and that went to another node",
                                        labels=["node"]),
        "downs": CounterMetricFamily("audiogate_gateway_node_downs",
                                     "Times the node was found down", labels=["node"]),
    }
    for node in pool.nodes:
        label = [node.name]
        gauges["up"].add_metric(label, int(node.up))
        gauges["draining"].add_metric(label, int(node.draining))
        gauges["sessions"].add_metric(label, len(pool.sessions_on(node)))
        gauges["penalty"].add_metric(label, node.penalty())
        counters["placements"].add_metric(label, pool.placements[node.name])
        counters["failovers"].add_metric(label, node.failovers)
        counters["moved"].add_metric(label, node.moved)
        counters["refusals"].add_metric(label, node.refusals)
        counters["downs"].add_metric(label, node.downs)
    yield from gauges.values()
    yield from counters.values()
