"""Prometheus /metrics: a custom prometheus-client collector over the agent's latest points."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from agents import schema
from agents.points import Point
from agents.schema import Kind

# The host tag is left out: Prometheus labels every series with the scraped instance already.
_DROP_TAGS = frozenset({"host"})


def families(points: Iterable[Point]) -> list[Metric]:
    """Metric families, named by the schema (fleetwise_<measurement>_<field>, _total for counters)."""
    out: dict[str, Metric] = {}
    for p in points:
        m = schema.MEASUREMENTS.get(p.measurement)
        if m is None:
            continue
        labels = {k: v for k, v in p.tags.items() if k not in _DROP_TAGS}
        info_labels = {}
        for name, value in p.fields.items():
            f = m.fields.get(name)
            if f is None or not f.exposed:
                continue
            if f.kind is Kind.INFO:
                info_labels[name] = str(value)
                continue
            metric_name = m.prometheus_name(name)
            family = out.get(metric_name)
            if family is None:
                if f.kind is Kind.COUNTER:
                    family = CounterMetricFamily(metric_name, f.help, labels=list(labels))
                else:
                    family = GaugeMetricFamily(metric_name, f.help, labels=list(labels))
                out[metric_name] = family
            family.add_metric(list(labels.values()), float(value))
        if info_labels:
            metric_name = m.info_name + "_info" if not m.name.endswith("_info") else m.info_name
            family = out.get(metric_name)
            if family is None:
                all_labels = [*labels, *info_labels]
                family = out[metric_name] = GaugeMetricFamily(metric_name, m.help, labels=all_labels)
            family.add_metric([*labels.values(), *info_labels.values()], 1.0)
    return list(out.values())


class LatestSample(PromCollector):
    """Serves the last collected round. Families are built when a round arrives, not per scrape,
    so a scrape costs only the text formatting."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self._lock = threading.Lock()

    def update(self, points: list[Point]) -> None:
        built = families(points)
        with self._lock:
            self._families = built

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current = self._families
        yield from current


def serve(latest: LatestSample, host: str, port: int):
    """Start /metrics on host:port in a daemon thread; returns (server, thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(latest)
    return start_http_server(port, addr=host, registry=registry)
