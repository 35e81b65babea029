"""Where `fleetwise ingest` writes: a store opened from its URL, behind one write(points) method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agents.points import Point
from agents.stores.url import StoreURL, StoreURLError, parse_store_url

INFLUX_BATCH = 5000


class Sink(Protocol):
    def write(self, points: Sequence[Point]) -> int: ...

    def close(self) -> None: ...


class _Embedded:
    def __init__(self, url: StoreURL) -> None:
        from agents.stores.embedded import EmbeddedWriter

        self.writer = EmbeddedWriter(url.path)

    def write(self, points: Sequence[Point]) -> int:
        return self.writer.write(list(points))

    def close(self) -> None:
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()


class _InfluxV1:
    """Line protocol over the v1 /write endpoint, in batches InfluxDB accepts comfortably."""

    def __init__(self, url: StoreURL) -> None:
        from agents.stores.influxdb import InfluxV1Writer

        self.writer = InfluxV1Writer(url)

    def write(self, points: Sequence[Point]) -> int:
        for start in range(0, len(points), INFLUX_BATCH):
            self.writer.write_lines([p.to_line() for p in points[start:start + INFLUX_BATCH]])
        return len(points)

    def close(self) -> None:
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()


def open_sink(url: str) -> Sink:
    parsed = parse_store_url(url)
    if parsed.kind == "embedded":
        return _Embedded(parsed)
    if parsed.kind == "influxdb":
        return _InfluxV1(parsed)
    raise StoreURLError(f"ingest writes to embedded: or influxdb:// stores, not {parsed.kind}")
