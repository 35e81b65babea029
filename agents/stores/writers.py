"""open_sink(url, settings): the agent's store output = serializer + durable spool + shipper thread + writer."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from agents.config import StoreSettings
from agents.points import InvalidPoint, Point
from agents.schema.spool import SPOOL
from agents.stores.lineproto import LineEncoder
from agents.stores.secrets import influx_credentials
from agents.stores.shipper import Shipper, Sink
from agents.stores.spool import Spool
from agents.stores.url import StoreURL, parse_store_url

log = logging.getLogger("fleetwise.store")

DEFAULT_SPOOL_DIR = Path("/var/lib/fleetwise/spool")


def make_writer(url: StoreURL, settings: StoreSettings) -> Sink:
    if url.kind == "embedded":
        from agents.stores.embedded_sink import EmbeddedSink  # only when the embedded store is used

        return EmbeddedSink(url.path, settings)
    credentials = influx_credentials(url.user)
    if url.kind == "influxdb2":
        from agents.stores.influxdb import InfluxV2Writer

        return InfluxV2Writer(url, credentials, settings.timeout_seconds, settings.ca_file, settings.gzip)
    from agents.stores.influxdb import InfluxV1Writer

    return InfluxV1Writer(url, credentials, settings.timeout_seconds, settings.ca_file, settings.gzip,
                          settings.create_database)


def spool_path(url: StoreURL, settings: StoreSettings) -> Path:
    """One spool file per store, so changing the URL never sends old data to the wrong place."""
    if settings.spool_dir is not None:
        directory = settings.spool_dir
    elif url.kind == "embedded":
        directory = url.path.with_name(url.path.name + ".spool")
    else:
        directory = DEFAULT_SPOOL_DIR
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:12]
    return directory / f"{url.kind}-{digest}.sqlite"


class AgentStore:
    """What the agent loop sees: enqueue() (quick, commits to the spool) and a shipper thread draining it."""

    def __init__(self, url: StoreURL, sink: Sink, spool: Spool, settings: StoreSettings) -> None:
        self.url, self.sink, self.spool, self.settings = url, sink, spool, settings
        self.label = str(url)
        self.shipper = Shipper(spool, sink, settings.batch_max_points, settings.flush_interval_seconds,
                               settings.retry_base_seconds, settings.retry_max_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self._encoder = LineEncoder()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.shipper.run, args=(self._stop,), name="fleetwise-shipper",
                                        daemon=True)
        self._thread.start()

    def enqueue(self, points: list[Point]) -> int:
        """Serialize and commit (in batches of at most batch_max_points). Returns the points committed."""
        encode = self._encoder.encode if self.sink.format == "line" else Point.to_json
        lines: list[str] = []
        for p in points:
            try:
                lines.append(encode(p))
            except InvalidPoint as e:
                if str(e) not in self._logged:
                    self._logged.add(str(e))
                    log.warning("skipped a point that cannot be stored: %s", e)
        size = self.settings.batch_max_points
        for start in range(0, len(lines), size):
            chunk = lines[start:start + size]
            self.spool.enqueue("\n".join(chunk).encode(), self.sink.format, len(chunk))
        self.shipper.notify()
        return len(lines)

    def status_points(self, host: str, time_ns: int | None = None) -> list[Point]:
        stats = self.spool.stats()
        fields = {name: getattr(stats, name) for name in SPOOL.fields}
        return [Point(SPOOL.name, {"host": host, "store": self.label}, fields, time_ns or time.time_ns())]

    def close(self, flush_seconds: float | None = None) -> bool:
        """Stop the shipper, send what can be sent within flush_seconds; the rest stays spooled. True if empty."""
        flush_seconds = self.settings.shutdown_flush_seconds if flush_seconds is None else flush_seconds
        deadline = time.monotonic() + flush_seconds
        self._stop.set()
        self.shipper.notify()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        empty = False
        if self._thread is None or not self._thread.is_alive():
            empty = self.shipper.flush(deadline)
            try:
                self.sink.close()
            finally:
                self.spool.close()
        # else: the shipper is stuck in a request; the process exits and the batch stays in the spool.
        return empty


def open_sink(url: str | StoreURL, settings: StoreSettings | None = None) -> AgentStore:
    settings = settings or StoreSettings()
    store_url = parse_store_url(url) if isinstance(url, str) else url
    sink = make_writer(store_url, settings)
    spool = Spool(spool_path(store_url, settings), settings.spool_max_bytes)
    return AgentStore(store_url, sink, spool, settings)
