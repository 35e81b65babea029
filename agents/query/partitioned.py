"""Queries of the embedded store as one task per measurement and UTC day, run by any `map`, then combined.

The embedded store keeps each measurement in one directory per UTC day (docs/storage-embedded.md). A
PartitionedReader answers `aggregate()` and `frame()` with the same frames as the EmbeddedReader it wraps, by
running EmbeddedReader's own query (the same DuckDB SQL, the same handling of pending rows, compaction and
unreadable files) once per day the measurement has, restricted to that day, and combining the answers:

- buckets of a width that divides a day (1 h, 2 h, 5 m; epoch-aligned, so a day's edge is a bucket edge) lie
  in one day each: the per-day answers are only put together and sorted as one query's would be;
- per-series statistics (every=None) and buckets that may straddle midnight are combined: count and sum add,
  max/min/first_time/last_time take the extreme, a mean is asked of each day as sum and count and divided
  once, first/last take the value of the day with the earliest/latest time;
- what cannot be combined from days (percentiles across days) runs as one task over the whole window.

`map(fn, items)` runs the tasks: `serial_map` here, Dask's client in analyzer.dask_engine. A task is a small
picklable `Task` (store path + query); `run_task` is what a worker executes, against its own cached reader of
the same path, so the store must be on a file system every worker sees at that path.

Combined means are sum/count over days instead of DuckDB's one avg(): equal to the single query's up to the
order of floating-point additions (relative differences of ~1e-16 per addition). Counts, extremes, first/last
values, times and tags are exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from agents.query.base import (
    TIME_AGGS,
    Agg,
    AggregateQuery,
    FrameQuery,
    Reader,
    Stat,
    empty_frame,
    empty_stats,
    finalize,
    finalize_stats,
)
from agents.stores import embedded as store

DAY_NS = 86_400 * 10**9
_SEP = "\x00"  # hidden per-day column names: name + _SEP + part (never a valid identifier, so never a clash)

Mapper = Callable[[Callable, list], list]


def serial_map(fn: Callable, items: list) -> list:
    """The map of one process: the tasks one after the other."""
    return [fn(item) for item in items]


@dataclass(frozen=True)
class Task:
    """One partition's query: the store's path and a query restricted to one day (or the whole window)."""

    path: str
    query: AggregateQuery | FrameQuery


_local = threading.local()


def _reader(path: str):
    """This thread's reader of path, kept between tasks: it caches Parquet footers and parsed pending files,
    and its DuckDB connection must not be shared between threads."""
    from agents.query.embedded import EmbeddedReader

    readers = getattr(_local, "readers", None)
    if readers is None:
        readers = _local.readers = {}
    if path not in readers:
        readers[path] = EmbeddedReader(path)
    return readers[path]


def run_task(task: Task):
    """A task's frame (the frame contract of agents.query.base), computed by EmbeddedReader."""
    reader = _reader(task.path)
    q = task.query
    return reader._aggregate(q) if isinstance(q, AggregateQuery) else reader._frame(q)


def day_windows(days: Sequence[str], start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """[start, end) of each day, clipped to [start_ns, end_ns); days outside the window give nothing."""
    out = []
    for day in days:
        lo = store.day_of_start_ns(day)
        lo, hi = max(lo, start_ns), min(lo + DAY_NS, end_ns)
        if lo < hi:
            out.append((lo, hi))
    return out


def _per_day_stats(stats: tuple[Stat, ...]) -> tuple[Stat, ...]:
    """What each day is asked so that days combine exactly: a mean as sum and count; first/last with the
    time of that value."""
    out: list[Stat] = []
    for s in stats:
        if s.agg.name == "mean":
            out += [Stat(s.name + _SEP + "sum", s.field, Agg("sum")),
                    Stat(s.name + _SEP + "count", s.field, Agg("count"))]
        elif s.agg.name in ("first", "last"):
            out += [s, Stat(s.name + _SEP + "t", s.field, Agg(f"{s.agg.name}_time"))]
        else:
            out.append(s)
    return tuple(out)


def _aligned(every_ns: int | None) -> bool:
    """Buckets of this width never straddle a day's edge."""
    return every_ns is not None and DAY_NS % every_ns == 0


class PartitionedReader(Reader):
    """A Reader over an embedded store whose aggregate()/frame() run as one task per measurement and day."""

    def __init__(self, local, map_tasks: Mapper = serial_map, parallel_queries: int = 1) -> None:
        self.local = local  # the EmbeddedReader of the same path: listings, bounds, tag values
        self.path = str(local.path)
        self.map_tasks = map_tasks
        self.parallel_queries = parallel_queries
        self._lock = threading.Lock()  # the local reader's caches are filled from one thread at a time
        self.tasks_run = 0
        self.log: list[dict] = []  # per query: measurement, tasks, seconds (bench/analyze_dask.py reports them)

    def _windows(self, measurement: str, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        with self._lock:
            return day_windows(self.local.days(measurement), start_ns, end_ns)

    def _map(self, queries: list) -> list:
        t0 = time.perf_counter()
        out = self.map_tasks(run_task, [Task(self.path, q) for q in queries])
        with self._lock:
            self.tasks_run += len(queries)
            self.log.append({"measurement": queries[0].measurement, "tasks": len(queries),
                             "seconds": round(time.perf_counter() - t0, 4)})
        return out

    def _aggregate(self, q: AggregateQuery):
        windows = self._windows(q.measurement, q.start_ns, q.end_ns)
        if not windows:
            return empty_stats(q)
        if _aligned(q.every_ns):
            parts = self._map([replace(q, start_ns=lo, end_ns=hi) for lo, hi in windows])
            return _stats_frame(q, _concat(parts))
        if any(s.agg.name == "percentile" for s in q.stats):
            return self._map([q])[0]  # a nearest-rank percentile needs every value at once
        per_day = replace(q, stats=_per_day_stats(q.stats))
        parts = self._map([replace(per_day, start_ns=lo, end_ns=hi) for lo, hi in windows])
        return _combine_stats(q, _concat(parts))

    def _frame(self, q: FrameQuery):
        windows = self._windows(q.measurement, q.start_ns, q.end_ns)
        if not windows:
            return empty_frame(q)
        if q.every_ns is not None and not _aligned(q.every_ns):
            return self._map([q])[0]
        parts = self._map([replace(q, start_ns=lo, end_ns=hi) for lo, hi in windows])
        df = _concat(parts)
        if df is None:
            return empty_frame(q)
        return finalize(q, _times(df["time"]), {t: df[t].to_numpy(object) for t in q.by},
                        {f: df[f].to_numpy() for f in q.fields})

    def measurements(self) -> list[str]:
        with self._lock:
            return self.local.measurements()

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        with self._lock:
            return self.local.tag_values(measurement, tag)

    def time_bounds(self, measurement: str):
        with self._lock:
            return self.local.time_bounds(measurement)

    def close(self) -> None:
        self.local.close()


def _concat(parts: list):
    import pandas as pd

    frames = [p for p in parts if p is not None and len(p)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _times(column):
    """A datetime64[ns, UTC] column as int64 epoch ns, NaT as NAT."""
    import pandas as pd

    return pd.DatetimeIndex(column).as_unit("ns").asi8


def _stats_frame(q: AggregateQuery, df):
    """The aggregate contract's frame from per-partition rows that need no combining (or combined ones)."""
    if df is None:
        return empty_stats(q)
    times = _times(df["time"]) if q.every_ns is not None else None
    values = {}
    for s in q.stats:
        values[s.name] = _times(df[s.name]) if s.agg.name in TIME_AGGS else df[s.name].to_numpy()
    return finalize_stats(q, times, {t: df[t].to_numpy(object) for t in q.by}, values)


def _combine_stats(q: AggregateQuery, df):
    """One row per series (and bucket) from the rows of each day (asked with _per_day_stats)."""
    import numpy as np

    if df is None:
        return empty_stats(q)
    keys = (["time"] if q.every_ns is not None else []) + list(q.by)
    if not keys:
        df = df.assign(**{_SEP: 0})
        keys = [_SEP]
    groups = df.groupby(keys, sort=False, dropna=False)
    index = groups.size().index
    out = index.to_frame(index=False)
    for s in q.stats:
        n, agg = s.name, s.agg.name
        if agg == "count":
            col = groups[n].sum()
        elif agg == "sum":
            col = groups[n].sum(min_count=1)
        elif agg in ("max", "last_time"):
            col = groups[n].max()
        elif agg in ("min", "first_time"):
            col = groups[n].min()
        elif agg == "mean":
            total = groups[n + _SEP + "sum"].sum(min_count=1).to_numpy(float)
            count = groups[n + _SEP + "count"].sum().to_numpy(float)
            out[n] = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
            continue
        elif agg in ("first", "last"):
            t = n + _SEP + "t"
            timed = df.loc[df[t].notna(), [*keys, n, t]].sort_values(t, kind="stable")
            col = timed.drop_duplicates(keys, keep="first" if agg == "first" else "last").set_index(keys)[n]
        else:  # percentiles are never split by day (PartitionedReader._aggregate)
            raise ValueError(f"{agg} cannot be combined from days")
        col = col.reindex(index)
        out[n] = _times(col) if agg in TIME_AGGS else col.to_numpy()  # times as epoch ns, NaT as NAT
    times = _times(out["time"]) if q.every_ns is not None else None
    values = {s.name: out[s.name].to_numpy() for s in q.stats}
    return finalize_stats(q, times, {t: out[t].to_numpy(object) for t in q.by}, values)
