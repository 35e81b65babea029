"""The one way into a store, for the agent, `simulate` and `ingest` alike.

- open_writer(url, settings): a StoreWriter. `send(payload)` is one request (the shipper's view);
  `write(points)` / `write_table(name, table)` are spool-less synchronous writes (ingest, simulate): batches
  of `batch_max_points`, retried with the same backoff as the agent for up to `give_up_seconds`, malformed
  points quarantined by the same bisection, never blocking the rest.
- open_sink(url, settings): the agent's output = serializer + durable spool + shipper thread + open_writer().

Readers come from agents.query.open_reader(url, settings); both reach InfluxDB through
agents.stores.connection (one address, one TLS setup with `ca_file`, one credential reader).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agents.points import InvalidPoint, Point
from agents.schema.spool import SPOOL
from agents.stores.lineproto import LineEncoder
from agents.stores.result import Outcome, SendResult
from agents.stores.secrets import influx_credentials
from agents.stores.settings import StoreSettings
from agents.stores.shipper import Shipper, Sink, Unavailable, backoff_delay, isolate_rejected
from agents.stores.spool import Spool
from agents.stores.url import StoreURL, StoreURLError, parse_store_url

log = logging.getLogger("fleetwise.store")

DEFAULT_SPOOL_DIR = Path("/var/lib/fleetwise/spool")


def make_writer(url: StoreURL, settings: StoreSettings) -> Sink:
    """The one-request sender for a store; InfluxDB is reached through agents.stores.connection."""
    if url.kind == "embedded":
        _writable_directory(url.path)
        from agents.stores.embedded_sink import EmbeddedSink  # only when the embedded store is used

        return EmbeddedSink(url.path, settings)
    credentials = influx_credentials(url.user)
    if url.kind == "influxdb2":
        from agents.stores.influxdb import InfluxV2Writer

        return InfluxV2Writer(url, credentials, settings.timeout_seconds, settings.ca_file, settings.gzip)
    from agents.stores.influxdb import InfluxV1Writer

    return InfluxV1Writer(url, credentials, settings.timeout_seconds, settings.ca_file, settings.gzip,
                          settings.create_database)


def _writable_directory(path: Path) -> None:
    """An embedded store's directory exists (created if need be) and is writable, else one StoreURLError
    naming it: a file, an unwritable or impossible directory is a mistake in the URL, not a crash."""
    if path.exists() and not path.is_dir():
        raise StoreURLError(f"embedded:{path}: not a directory")
    from agents.stores.embedded_files import make_root  # the store's own modes (0750)

    try:
        make_root(path)
    except OSError as e:
        raise StoreURLError(f"embedded:{path}: cannot create the store directory: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreURLError(f"embedded:{path}: not writable by this user")


class StoreWriteError(RuntimeError):
    """The store stayed unavailable for give_up_seconds; what was written before stays written."""


class StoreWriter:
    """A store opened for writing: `send` (one request) and spool-less `write` / `write_table`."""

    def __init__(self, url: StoreURL, sink: Sink, settings: StoreSettings) -> None:
        self.url, self.sink, self.settings = url, sink, settings
        self.format = sink.format
        self.rejected_points = 0  # refused by the store as malformed: quarantined, counted, logged once
        self._encoder = LineEncoder()
        self._logged: set[str] = set()
        self._bulk = None

    def send(self, payload: bytes, timeout: float | None = None) -> SendResult:
        return self.sink.send(payload, timeout)

    def write(self, points: Sequence[Point]) -> int:
        """Encode and deliver points; returns how many the store took. A point that cannot be encoded, or
        that the store refuses, is counted in rejected_points and the rest goes on."""
        embedded = self._embedded()
        if embedded is not None:
            # Columnar and in one piece, as before; the writer checks every point before it publishes a file,
            # so a data error means nothing was written and the batch goes the quarantining way below.
            try:
                return embedded.write(points)
            except OSError as e:
                raise StoreWriteError(f"{self.url}: {e.strerror or e}") from None
            except (ValueError, TypeError, OverflowError):
                pass
        encode = self._encoder.encode if self.format == "line" else Point.to_json
        lines: list[bytes] = []
        for p in points:
            try:
                lines.append(encode(p).encode())
            except InvalidPoint as e:
                self._reject(1, str(e))
        return self.write_lines(lines)

    def write_table(self, measurement: str, table, tags: Sequence[str]) -> int:
        """A pyarrow table (column "time", tag columns, field columns) of one measurement; nulls are absent
        fields. The embedded store takes the columns as they are, InfluxDB as line protocol."""
        embedded = self._embedded()
        if embedded is not None:
            try:
                return embedded.write_table(measurement, table, tags)
            except OSError as e:
                raise StoreWriteError(f"{self.url}: {e.strerror or e}") from None
        written = 0
        tags = list(tags)
        for batch in table.to_batches(max_chunksize=self.settings.batch_max_points):
            cols = batch.to_pydict()
            times = batch.column("time").cast("int64").to_pylist()
            names = [c for c in cols if c != "time" and c not in tags]
            points = []
            for k, t_ns in enumerate(times):
                fields = {f: cols[f][k] for f in names if cols[f][k] is not None}
                if fields:
                    points.append(Point(measurement, {t: cols[t][k] for t in tags}, fields, t_ns))
            written += self.write(points)
        return written

    def _embedded(self):
        """For an embedded store, the columnar EmbeddedWriter (pyarrow) that bulk writes (ingest, simulate) go
        through instead of the agent's pending-row path; None for InfluxDB. Made on first use, so the agent,
        which only calls send(), never imports pyarrow."""
        if self.url.kind != "embedded":
            return None
        if self._bulk is None:
            from agents.stores.embedded import EmbeddedWriter

            self._bulk = EmbeddedWriter(self.url.path)
        return self._bulk

    def write_lines(self, lines: list[bytes]) -> int:
        written = 0
        size = self.settings.batch_max_points
        for start in range(0, len(lines), size):
            written += self._deliver(lines[start:start + size])
        return written

    def _deliver(self, lines: list[bytes]) -> int:
        """One batch: retried with the agent's backoff while the store is unavailable, for at most
        give_up_seconds; refused lines are isolated by bisection and counted, the rest is written."""
        deadline = time.monotonic() + self.settings.give_up_seconds
        attempt = 0
        while True:
            result = self.sink.send(b"\n".join(lines))
            if result.outcome is Outcome.OK:
                return len(lines)
            if result.outcome is Outcome.REJECTED:
                try:
                    bad, sent = isolate_rejected(self.sink.send, lines, result)
                except Unavailable as e:
                    result = e.result
                else:
                    self._reject(len(bad), bad[0][1] if bad else result.message)
                    return sent
            delay = backoff_delay(attempt, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
            attempt += 1
            if time.monotonic() + delay > deadline:
                raise StoreWriteError(f"{self.url} did not take a batch within give_up_seconds="
                                      f"{self.settings.give_up_seconds:g}: {result.message}")
            log.info("store write failed, retrying in %.1f s: %s", delay, result.message)
            time.sleep(delay)

    def _reject(self, count: int, reason: str) -> None:
        self.rejected_points += count
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("the store refused %d point(s), left out (counted): %s", count, reason)

    def close(self) -> None:
        self.sink.close()


def open_writer(url: str | StoreURL, settings: StoreSettings | None = None) -> StoreWriter:
    """The store at `url`, opened for writing with `settings` ([store]); see the module docstring."""
    settings = settings or StoreSettings()
    store_url = parse_store_url(url) if isinstance(url, str) else url
    return StoreWriter(store_url, make_writer(store_url, settings), settings)


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
    writer = open_writer(url, settings)
    try:
        spool = Spool(spool_path(writer.url, settings), settings.spool_max_bytes)
    except BaseException:
        writer.close()
        raise
    return AgentStore(writer.url, writer, spool, settings)
