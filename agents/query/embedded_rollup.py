"""Bucketed aggregates of the embedded store answered from its rollups (agents.stores.embedded_rollup) where
they are valid and from raw points elsewhere, in one DuckDB query, with the frame the raw query gives.

When: frame() with agg mean, sum, count, min or max and a bucket width that is a multiple of a rollup level;
aggregate() with only those statistics, no `where` condition, and every=None or such a width. Buckets are
epoch multiples of the width and rollup buckets epoch multiples of the level, so each rollup bucket lies in
exactly one answer bucket. Anything else (pNN, first, last, raw frames, other widths) is the raw query.

Per day of the window, the rollup of the chosen level (the coarsest that divides the width) is used while
every file it was computed from is still live (a compaction that replaced them makes the day raw until the
next maintenance rolls it up again) and no requested field, by-tag or tag filter names a column it could not
roll up (strings, bools). Read raw, and combined with the rollups: the days without a valid rollup, files
added to a day after its rollup (new part files), and pending rows. At the window's edges a rollup bucket is
taken whole when all of its series' points lie inside the window or all outside (each row carries its first
and last point's time), which is the usual case: a dashboard's window ends just after the newest point. When
the start or end falls between two points of one series in a bucket, only the buckets inside the window come
from rollups and the rest of the edge days is read raw. Every source yields partials per row (count, sum, min,
max of each field; a point is the partial of one value) and the answer aggregates those: a mean is the sum of
sums over the sum of counts. Counts, extremes, tags, times and which rows exist equal the raw query's; sums
and means differ from DuckDB's avg() over the points only by the order of floating-point additions (relative
~1e-15).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agents.query import identifiers
from agents.query.base import AggregateQuery, FrameQuery
from agents.query.embedded import _BATCH_ROWS, _PENDING_VIEW, Source, _collect, _tag_conditions
from agents.stores import embedded as store
from agents.stores import embedded_rollup as rollups

ROLLABLE = ("mean", "sum", "count", "min", "max")
DAY_NS = 86_400 * 10**9
# the partials each aggregate needs: c count, s sum, n min, x max
_NEEDS = {"mean": "cs", "sum": "s", "count": "c", "min": "n", "max": "x"}
_STAT = {"c": "count", "s": "sum", "n": "min", "x": "max"}


def level_for(q: FrameQuery | AggregateQuery) -> int | None:
    """The rollup level (bucket ns) that can answer q, or None when q must be read raw."""
    if isinstance(q, FrameQuery):
        if q.every_ns is None or q.agg.name not in ROLLABLE:
            return None
    elif q.where or any(s.agg.name not in ROLLABLE for s in q.stats):
        return None
    fits = [b for b in rollups.LEVELS_NS if q.every_ns is None or q.every_ns % b == 0]
    return max(fits) if fits else None


@dataclass
class Plan:
    rollups: list[str]  # the rollup file of each day answered from rollups
    raw: list[str]  # live files read raw over the whole window (days without a rollup, files added since)
    edges: list[str]  # sources of rollups of the window's edge days, read raw outside [lo, hi) (cut buckets)
    cut: bool  # True: rollup buckets in [lo, hi) only; False: every bucket whose points all lie in the window
    lo: int
    hi: int


def plan(reader, q: FrameQuery | AggregateQuery, src: Source, bucket_ns: int) -> Plan | None:
    """Which files and rollups answer q; None when no day of the window has a usable rollup.

    A rollup bucket the window's start or end cuts is usable only when no series has points on both sides
    of the cut (its "time\\nmin"/"time\\nmax" say so): the usual case, as a dashboard's window ends just
    after the newest point. Otherwise only the buckets inside the window come from rollups, and the edge days'
    sources are read raw outside them."""
    lo = q.start_ns // bucket_ns * bucket_ns
    hi = -(-q.end_ns // bucket_ns) * bucket_ns
    if (lo, hi) != (q.start_ns, q.end_ns):  # a window of whole buckets needs no look at its edges
        usable = _usable(reader, q, src, bucket_ns, lo, hi)
        if not usable:
            return None
        edge_days = {store.day_of(q.start_ns), store.day_of(q.end_ns - 1)}
        edge_rollups = [path for day, path, _ in usable if day in edge_days]
        if not edge_rollups or not _cut(reader, edge_rollups, q.start_ns, q.end_ns):
            covered = {f for _, _, sources in usable for f in sources}
            return Plan([p for _, p, _ in usable], [f for f in src.files if f not in covered], [], False, lo, hi)
    lo = -(-q.start_ns // bucket_ns) * bucket_ns
    hi = q.end_ns // bucket_ns * bucket_ns
    usable = _usable(reader, q, src, bucket_ns, lo, hi) if hi > lo else []
    if not usable:
        return None
    covered, edges = set(), []
    for day, _, sources in usable:
        covered |= sources
        d0, d1 = store.day_of_start_ns(day), store.day_of_start_ns(day) + DAY_NS
        before = max(d0, q.start_ns) < min(d1, q.end_ns, lo)  # the window has time of this day outside [lo, hi)
        after = max(d0, q.start_ns, hi) < min(d1, q.end_ns)
        if before or after:
            edges += sorted(sources)
    return Plan([p for _, p, _ in usable], [f for f in src.files if f not in covered], edges, True, lo, hi)


def _usable(reader, q, src: Source, bucket_ns: int, lo: int, hi: int) -> list[tuple[str, str, set[str]]]:
    """(day, rollup file, its source files) of each day meeting [lo, hi) whose rollup of bucket_ns is valid
    and covers every column q names."""
    named = {*q.fields, *q.by, *(t for t, _ in q.where_tags)}
    encoded = store.encode_name(q.measurement)
    out = []
    for day, files in src.by_day.items():
        d0 = store.day_of_start_ns(day)
        if max(d0, lo) >= min(d0 + DAY_NS, hi) or not files:
            continue
        found = reader._rollup(rollups.day_dir(reader.path, encoded, day), bucket_ns, {Path(f).name for f in files})
        if found is None or named & set(found[1]["skipped"]):
            continue
        day_dir = os.path.dirname(files[0])
        out.append((day, str(found[0]), {os.path.join(day_dir, n) for n in found[1]["of"]}))
    return out


def _cut(reader, files: list[str], start_ns: int, end_ns: int) -> bool:
    """Whether the window's start or end falls between two points of one series in a rollup bucket."""
    first, last = rollups.quoted(rollups.TIME, "min"), rollups.quoted(rollups.TIME, "max")
    sql = (f"SELECT count(*) FROM read_parquet($files, union_by_name=true, hive_partitioning=false) "
           f"WHERE ({first} < $start AND {last} >= $start) OR ({first} < $end AND {last} >= $end)")
    return reader._con.execute(sql, {"files": files, "start": start_ns, "end": end_ns}).fetchall()[0][0] > 0


def _stats(q: FrameQuery | AggregateQuery) -> list[tuple[str, str]]:
    """(field, aggregate) of each output column, in order."""
    if isinstance(q, FrameQuery):
        return [(f, q.agg.name) for f in q.fields]
    return [(s.field, s.agg.name) for s in q.stats]


def query(reader, q: FrameQuery | AggregateQuery, src: Source, p: Plan):
    """q's answer as _collect gives it (times, tags, values per output column), from rollups and raw parts."""
    qi = identifiers.duckdb
    fields = list(q.fields)
    needs: dict[str, set[str]] = {f: set() for f in fields}
    for f, agg in _stats(q):
        needs[f] |= set(_NEEDS[agg])
    kinds = [(i, f, k) for i, f in enumerate(fields) for k in "csnx" if k in needs[f]]
    params: dict = {"lo": p.lo, "hi": p.hi} if p.cut else {}
    parts = []

    def raw_part(sql: str, files: dict, extra: str) -> None:
        cols = reader._columns(Source(sql, files))
        params.update(files, start=q.start_ns, end=q.end_ns)
        value = {f: (qi(f) if f in cols else "NULL") for f in fields}
        partial = {"c": "CAST({} IS NOT NULL AS BIGINT)", "s": "CAST({} AS DOUBLE)", "n": "CAST({} AS DOUBLE)",
                   "x": "CAST({} AS DOUBLE)"}
        parts.append(
            "SELECT epoch_ns(time) AS __t" + _tags(q, cols)
            + "".join(f", {partial[k].format(value[f])} AS __{k}{i}" for i, f, k in kinds)
            + f" FROM {sql} WHERE epoch_ns(time) >= $start AND epoch_ns(time) < $end{extra}"
            + _tag_conditions(q, cols, params)
            + " AND (" + " OR ".join(f"{value[f]} IS NOT NULL" for f in fields) + ")")

    parquet = "read_parquet(${}, union_by_name=true, hive_partitioning=false)"
    if p.raw or src.pending:
        sql = parquet.format("raw") if p.raw else _PENDING_VIEW
        if p.raw and src.pending:
            sql = f"(SELECT * FROM {sql} UNION ALL BY NAME SELECT * FROM {_PENDING_VIEW})"
        raw_part(sql, {"raw": p.raw} if p.raw else {}, "")
    if p.edges:
        raw_part(parquet.format("edges"), {"edges": p.edges}, " AND (epoch_ns(time) < $lo OR epoch_ns(time) >= $hi)")
    sql = parquet.format("rollups")
    cols = reader._columns(Source(sql, {"rollups": p.rollups}))
    params["rollups"] = p.rollups
    stat = {(f, k): (rollups.quoted(f, _STAT[k]) if rollups.column(f, _STAT[k]) in cols else "NULL")
            for _, f, k in kinds}
    cast = {"c": "BIGINT", "s": "DOUBLE", "n": "DOUBLE", "x": "DOUBLE"}
    if p.cut:
        window = "epoch_ns(time) >= $lo AND epoch_ns(time) < $hi"
    else:  # buckets whose points all lie in the window (plan() checked that none has points on both sides)
        window = f"{rollups.quoted(rollups.TIME, 'min')} >= $start AND {rollups.quoted(rollups.TIME, 'max')} < $end"
        params.update(start=q.start_ns, end=q.end_ns)
    present = [f"{stat[(f, k)]} > 0" if k == "c" else f"{stat[(f, k)]} IS NOT NULL" for _, f, k in kinds]
    parts.append(
        "SELECT epoch_ns(time) AS __t" + _tags(q, cols)
        + "".join(f", CAST({stat[(f, k)]} AS {cast[k]}) AS __{k}{i}" for i, f, k in kinds)
        + f" FROM {sql} WHERE {window}" + _tag_conditions(q, cols, params)
        + " AND (" + " OR ".join(present) + ")")

    index = {f: i for i, f in enumerate(fields)}
    aggs = []
    for f, agg in _stats(q):
        i = index[f]
        aggs.append({"mean": f"CASE WHEN sum(__c{i}) > 0 THEN sum(__s{i}) / sum(__c{i}) END",
                     "sum": f"sum(__s{i})", "count": f"CAST(sum(__c{i}) AS BIGINT)",
                     "min": f"min(__n{i})", "max": f"max(__x{i})"}[agg])
    if q.every_ns is None:
        head = "SELECT 0 AS __t, "
    else:
        params["every"] = q.every_ns
        head = "SELECT (__t - ((__t % $every) + $every) % $every) AS __t, "
    groups = "".join(f"__g{i}, " for i in range(len(q.by)))
    sql = (head + groups + ", ".join(f"{a} AS __f{j}" for j, a in enumerate(aggs))
           + " FROM (" + " UNION ALL ".join(parts) + ") GROUP BY ALL")
    return _collect(reader._con.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS), len(q.by), len(aggs))


def _tags(q: FrameQuery | AggregateQuery, cols: dict[str, str]) -> str:
    """The by-tags as __g0, __g1, ...: "" where a row has no such tag (as the raw query and InfluxDB)."""
    out = []
    for i, t in enumerate(q.by):
        expr = f"coalesce({identifiers.duckdb(t)}, '')" if t in cols else "''"
        out.append(f", {expr} AS __g{i}")
    return "".join(out)
