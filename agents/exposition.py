"""Prometheus /metrics: a custom prometheus-client collector over the agent's latest points, and a
small HTTP server that serves the round's exposition rendered once."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector as PromCollector

from agents import schema
from agents.points import Point
from agents.schema import Kind, Measurement

# The host tag is left out: Prometheus labels every series with the scraped instance already.
_DROP_TAGS = frozenset({"host"})


def _label_names(m: Measurement, tags: dict[str, str]) -> list[str]:
    # Schema order, not the point's dict order, so every point of a family lines its values up with
    # the same label names; tags outside the schema (none today) follow in sorted order.
    names = [t for t in m.tags if t not in _DROP_TAGS]
    extra = sorted(t for t in tags if t not in _DROP_TAGS and t not in m.tags)
    return names + extra


def families(points: Iterable[Point]) -> list[Metric]:
    """Metric families, named by the schema (fleetwise_<measurement>_<field>, _total for counters).

    Rates are left out unless their Field says prometheus=True (Prometheus derives rates from the
    counters itself); string (info) fields become labels of one fleetwise_<measurement>_info series
    with the value 1."""
    out: dict[str, Metric] = {}
    label_cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for p in points:
        m = schema.MEASUREMENTS.get(p.measurement)
        if m is None:
            continue
        cache_key = (m.name, tuple(p.tags))
        names = label_cache.get(cache_key)
        if names is None:
            names = label_cache[cache_key] = _label_names(m, p.tags)
        values = [p.tags.get(n, "") for n in names]
        info_names: list[str] = []
        info_values: list[str] = []
        for name, value in p.fields.items():
            f = m.fields.get(name)
            if f is None or not f.exposed:
                continue
            if f.kind is Kind.INFO:
                info_names.append(name)
                info_values.append(str(value))
                continue
            metric_name = m.prometheus_name(name)
            family = out.get(metric_name)
            if family is None:
                # Fields of one family (cpu's user_seconds, system_seconds, ...) share one metric and are
                # told apart by their own labels (mode="user"), after the tags.
                cls = CounterMetricFamily if f.kind is Kind.COUNTER else GaugeMetricFamily
                family = out[metric_name] = cls(metric_name, f.family_help or f.help,
                                                labels=[*names, *(k for k, _ in f.labels)])
            family.add_metric([*values, *(v for _, v in f.labels)] if f.labels else values, float(value))
        if info_names:
            metric_name = m.info_name if m.name.endswith("_info") else m.info_name + "_info"
            family = out.get(metric_name)
            if family is None:
                family = out[metric_name] = GaugeMetricFamily(metric_name, m.help, labels=[*names, *info_names])
            family.add_metric([*values, *info_values], 1.0)
    return list(out.values())


class LatestSample(PromCollector):
    """Serves the last collected round. Families are built and rendered when a round arrives, not
    per scrape: the agent collects every 10 s while several Prometheus servers may scrape more
    often, so a scrape only copies bytes out."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._text = generate_latest(self.registry)
        self._gzipped: bytes | None = None

    def update(self, points: list[Point]) -> None:
        built = families(points)
        with self._lock:
            self._families = built
        text = generate_latest(self.registry)
        with self._lock:
            self._text, self._gzipped = text, None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current = self._families
        yield from current

    def exposition(self, gzipped: bool = False) -> bytes:
        """The text format (0.0.4) of the latest round, optionally gzip-compressed (cached per round)."""
        with self._lock:
            text, packed = self._text, self._gzipped
        if not gzipped:
            return text
        if packed is None:
            # Level 1: scrapes are local-network; the CPU matters more than a few percent of bytes.
            packed = gzip.compress(text, compresslevel=1)
            with self._lock:
                if self._text is text:
                    self._gzipped = packed
        return packed


class _Handler(BaseHTTPRequestHandler):
    latest: LatestSample  # set on a subclass per server
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection between scrapes

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            # 0.0.4: every Prometheus since 2.0 reads it, and our names need none of 1.0.0's escaping.
            self._send(200, self.latest.exposition(gz), CONTENT_TYPE_PLAIN_0_0_4, gz)
        elif path == "/":
            self._send(200, b"fleetwise agent: metrics at /metrics\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str, gzipped: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Scrapes are not logged: one line every few seconds per Prometheus would flood the journal."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(latest: LatestSample, host: str, port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start /metrics on host:port in a daemon thread; returns (server, thread)."""
    handler = type("Handler", (_Handler,), {"latest": latest})
    server_cls = _Server
    if ":" in host:
        import socket

        server_cls = type("Server6", (_Server,), {"address_family": socket.AF_INET6})
    server = server_cls((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="fleetwise-metrics", daemon=True)
    thread.start()
    return server, thread
