"""The read side shared by both stores: the Reader interface, aggregate and interval parsing, and the
one normalization every frame goes through so both backends return identical frames.

Frame contract: columns ["time", *by, *fields]; time is datetime64[ns, UTC]; tag columns are object
dtype holding str ("" where a point had no such tag, as InfluxDB reports it); field columns are float64
(count: int64, 0 where a bucket had no value of that field; string/bool fields: object); rows sorted by
the by-tags then time; empty buckets omitted (InfluxQL fill(none)).

Aggregate contract (Reader.aggregate): several aggregates of several fields in one pass, one row per
series (distinct by-tag values) over the whole window, or per series and bucket when every is given:
columns [("time",) *by, *stat names]. Tags as above; count columns int64 (0 where the field had no
value); first_time / last_time columns (the time of a field's first / last value, per series only)
datetime64[ns, UTC] (NaT where none); other stats as frame() fields. A row exists where any requested
field had a value (after the where conditions); rows sorted by the by-tags then time.

Tag filters (where_tags, both kinds): {tag: value or values} keeps the points whose tag equals the value
(or one of the values; an empty sequence matches nothing); several tags are ANDed. A point without the tag
has it as "" (as InfluxDB reports it), so {"rack": ""} keeps the points that have no rack. Tag keys are
validated identifiers, values are bound parameters (SQL) or escaped string literals (InfluxQL, PromQL).
"""

from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agents.query.identifiers import validate

AGGS = ("mean", "max", "min", "last", "sum", "count")
STAT_AGGS = (*AGGS, "first", "first_time", "last_time")  # what Reader.aggregate computes besides pNN
TIME_AGGS = ("first_time", "last_time")
OPS = ("<", "<=", ">", ">=", "=", "!=")
NAT = -(2**63)  # "no time" in the int64 epoch-ns columns backends hand to finalize_stats (pandas' NaT)
_PCT = re.compile(r"^p(100|\d{1,2}(\.\d+)?)$")
_DURATION = re.compile(r"^(\d+)(ns|us|u|µ|ms|s|m|h|d|w)$")
_UNIT_NS = {"ns": 1, "us": 1_000, "u": 1_000, "µ": 1_000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}


TagFilter = tuple[tuple[str, tuple[str, ...]], ...]  # ((tag, accepted values), ...), checked


class QueryError(RuntimeError):
    """A query the store refused or could not answer."""


@dataclass(frozen=True)
class Agg:
    name: str  # one of AGGS or "percentile"
    percentile: float | None = None


def parse_agg(agg: str) -> Agg:
    if agg in AGGS:
        return Agg(agg)
    m = _PCT.match(agg) if isinstance(agg, str) else None
    if m and 0 < float(m.group(1)) <= 100:
        return Agg("percentile", float(m.group(1)))
    raise ValueError(f"unknown aggregate {agg!r}: use one of {', '.join(AGGS)} or pNN (e.g. p95)")


def parse_stat(agg: str) -> Agg:
    """An aggregate for Reader.aggregate: frame()'s (parse_agg) plus first, first_time and last_time."""
    if agg in STAT_AGGS:
        return Agg(agg)
    try:
        return parse_agg(agg)
    except ValueError:
        raise ValueError(f"unknown aggregate {agg!r}: use one of {', '.join(STAT_AGGS)} or pNN (e.g. p95)") from None


def parse_every(every: str | dt.timedelta) -> int:
    """Bucket width in nanoseconds from "10s", "1m", "1h", "1d", "500ms" or a timedelta."""
    if isinstance(every, dt.timedelta):
        ns = (every.days * 86_400 + every.seconds) * 10**9 + every.microseconds * 1_000
    else:
        m = _DURATION.match(str(every).strip())
        if not m:
            raise ValueError(f"bad interval {every!r}: use e.g. 10s, 1m, 1h, 1d or a timedelta")
        ns = int(m.group(1)) * _UNIT_NS[m.group(2)]
    if ns <= 0:
        raise ValueError(f"interval {every!r} must be positive")
    return ns


def influx_duration(ns: int) -> str:
    """The largest exact InfluxQL duration literal for ns (InfluxQL accepts w, d, h, m, s, ms, u, ns)."""
    for unit in ("w", "d", "h", "m", "s", "ms", "u"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns}ns"


def to_timestamp(value):
    """A UTC pandas Timestamp from a datetime, Timestamp or ISO string; naive times are taken as UTC."""
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"not a time: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def time_ns(value) -> int:
    return int(to_timestamp(value).as_unit("ns").value)


@dataclass(frozen=True)
class FrameQuery:
    """A checked frame() request, the same object handed to either backend."""

    measurement: str
    fields: tuple[str, ...]
    start_ns: int
    end_ns: int
    every_ns: int | None
    by: tuple[str, ...]
    agg: Agg
    where_tags: TagFilter = ()

    @property
    def matches_nothing(self) -> bool:
        return any(not values for _, values in self.where_tags)

    @classmethod
    def build(cls, measurement, fields, start, end, every, by, agg, where_tags=None) -> FrameQuery:
        validate(measurement, "measurement")
        if isinstance(fields, str):
            fields = [fields]
        fields = tuple(validate(f, "field") for f in fields)
        by = tuple(validate(b, "tag") for b in by)
        if not fields:
            raise ValueError("frame() needs at least one field")
        start_ns, end_ns, every_ns = _checked_window(["time", *by, *fields], start, end, every)
        return cls(measurement, fields, start_ns, end_ns, every_ns, by, parse_agg(agg), checked_tags(where_tags))


# Line protocol (and agents.points) refuse these in a tag value, so no store holds a value with one: such a
# value matches nothing (and never reaches a query text).
_UNSTORABLE = ("\n", "\r")


def checked_tags(where_tags) -> TagFilter:
    """where_tags as ((tag, sorted distinct values), ...): keys validated, a lone string taken as one value,
    values that no store can hold dropped (a key left without values matches nothing)."""
    if where_tags is None:
        return ()
    if not isinstance(where_tags, Mapping):
        raise ValueError(f"where_tags: give a mapping of tag -> value or values, got {type(where_tags).__name__}")
    out = []
    for tag, values in where_tags.items():
        validate(tag, "tag")
        if isinstance(values, str):
            values = (values,)
        elif isinstance(values, bytes | Mapping) or not isinstance(values, Iterable):
            raise ValueError(f"where_tags: {tag!r} needs a string or a sequence of strings, got {values!r}")
        values = tuple(values)
        for v in values:
            if not isinstance(v, str):
                raise ValueError(f"where_tags: {tag!r} values must be strings, got {v!r}")
        out.append((tag, tuple(sorted({v for v in values if not any(c in v for c in _UNSTORABLE)}))))
    return tuple(out)


def _checked_window(names: list[str], start, end, every) -> tuple[int, int, int | None]:
    """(start_ns, end_ns, every_ns) of a request whose output columns are names, checked as both query
    kinds need: distinct column names, end after start, a valid bucket width."""
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate or reserved column names in {names}")
    start_ns, end_ns = time_ns(start), time_ns(end)
    if end_ns <= start_ns:
        raise ValueError(f"end {end!r} is not after start {start!r}")
    return start_ns, end_ns, None if every is None else parse_every(every)


@dataclass(frozen=True)
class Stat:
    """One output column of an aggregate query: agg of field."""

    name: str
    field: str
    agg: Agg


@dataclass(frozen=True)
class Condition:
    """A point filter on a numeric field value (points without the field never match, as in InfluxQL)."""

    field: str
    op: str
    value: float


@dataclass(frozen=True)
class AggregateQuery:
    """A checked aggregate() request, the same object handed to either backend."""

    measurement: str
    stats: tuple[Stat, ...]
    start_ns: int
    end_ns: int
    every_ns: int | None
    by: tuple[str, ...]
    where: tuple[Condition, ...] = ()
    where_tags: TagFilter = ()

    @property
    def matches_nothing(self) -> bool:
        return any(not values for _, values in self.where_tags)

    @property
    def fields(self) -> tuple[str, ...]:
        """The distinct fields the stats read, in order of first use."""
        return tuple(dict.fromkeys(s.field for s in self.stats))

    @classmethod
    def build(cls, measurement, stats, start, end, every, by, where, where_tags=None) -> AggregateQuery:
        import math

        validate(measurement, "measurement")
        by = tuple(validate(b, "tag") for b in by)
        if not isinstance(stats, Mapping) or not stats:
            raise ValueError("aggregate() needs stats: a non-empty mapping of column name -> (field, aggregate)")
        built = []
        for name, spec in stats.items():
            if not (isinstance(spec, tuple | list) and len(spec) == 2):
                raise ValueError(f"stat {name!r}: give (field, aggregate), got {spec!r}")
            built.append(Stat(validate(name, "column"), validate(spec[0], "field"), parse_stat(spec[1])))
        start_ns, end_ns, every_ns = _checked_window(["time", *by, *stats], start, end, every)
        if every_ns is not None and any(s.agg.name in TIME_AGGS for s in built):
            # InfluxQL labels a bucket with its start, never with a point's time
            raise ValueError("first_time and last_time are per series only: use every=None")
        conds = []
        for cond in where:
            if not (isinstance(cond, tuple | list) and len(cond) == 3):
                raise ValueError(f"where: give (field, op, number) conditions, got {cond!r}")
            field, op, value = cond
            if op not in OPS:
                raise ValueError(f"where: unknown operator {op!r}: use one of {', '.join(OPS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"where: {field!r} {op} needs a finite number, got {value!r}")
            conds.append(Condition(validate(field, "field"), op, value))
        return cls(measurement, tuple(built), start_ns, end_ns, every_ns, by, tuple(conds), checked_tags(where_tags))


@dataclass(frozen=True)
class TagCodes:
    """A tag column as integer codes into a list of distinct values: backends that already know their
    distinct tag values (one per series, a dictionary per batch) hand these over instead of one Python
    string per row, so finalize never hashes or type-checks per row and equal strings are shared."""

    codes: object  # numpy integer array, one code per row
    uniques: Sequence  # str or None per code


def finalize(q: FrameQuery, times: Sequence[int], tags: dict[str, Sequence], values: dict[str, Sequence]):
    """Build the frame both backends return from plain columns (times as epoch ns).

    Columns may be lists or numpy arrays; a tag column may also be a TagCodes. Types are decided once
    per column, never per value in Python."""
    import numpy as np
    import pandas as pd

    t_ns = np.asarray(times, dtype="int64")
    count = q.every_ns is not None and q.agg.name == "count"
    codes, uniques = {}, {}
    for t in q.by:
        codes[t], uniques[t] = _tag_codes(tags[t])
    cols = {f: _field_column(values[f], count=count) for f in q.fields}
    if len(t_ns) and q.fields and not count:
        # fill(none) and raw queries: a row with no value in any field does not exist.
        keep = np.zeros(len(t_ns), dtype=bool)
        for c in cols.values():
            keep |= ~np.isnan(c) if c.dtype.kind == "f" else pd.notna(c)
        if not keep.all():
            t_ns = t_ns[keep]
            codes = {t: c[keep] for t, c in codes.items()}
            cols = {f: c[keep] for f, c in cols.items()}
    if q.every_ns is not None and len(t_ns):
        # one row per (series, bucket): tag codes rank like their strings, so an integer lexsort (stable)
        # gives the order of a stable sort by the tag strings then time
        order = np.lexsort([t_ns, *[codes[t] for t in reversed(q.by)]])
        if not (order[1:] > order[:-1]).all():
            t_ns = t_ns[order]
            codes = {t: c[order] for t, c in codes.items()}
            cols = {f: c[order] for f, c in cols.items()}
    data = {"time": pd.to_datetime(t_ns, unit="ns", utc=True).as_unit("ns")}
    for t in q.by:
        data[t] = pd.Series(uniques[t][codes[t]], dtype=object)
    for f in q.fields:
        data[f] = pd.Series(cols[f], dtype=cols[f].dtype)
    df = pd.DataFrame(data)
    if q.every_ns is None and len(df):
        sort = [*q.by, "time", *q.fields]  # points of different series at one instant: deterministic order
        df = df.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
    return df


def _tag_codes(column):
    """(codes, sorted distinct strings) for a tag column; None becomes "" (as InfluxDB reports it), codes
    rank like the strings."""
    import numpy as np
    import pandas as pd

    if isinstance(column, TagCodes):
        raw_codes, raw_uniques = np.asarray(column.codes), list(column.uniques)
    else:
        arr = column if isinstance(column, np.ndarray) else np.asarray(list(column), dtype=object)
        if arr.dtype != object:
            arr = arr.astype(object)
        raw_codes, found = pd.factorize(arr)
        raw_uniques = list(found)
        if (raw_codes < 0).any():
            raw_codes = np.where(raw_codes < 0, len(raw_uniques), raw_codes)
            raw_uniques.append("")
    names = ["" if v is None else str(v) for v in raw_uniques]
    rank, distinct = pd.factorize(np.asarray(names, dtype=object), sort=True)
    distinct = np.asarray(distinct, dtype=object)
    if not len(raw_codes):
        return np.zeros(0, dtype=np.int64), distinct
    return rank.astype(np.int64)[raw_codes], distinct


_NUMERIC = ("integer", "floating", "mixed-integer-float", "empty", "integer-na")


def _field_column(values: Sequence, count: bool):
    """One field column as a numpy array: float64 (count: int64, 0 for missing), else object holding
    bool or str with None for missing. The type is inferred once per column (pandas infer_dtype, in C)."""
    import numpy as np
    import pandas as pd

    if isinstance(values, np.ma.MaskedArray):
        values = values.astype(float).filled(np.nan) if values.dtype.kind in "iuf" else \
            np.where(np.ma.getmaskarray(values), None, values.data.astype(object))
    arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
    if arr.ndim != 1:
        arr = np.asarray(list(values) if len(arr) else [], dtype=object).reshape(-1)
    kind = arr.dtype.kind
    if count:
        if kind in "iub":
            return arr.astype(np.int64)
        num = arr.astype(np.float64) if kind == "f" else pd.Series(arr, dtype=object).astype(np.float64).to_numpy()
        return np.where(np.isnan(num), 0, num).astype(np.int64)
    if kind in "iuf":
        return arr.astype(np.float64)
    if kind == "b":
        return arr.astype(object)
    if kind != "O":
        arr = arr.astype(object)
    inferred = pd.api.types.infer_dtype(arr, skipna=True)
    if inferred in _NUMERIC:
        return pd.Series(arr, dtype=object).astype(np.float64).to_numpy()
    if inferred == "boolean":
        return np.asarray([None if v is None or (isinstance(v, float) and v != v) else bool(v) for v in arr],
                          dtype=object)
    return np.asarray([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in arr],
                      dtype=object)


def empty_frame(q: FrameQuery):
    return finalize(q, [], {t: [] for t in q.by}, {f: [] for f in q.fields})


def finalize_stats(q: AggregateQuery, times: Sequence[int] | None, tags: dict[str, Sequence],
                   values: dict[str, Sequence]):
    """Build the frame both backends return for an aggregate query from plain columns.

    times: bucket starts as epoch ns (None when every is None); values: one column per stat name, time
    stats as int64 epoch ns with NAT where none (never floats: they hold epoch ns only to 2**53).
    Types are decided once per column."""
    import numpy as np
    import pandas as pd

    n = len(next(iter(values.values()))) if values else 0
    codes, uniques = {}, {}
    for t in q.by:
        codes[t], uniques[t] = _tag_codes(tags[t])
    cols, present = {}, np.zeros(n, dtype=bool)
    for s in q.stats:
        raw = values[s.name]
        if s.agg.name == "count":
            cols[s.name] = _field_column(raw, count=True)
            present |= cols[s.name] > 0
        elif s.agg.name in TIME_AGGS:
            cols[s.name] = np.asarray(raw, dtype=np.int64)
            present |= cols[s.name] != NAT
        else:
            cols[s.name] = _field_column(raw, count=False)
            c = cols[s.name]
            present |= ~np.isnan(c) if c.dtype.kind == "f" else pd.notna(c)
    t_ns = None if times is None else np.asarray(times, dtype="int64")
    if n and not present.all():
        codes = {t: c[present] for t, c in codes.items()}
        cols = {k: c[present] for k, c in cols.items()}
        t_ns = None if t_ns is None else t_ns[present]
    keys = [codes[t] for t in reversed(q.by)]
    if t_ns is not None:
        keys.insert(0, t_ns)
    if keys and len(keys[0]):
        order = np.lexsort(keys)
        if not (order[1:] > order[:-1]).all():
            codes = {t: c[order] for t, c in codes.items()}
            cols = {k: c[order] for k, c in cols.items()}
            t_ns = None if t_ns is None else t_ns[order]
    data = {}
    if q.every_ns is not None:
        data["time"] = pd.to_datetime(t_ns if t_ns is not None else [], unit="ns", utc=True).as_unit("ns")
    for t in q.by:
        data[t] = pd.Series(uniques[t][codes[t]], dtype=object)
    for s in q.stats:
        c = cols[s.name]
        if s.agg.name in TIME_AGGS:
            data[s.name] = pd.Series(pd.to_datetime(c.view("datetime64[ns]")).tz_localize("UTC").as_unit("ns"))
        else:
            data[s.name] = pd.Series(c, dtype=c.dtype)
    return pd.DataFrame(data, columns=list(data))


def empty_stats(q: AggregateQuery):
    return finalize_stats(q, None if q.every_ns is None else [], {t: [] for t in q.by},
                          {s.name: [] for s in q.stats})


class Reader(abc.ABC):
    """One query API over InfluxDB and the embedded store (see the module doc for the frame contract)."""

    # queries a caller may have in flight at once from threads (the embedded reader's one DuckDB connection
    # is not shared between threads, and DuckDB parallelizes each query itself)
    parallel_queries: int = 1

    def frame(self, measurement: str, fields: Sequence[str], start, end, every: str | dt.timedelta | None = None,
              by: Sequence[str] = (), agg: str = "mean",
              where_tags: Mapping[str, str | Sequence[str]] | None = None):
        """Values of `fields` in [start, end): raw points when every is None, else `agg` per bucket of
        width `every` aligned to multiples of it since the epoch (InfluxQL GROUP BY time), per by-tag.
        where_tags: {tag: value or values} the points must have (see the module doc)."""
        q = FrameQuery.build(measurement, fields, start, end, every, by, agg, where_tags)
        return empty_frame(q) if q.matches_nothing else self._frame(q)

    @abc.abstractmethod
    def _frame(self, q: FrameQuery): ...

    def aggregate(self, measurement: str, stats: Mapping[str, tuple[str, str]], start, end,
                  every: str | dt.timedelta | None = None, by: Sequence[str] = (),
                  where: Sequence[tuple[str, str, float]] = (),
                  where_tags: Mapping[str, str | Sequence[str]] | None = None):
        """Several aggregates in one pass over [start, end): one row per series (distinct by-tag values),
        or per series and bucket of width every (aligned as in frame()).

        stats maps each output column to (field, aggregate): mean, max, min, sum, count, first, last,
        pNN (nearest rank, as InfluxQL), or first_time / last_time (when the field's first / last value in
        the window was taken; every=None only). where: (field, op, number) conditions a point must meet;
        where_tags: {tag: value or values} it must have (see the module doc).
        Heavy per-point work stays in the store: the answer is series (x buckets) long, not points long."""
        q = AggregateQuery.build(measurement, stats, start, end, every, by, where, where_tags)
        return empty_stats(q) if q.matches_nothing else self._aggregate(q)

    @abc.abstractmethod
    def _aggregate(self, q: AggregateQuery): ...

    @abc.abstractmethod
    def measurements(self) -> list[str]: ...

    @abc.abstractmethod
    def tag_values(self, measurement: str, tag: str) -> list[str]: ...

    @abc.abstractmethod
    def time_bounds(self, measurement: str):
        """(first, last) point times as UTC pandas Timestamps, or None when the measurement is empty."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
