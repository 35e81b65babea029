"""Reading the embedded store: DuckDB SQL over the Parquet files of the days a query touches.

Aggregates follow InfluxQL exactly (buckets at epoch multiples, fill(none), percentile by nearest
rank, last = value at the latest time) so frames equal those of agents.query.influx.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.query import identifiers
from agents.query.base import (
    NAT,
    TIME_AGGS,
    AggregateQuery,
    FrameQuery,
    QueryError,
    Reader,
    TagCodes,
    empty_frame,
    empty_stats,
    finalize,
    finalize_stats,
)
from agents.stores import embedded as store
from agents.stores import embedded_rows as rows

log = logging.getLogger(__name__)

_RETRIES = 8
_BATCH_ROWS = 1 << 20  # rows converted from Arrow at a time: bounds the transient copy


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _day(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).strftime("%Y-%m-%d")


@dataclass
class Source:
    """What a query reads: an SQL table expression over the Parquet files and the pending rows."""

    sql: str
    params: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    by_day: dict[str, list[str]] = field(default_factory=dict)  # the live files of each day listed
    pending: bool = False  # whether sql includes pending rows (the view _PENDING_VIEW)


_PARQUET = "read_parquet($files, union_by_name=true, hive_partitioning=false)"
_PENDING_VIEW = "__pending"


class EmbeddedReader(Reader):
    def __init__(self, path: Path | str, use_rollups: bool = True) -> None:
        import duckdb

        self.path = Path(path)
        # answer bucketed means, sums, counts and extremes from the store's rollups where they are valid
        # (agents.query.embedded_rollup); False: always the raw points (tests and benchmarks compare both)
        self.use_rollups = use_rollups
        self._rollup_footers: dict[Path, dict] = {}  # rollup files never change either
        self.rollup_queries = 0  # queries answered (in part) from rollups
        self._con = duckdb.connect(":memory:")
        self._footers: dict[Path, tuple[list[str], list[str]]] = {}  # files never change: footers can be cached
        self._described: dict[tuple, dict[str, str]] = {}  # and so do the columns of a list of them
        self._pending: dict[Path, dict[str, list]] = {}  # pending file -> measurement -> points (never change)
        self._bad: set[Path] = set()  # unreadable files, left out (and logged once)

    def close(self) -> None:
        self._con.close()

    def limit_threads(self, n: int) -> None:
        """Run each query on at most n threads: for callers that run several readers' queries at once (the
        dashboard's workers), where one query's own parallelism only adds contention."""
        self._con.execute(f"SET threads = {max(int(n), 1)}")

    # -- file selection -------------------------------------------------------------------------
    def _footer_of(self, path: Path) -> tuple[list[str], list[str]]:
        if path not in self._footers:
            self._footers[path] = store.footer(path)
        return self._footers[path]

    def _set_aside(self, path: Path, problem: object) -> None:
        if path not in self._bad:
            self._bad.add(path)
            log.warning("embedded store: skipping unreadable file %s: %s", path, problem)

    def _pending_points(self, path: Path) -> dict[str, list]:
        """A pending batch's points by measurement (parsed once; a damaged file is skipped and logged)."""
        if path not in self._pending:
            by_measurement: dict[str, list] = {}
            try:
                for p in rows.read_pending(path):
                    by_measurement.setdefault(p.measurement, []).append(p)
            except ValueError as e:
                self._set_aside(path, e)
            self._pending[path] = by_measurement
        return self._pending[path]

    def _source(self, measurement: str, first_ns: int | None = None, last_ns: int | None = None) -> Source | None:
        """The live Parquet files of the days in range, plus the rows of pending batches not folded yet.

        Pending files are listed BEFORE the partitions: a batch folded in between is then seen in
        the partition (and its pending rows dropped by key) or, if its pending file is gone when read,
        FileNotFoundError makes _run list again."""
        listed = rows.list_pending(self.path)
        if len(self._pending) > len(listed):  # forget batches folded since: a dashboard's reader lives long
            self._pending = {p: v for p, v in self._pending.items() if p in set(listed)}
        pending = [p for p in listed if p not in self._bad]
        lo = _day(first_ns) if first_ns is not None else ""
        hi = _day(last_ns) if last_ns is not None else "9999-99-99"
        files: list[str] = []
        keys: dict[str, set[str]] = {}
        by_day: dict[str, list[str]] = {}
        for day, day_dir in store.day_dirs(self.path, measurement):
            if lo <= day <= hi:
                live, keys[day] = store.live_files_and_keys(day_dir, self._footer_of, self._set_aside)
                by_day[day] = [str(p) for p in live if p not in self._bad]
                files.extend(by_day[day])
        watermark = rows.retained_before(self.path)
        points = []
        for path in pending:
            key = rows.pending_key(path)
            for p in self._pending_points(path).get(measurement, ()):
                day = _day(p.time_ns)
                if lo <= day <= hi and key not in keys.get(day, ()) and not rows.expired(p.time_ns, watermark):
                    points.append(p)
        parts = [_PARQUET] if files else []
        if points:
            try:
                self._con.register(_PENDING_VIEW, store.points_to_table(measurement, points))
            except store.InvalidPoint as e:
                raise QueryError(f"{measurement}: pending rows of {self.path} cannot be read together: {e}") from e
            parts.append(_PENDING_VIEW)
        if not parts:
            return None
        sql = parts[0] if len(parts) == 1 else f"(SELECT * FROM {parts[0]} UNION ALL BY NAME SELECT * FROM {parts[1]})"
        return Source(sql, {"files": files} if files else {}, files, by_day, bool(points))

    def _run(self, measurement: str, first_ns, last_ns, build):
        """List the files, then run build(source); when compaction or retention removed a listed file in
        between, list again (the new listing no longer names it) instead of failing or double counting.
        A file that is not Parquet is left out (logged once) rather than failing every query."""
        import duckdb

        for attempt in range(_RETRIES):
            files: list[str] = []
            try:
                src = self._source(measurement, first_ns, last_ns)
                if src is None:
                    return None
                files = src.files
                return build(src)
            except FileNotFoundError:
                pass
            except (duckdb.Error, OSError) as e:
                # OSError: DuckDB's IO error surfaces through pyarrow's streaming reader (to_arrow_reader) as
                # an OSError when a file vanishes mid-scan; it gets the same re-listing as duckdb.Error.
                # A file whose footer cannot be read is set aside and the listing retried; anything else (a file
                # of another schema) is one line naming the measurement and what DuckDB found.
                if all(os.path.exists(f) for f in files) and not self._find_unreadable(files):
                    raise QueryError(f"{measurement}: unreadable data: {_first_line(e)}") from e
            time.sleep(0.01 * (attempt + 1))
        raise QueryError(f"{measurement}: files kept vanishing while reading (retention or compaction running?)")

    def _find_unreadable(self, files: list[str]) -> bool:
        """Set aside the listed files whose Parquet footer cannot be read; True when there were any."""
        import pyarrow.parquet as pq

        found = False
        for f in files:
            try:
                pq.read_metadata(f)
            except FileNotFoundError:
                continue
            except (ValueError, OSError) as e:
                self._set_aside(Path(f), e)
                found = True
        return found

    def _columns(self, src: Source) -> dict[str, str]:
        """Column name -> DuckDB type of src. Kept per list of files (files never change; a query's
        DESCRIBE reads every footer again, ~10 ms over a week's files): not when pending rows are in it."""
        key = None
        if _PENDING_VIEW not in src.sql and all(isinstance(v, list) for v in src.params.values()):
            key = (src.sql, *((k, tuple(v)) for k, v in sorted(src.params.items())))
            if key in self._described:
                return self._described[key]
        described = self._con.execute(f"DESCRIBE SELECT * FROM {src.sql}", src.params).fetchall()
        cols = {r[0]: r[1] for r in described}
        if key is not None:
            if len(self._described) > 10_000:  # a dashboard's reader lives long, maintenance makes new files
                self._described.clear()
            self._described[key] = cols
        return cols

    def _rollup(self, directory: Path, bucket_ns: int, live: set[str]) -> tuple[Path, dict] | None:
        """A rollup of bucket_ns in directory (a day's rollups) whose source files are all live, with its
        footer; None when there is none."""
        from agents.stores import embedded_rollup as rollups

        if len(self._rollup_footers) > 10_000:  # a dashboard's reader lives long, maintenance makes new ones
            self._rollup_footers.clear()
        for path in rollups.list_rollups(directory):
            if not path.name.startswith(rollups.prefix(bucket_ns) + "-") or path in self._bad:
                continue
            if path not in self._rollup_footers:
                try:
                    self._rollup_footers[path] = rollups.footer(path)
                except FileNotFoundError:
                    raise
                except (ValueError, OSError) as e:
                    self._set_aside(path, e)
                    self._rollup_footers[path] = {"of": None}
            info = self._rollup_footers[path]
            if info["of"] is not None and info["bucket_ns"] == bucket_ns and set(info["of"]) <= live:
                return path, info
        return None

    def _answer(self, q: FrameQuery | AggregateQuery, src: Source, raw):
        """q from the rollups where they are valid (agents.query.embedded_rollup), else raw(q, src)."""
        if self.use_rollups:
            from agents.query import embedded_rollup

            bucket_ns = embedded_rollup.level_for(q)
            found = None if bucket_ns is None else embedded_rollup.plan(self, q, src, bucket_ns)
            if found is not None:
                self.rollup_queries += 1
                # _run lists again when a file it read vanished: a rollup replaced by maintenance as well
                src.files.extend(found.rollups)
                return embedded_rollup.query(self, q, src, found)
        return raw(q, src)

    # -- queries --------------------------------------------------------------------------------
    def _frame(self, q: FrameQuery):
        result = self._run(q.measurement, q.start_ns, q.end_ns - 1, lambda src: self._answer(q, src, self._query))
        if result is None:
            return empty_frame(q)
        times, tags, values = result
        return finalize(q, times, dict(zip(q.by, tags, strict=True)), dict(zip(q.fields, values, strict=True)))

    def _query(self, q: FrameQuery, source: Source):
        cols = self._columns(source)
        qi = identifiers.duckdb
        field_sql = {f: (qi(f) if f in cols else "NULL") for f in q.fields}
        tag_sql = {t: (f"coalesce({qi(t)}, '')" if t in cols else "''") for t in q.by}
        params = {**source.params, "start": q.start_ns, "end": q.end_ns}
        src = ("SELECT epoch_ns(time) AS __t"
               + "".join(f", {tag_sql[t]} AS __g{i}" for i, t in enumerate(q.by))
               + "".join(f", {field_sql[f]} AS __f{i}" for i, f in enumerate(q.fields))
               + f" FROM {source.sql}"
               " WHERE epoch_ns(time) >= $start AND epoch_ns(time) < $end" + _tag_conditions(q, cols, params)
               + " AND (" + " OR ".join(f"{field_sql[f]} IS NOT NULL" for f in q.fields) + ")")
        groups = [f"__g{i}" for i in range(len(q.by))]
        if q.every_ns is None:
            sql = "SELECT * FROM (" + src + ")"
        else:
            params["every"] = q.every_ns
            bucket = "(__t - ((__t % $every) + $every) % $every)"  # floor to an epoch multiple, also before 1970
            aggs = [f"{_agg_sql(q, f'__f{i}')} AS __f{i}" for i in range(len(q.fields))]
            sql = (f"SELECT {bucket} AS __t, " + "".join(g + ", " for g in groups) + ", ".join(aggs)
                   + " FROM (" + src + ") GROUP BY ALL")
        return _collect(self._con.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS), len(q.by), len(q.fields))

    def _aggregate(self, q: AggregateQuery):
        result = self._run(q.measurement, q.start_ns, q.end_ns - 1,
                           lambda src: self._answer(q, src, self._query_stats))
        if result is None:
            return empty_stats(q)
        times, tags, values = result
        return finalize_stats(q, times if q.every_ns is not None else None, dict(zip(q.by, tags, strict=True)),
                              {s.name: v for s, v in zip(q.stats, values, strict=True)})

    def _query_stats(self, q: AggregateQuery, source: Source):
        cols = self._columns(source)
        qi = identifiers.duckdb
        fields = q.fields
        field_sql = {f: (qi(f) if f in cols else "NULL") for f in fields}
        tag_sql = {t: (f"coalesce({qi(t)}, '')" if t in cols else "''") for t in q.by}
        params: dict = {**source.params, "start": q.start_ns, "end": q.end_ns}
        conds = []
        for i, c in enumerate(q.where):
            # a condition on a field the files lack matches nothing (NULL compares false), as in InfluxQL
            conds.append(f" AND {qi(c.field) if c.field in cols else 'NULL'} {_OPS[c.op]} $w{i}")
            params[f"w{i}"] = float(c.value)
        src = ("SELECT epoch_ns(time) AS __t"
               + "".join(f", {tag_sql[t]} AS __g{i}" for i, t in enumerate(q.by))
               + "".join(f", {field_sql[f]} AS __f{i}" for i, f in enumerate(fields))
               + f" FROM {source.sql}"
               " WHERE epoch_ns(time) >= $start AND epoch_ns(time) < $end" + "".join(conds)
               + _tag_conditions(q, cols, params)
               + " AND (" + " OR ".join(f"{field_sql[f]} IS NOT NULL" for f in fields) + ")")
        index = {f: i for i, f in enumerate(fields)}
        groups = [f"__g{i}" for i in range(len(q.by))]
        aggs = [f"{_stat_sql(s, f'__f{index[s.field]}')} AS __f{i}" for i, s in enumerate(q.stats)]
        if q.every_ns is None:
            head = "SELECT 0 AS __t, "
        else:
            params["every"] = q.every_ns
            head = "SELECT (__t - ((__t % $every) + $every) % $every) AS __t, "
        sql = head + "".join(g + ", " for g in groups) + ", ".join(aggs) + " FROM (" + src + ") GROUP BY ALL"
        times = [i for i, s in enumerate(q.stats) if s.agg.name in TIME_AGGS]
        return _collect(self._con.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS), len(q.by), len(q.stats),
                        int_columns=times)

    def _pending_measurements(self) -> dict[str, set[str]]:
        """Measurement -> days it has rows in, over the pending batches (not yet folded into Parquet)."""
        out: dict[str, set[str]] = {}
        for path in rows.list_pending(self.path):
            try:
                for name, points in self._pending_points(path).items():
                    out.setdefault(name, set()).update(_day(p.time_ns) for p in points)
            except FileNotFoundError:
                continue  # folded meanwhile: its rows are in the partitions now
        return out

    def measurements(self) -> list[str]:
        names = set(self._pending_measurements())
        for name in store.measurement_dirs(self.path):
            if any(store.live_files(d, self._footer_of, self._set_aside) for _, d in store.day_dirs(self.path, name)):
                names.add(name)
        return sorted(names)

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        identifiers.validate(measurement, "measurement")
        col = identifiers.duckdb(tag, "tag")

        def build(src: Source):
            if tag not in self._columns(src):
                return []
            found = self._con.execute(f"SELECT DISTINCT {col} FROM {src.sql} WHERE {col} IS NOT NULL AND {col} <> ''",
                                      src.params).fetchall()
            return [r[0] for r in found]

        return sorted(self._run(measurement, None, None, build) or [])

    def days(self, measurement: str) -> list[str]:
        """The UTC days ("YYYY-MM-DD", oldest first) that may hold rows of measurement: its day partitions and
        the days of its pending rows. A partitioned reader (agents.query.partitioned) runs one task per day."""
        return sorted({d for d, _ in store.day_dirs(self.path, measurement)}
                      | self._pending_measurements().get(measurement, set()))

    def time_bounds(self, measurement: str):
        import pandas as pd

        identifiers.validate(measurement, "measurement")
        days = self.days(measurement)
        if not days:
            return None
        # Only the first and last non-empty days can hold the bounds.
        bounds = []
        for fn, order in (("min", days), ("max", days[::-1])):
            value = None
            for day in order:
                ns = store.day_of_start_ns(day)
                # fetchall, not fetchone: DuckDB 2 keeps a result fetched with fetchone() open, and the next
                # statement on the connection (registering pending rows) fails with "Resource In Use"
                value = self._run(measurement, ns, ns, lambda src, fn=fn: self._con.execute(
                    f"SELECT {fn}(epoch_ns(time)) FROM {src.sql}", src.params).fetchall()[0][0])
                if value is not None:
                    break
            if value is None:
                return None
            bounds.append(pd.Timestamp(int(value), unit="ns", tz="UTC"))
        return bounds[0], bounds[1]


def _tag_conditions(q: FrameQuery | AggregateQuery, cols: dict[str, str], params: dict) -> str:
    """SQL of q.where_tags, values as bound parameters (added to params). A tag the files lack, or a column
    that is not a string (no tag is), is "" on every row, as InfluxDB reports a missing tag."""
    qi = identifiers.duckdb
    out = []
    for i, (tag, values) in enumerate(q.where_tags):
        names = []
        for j, value in enumerate(values):
            params[f"tag{i}_{j}"] = value
            names.append(f"$tag{i}_{j}")
        col = qi(tag, "tag") if cols.get(tag) == "VARCHAR" else "NULL"
        # coalesce only when "" is asked for: a bare column keeps DuckDB's filter pushdown into Parquet
        expr = f"coalesce({col}, '')" if "" in values else col
        out.append(f" AND {expr} IN ({', '.join(names)})")
    return "".join(out)


def _agg_sql(q: FrameQuery, col: str) -> str:
    """SQL of q.agg over col (q: anything with an .agg)."""
    name = q.agg.name
    if name == "mean":
        return f"avg({col})"
    if name in ("max", "min", "sum", "count"):
        return f"{name}({col})"
    if name == "last":
        return f"arg_max({col}, __t) FILTER (WHERE {col} IS NOT NULL)"
    # InfluxQL percentile: sort the values, take index floor(n*p/100 + 0.5) - 1 (0-based); below 0 there is
    # no value. DuckDB lists are 1-based, and a non-positive index must not wrap around from the end.
    p = json.dumps(float(q.agg.percentile))
    idx = f"CAST(floor(CAST(count({col}) AS DOUBLE) * {p} / 100.0 + 0.5) AS BIGINT)"
    return (f"CASE WHEN {idx} >= 1 THEN list_sort(list({col}) FILTER (WHERE {col} IS NOT NULL))[{idx}] END")


_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "!=": "<>"}


def _stat_sql(s, col: str) -> str:
    name = s.agg.name
    if name == "first":
        return f"arg_min({col}, __t) FILTER (WHERE {col} IS NOT NULL)"
    if name == "first_time":
        return f"min(__t) FILTER (WHERE {col} IS NOT NULL)"
    if name == "last_time":
        return f"max(__t) FILTER (WHERE {col} IS NOT NULL)"
    return _agg_sql(s, col)


def _collect(batches, n_tags: int, n_fields: int, int_columns=()):
    """Arrow record batches -> (times, TagCodes per tag, numpy column per field), one batch at a time:
    tag strings are dictionary-encoded per batch (one Python string per distinct value, not per row) and
    fields are converted in bulk, so the whole result is never held as Arrow and Python objects at once.
    int_columns: fields kept as int64 with nulls as NAT (times: a float64 round trip would round them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    times: list = []
    codes: list[list] = [[] for _ in range(n_tags)]
    lookup: list[dict] = [{} for _ in range(n_tags)]
    values: list[list] = [[] for _ in range(n_fields)]
    for batch in batches:
        if not batch.num_rows:
            continue
        times.append(batch.column("__t").to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
        for i in range(n_tags):
            enc = pc.dictionary_encode(batch.column(f"__g{i}"))
            seen = lookup[i]
            remap = np.asarray([seen.setdefault(v, len(seen)) for v in enc.dictionary.to_pylist()], dtype=np.int64)
            codes[i].append(remap[enc.indices.to_numpy(zero_copy_only=False)] if len(remap)
                            else np.zeros(batch.num_rows, dtype=np.int64))
        for i in range(n_fields):
            col = batch.column(f"__f{i}")
            if i in int_columns:
                values[i].append(pc.fill_null(pc.cast(col, pa.int64()), NAT).to_numpy(zero_copy_only=False))
                continue
            if pa.types.is_decimal(col.type):
                col = pc.cast(col, pa.float64())
            values[i].append(col.to_numpy(zero_copy_only=False))
    if not times:
        return None
    tags = [TagCodes(np.concatenate(c), list(seen)) for c, seen in zip(codes, lookup, strict=True)]
    return np.concatenate(times), tags, [_concat(v) for v in values]


def _concat(parts):
    import numpy as np

    kinds = {p.dtype.kind for p in parts}
    if len(kinds) > 1 and not kinds <= set("iuf"):
        parts = [p.astype(object) for p in parts]  # e.g. bool batches without nulls next to ones with
    return np.concatenate(parts)
