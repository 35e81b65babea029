"""Copy an embedded store's points into InfluxDB 1.x fast, for benchmarks that compare the two stores on the
same fleet.

The agents' write path (agents.points -> line protocol in Python -> spool -> POST) serializes about ten
thousand points a second in one process: a week of 256 nodes (33 M points) would take an hour. Here DuckDB
writes the line protocol itself, straight from the store's Parquet files (tags escaped as line protocol
wants, integers with their `i`, non-finite floats and empty tags left out), pyarrow joins each batch into one
body in C, and two connections POST the batches while DuckDB makes the next ones.

Only the fields named per measurement are copied (a benchmark names what its queries read): InfluxDB stores
each field as its own column, so fields nobody reads change no query's time, only the load's.
"""

from __future__ import annotations

import http.client
import queue
import sys
import threading
import time
import urllib.parse
from pathlib import Path

BATCH_LINES = 50_000  # ~5 MB bodies: well under influxd's 25 MB max-body-size
CONNECTIONS = 2


def _tag_sql(tag: str) -> str:
    """`,tag=value` with line protocol's escapes, or nothing for a missing or empty tag."""
    col = f'"{tag}"'
    esc = f"replace(replace(replace({col}, ' ', '\\ '), ',', '\\,'), '=', '\\=')"
    return f"CASE WHEN {col} IS NULL OR {col} = '' THEN '' ELSE ',{tag}=' || {esc} END"


def _field_sql(field: str, kind: str) -> str:
    col = f'"{field}"'
    if kind in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "HUGEINT"):
        return f"'{field}=' || CAST({col} AS VARCHAR) || 'i'"
    if kind in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN isfinite({col}) THEN '{field}=' || CAST({col} AS VARCHAR) END"
    if kind == "BOOLEAN":
        return f"'{field}=' || CASE WHEN {col} THEN 'true' ELSE 'false' END"
    return f"'{field}=\"' || replace(replace({col}, '\\', '\\\\'), '\"', '\\\"') || '\"'"


def line_protocol_sql(con, source: str, measurement: str, tags: list[str], fields: list[str]) -> str:
    """A query whose one column is the line protocol of each row of `source` (a table expression with a time
    column and the tag and field columns; fields it lacks are skipped)."""
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    fields = [f for f in fields if f in types]
    tags = sorted(t for t in tags if t in types)  # influxd sorts them anyway; sorted it need not
    if not fields:
        raise ValueError(f"{measurement}: none of the fields asked for is in the store")
    head = " || ".join([repr(measurement), *(_tag_sql(t) for t in tags)]) if tags else repr(measurement)
    body = "concat_ws(',', " + ", ".join(_field_sql(f, types[f]) for f in fields) + ")"
    return (f"SELECT line FROM (SELECT {head} || ' ' || {body} || ' ' || CAST(epoch_ns(time) AS VARCHAR) AS line, "
            f"{body} AS fields FROM {source}) WHERE fields <> ''")


def rollup_source(con, files: str, tags: list[str], fields: list[str], every_s: int) -> tuple[str, list[str]]:
    """(table expression, its field columns): per series (every tag) and `every_s` bucket, sum_<field> and
    count_<field> of each field: what the deploy's continuous query (deploy/influxdb/influxdb-1x.iql) writes
    into the rollup policy under those names, and all the InfluxDB reader's ?rollup= reads."""
    types = {name for name, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({files!r})").fetchall()}
    tags = [t for t in tags if t in types]
    fields = [f for f in fields if f in types]
    bucket = f"make_timestamp_ns(epoch_ns(time) // {every_s * 10**9} * {every_s * 10**9})"
    stats = [f'sum("{f}") AS "sum_{f}", CAST(count("{f}") AS BIGINT) AS "count_{f}"' for f in fields]
    tag_cols = "".join(f', "{t}"' for t in tags)
    source = (f"(SELECT {bucket} AS time{tag_cols}, {', '.join(stats)} FROM read_parquet({files!r}) "
              f"GROUP BY ALL)")
    return source, [f"{k}_{f}" for f in fields for k in ("sum", "count")]


class _Poster:
    """CONNECTIONS threads POSTing bodies from a bounded queue; a 5xx (influxd's cache full while it snapshots)
    is retried after a pause, anything else stops the load."""

    def __init__(self, base_url: str, db: str, rp: str = "") -> None:
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port
        self.path = "/write?" + urllib.parse.urlencode({"db": db, "precision": "ns", **({"rp": rp} if rp else {})})
        self.q: queue.Queue = queue.Queue(maxsize=2 * CONNECTIONS)
        self.error: str | None = None
        self.lines = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CONNECTIONS)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        while True:
            item = self.q.get()
            if item is None:
                return
            body, n = item
            for attempt in range(20):
                try:
                    conn.request("POST", self.path, body=body, headers={"Content-Type": "text/plain"})
                    resp = conn.getresponse()
                    text = resp.read()
                except OSError as e:
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                    status, text = 0, str(e).encode()
                else:
                    status = resp.status
                if status == 204:
                    with self._lock:
                        self.lines += n
                        self.bytes += len(body)
                    break
                if status and status < 500:
                    self.error = f"influxd answered {status}: {text[:300]!r}"
                    break
                time.sleep(min(0.5 * (attempt + 1), 5))
            else:
                self.error = f"influxd kept failing: {text[:300]!r}"

    def put(self, body: bytes, n: int) -> None:
        if self.error:
            raise RuntimeError(self.error)
        self.q.put((body, n))

    def close(self) -> None:
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()
        if self.error:
            raise RuntimeError(self.error)


def load(store_dir: Path, base_url: str, db: str, fields: dict[str, list[str]], log=None, rp: str = "",
         rollup_every_s: int | None = None, companions: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Copy `fields` of each measurement (the keys) from the embedded store at store_dir into db (retention
    policy rp, default the database's); with rollup_every_s, their per-bucket sums and counts instead (see
    rollup_source); with companions ({measurement: tags kept}, with rollup_every_s) only those measurements,
    rolled up by their kept tags alone into agents.query.influx.companion(measurement, tags), as the deploy's
    fleet_*_by_* continuous queries write them. Returns {"lines", "bytes", "seconds", "per_measurement":
    {m: lines}}. Progress lines go to log (stderr)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from agents.query.influx import companion
    from agents.schema import MEASUREMENTS

    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    con = duckdb.connect()
    poster = _Poster(base_url, db, rp)
    t0 = time.perf_counter()
    per: dict[str, int] = {}
    try:
        for m, wanted in fields.items():
            files = str(Path(store_dir) / m / "*" / "*.parquet")
            tags, name = list(MEASUREMENTS[m].tags), m
            if companions is not None:
                if m not in companions:
                    continue
                tags, name = list(companions[m]), companion(m, companions[m])
            if rollup_every_s:
                source, columns = rollup_source(con, files, tags, list(wanted), rollup_every_s)
            else:
                source, columns = f"read_parquet({files!r})", list(wanted)
            sql = line_protocol_sql(con, source, name, tags, columns)
            reader = con.sql(sql).fetch_record_batch(BATCH_LINES)
            n = 0
            for batch in reader:
                lines = batch.column(0)
                if isinstance(lines, pa.ChunkedArray):
                    lines = lines.combine_chunks()
                whole = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
                body = pc.binary_join(whole, "\n")[0].as_py().encode()
                poster.put(body, len(lines))
                n += len(lines)
            per[name] = n
            log(f"influx load: {name}: {n:,} lines queued, {poster.lines:,} written, "
                f"{time.perf_counter() - t0:.0f} s")
    finally:
        poster.close()
    seconds = time.perf_counter() - t0
    log(f"influx load: {poster.lines:,} lines ({poster.bytes / 1e9:.2f} GB) in {seconds:.0f} s")
    return {"lines": poster.lines, "bytes": poster.bytes, "seconds": seconds, "per_measurement": per}
