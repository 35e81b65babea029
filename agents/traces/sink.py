"""Where `fleetwise ingest` writes: a store opened from its URL, behind one write(points) method."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from agents.points import Point
from agents.stores.url import StoreURL, StoreURLError, parse_store_url

INFLUX_BATCH = 5000
INFLUX_TRIES = 3


class StoreWriteError(RuntimeError):
    """The store refused a batch or stayed unreachable; what was written before stays written."""


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
        from agents.stores.secrets import influx_credentials

        self.writer = InfluxV1Writer(url, influx_credentials(url.user))

    def write(self, points: Sequence[Point]) -> int:
        from agents.stores.result import Outcome

        for start in range(0, len(points), INFLUX_BATCH):
            payload = "\n".join(p.to_line() for p in points[start:start + INFLUX_BATCH]).encode()
            for attempt in range(INFLUX_TRIES):
                # The writer creates a missing database and answers RETRY; the next try then lands.
                result = self.writer.send(payload)
                if result.outcome is Outcome.OK:
                    break
                if result.outcome is Outcome.REJECTED:
                    raise StoreWriteError(f"InfluxDB rejected a batch: {result.message}")
                time.sleep(0.2 * (attempt + 1))
            else:
                raise StoreWriteError(f"InfluxDB did not take a batch after {INFLUX_TRIES} tries: {result.message}")
        return len(points)

    def close(self) -> None:
        self.writer.close()


def open_sink(url: str) -> Sink:
    parsed = parse_store_url(url)
    if parsed.kind == "embedded":
        return _Embedded(parsed)
    if parsed.kind == "influxdb":
        return _InfluxV1(parsed)
    raise StoreURLError(f"ingest writes to embedded: or influxdb:// stores, not {parsed.kind}")
