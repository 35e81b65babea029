"""The read side shared by both stores: the Reader interface, aggregate and interval parsing, and the
one normalization every frame goes through so both backends return identical frames.

Frame contract: columns ["time", *by, *fields]; time is datetime64[ns, UTC]; tag columns are object
dtype holding str ("" where a point had no such tag, as InfluxDB reports it); field columns are float64
(count: int64, 0 where a bucket had no value of that field; string/bool fields: object); rows sorted by
the by-tags then time; empty buckets omitted (InfluxQL fill(none)).
"""

from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agents.query.identifiers import validate

AGGS = ("mean", "max", "min", "last", "sum", "count")
_PCT = re.compile(r"^p(100|\d{1,2}(\.\d+)?)$")
_DURATION = re.compile(r"^(\d+)(ns|us|u|µ|ms|s|m|h|d|w)$")
_UNIT_NS = {"ns": 1, "us": 1_000, "u": 1_000, "µ": 1_000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}


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

    @classmethod
    def build(cls, measurement, fields, start, end, every, by, agg) -> FrameQuery:
        validate(measurement, "measurement")
        if isinstance(fields, str):
            fields = [fields]
        fields = tuple(validate(f, "field") for f in fields)
        by = tuple(validate(b, "tag") for b in by)
        if not fields:
            raise ValueError("frame() needs at least one field")
        names = ["time", *by, *fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate or reserved column names in {names}")
        start_ns, end_ns = time_ns(start), time_ns(end)
        if end_ns <= start_ns:
            raise ValueError(f"end {end!r} is not after start {start!r}")
        every_ns = None if every is None else parse_every(every)
        return cls(measurement, fields, start_ns, end_ns, every_ns, by, parse_agg(agg))


def finalize(q: FrameQuery, times: Sequence[int], tags: dict[str, Sequence], values: dict[str, Sequence]):
    """Build the frame both backends return from plain columns (times as epoch ns)."""
    import numpy as np
    import pandas as pd

    data = {"time": pd.to_datetime(np.asarray(times, dtype="int64"), unit="ns", utc=True).as_unit("ns")}
    for t in q.by:
        data[t] = pd.Series(["" if v is None else str(v) for v in tags[t]], dtype=object)
    for f in q.fields:
        data[f] = _field_column(values[f], count=q.every_ns is not None and q.agg.name == "count")
    df = pd.DataFrame(data)
    if len(df) and q.fields:
        # fill(none) and raw queries: a row with no value in any field does not exist.
        df = df[df[list(q.fields)].notna().any(axis=1)] if not (q.every_ns and q.agg.name == "count") else df
    sort = [*q.by, "time"]
    if q.every_ns is None:
        sort += list(q.fields)  # points of different series at one instant: make their order deterministic
    df = df.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
    return df


def _field_column(values: Sequence, count: bool):
    import numpy as np
    import pandas as pd

    vals = list(values)
    if count:
        return pd.Series([0 if v is None or v != v else int(v) for v in vals], dtype="int64")
    present = [v for v in vals if v is not None and not (isinstance(v, float) and v != v)]
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
           for v in present):
        return pd.Series([np.nan if v is None else float(v) for v in vals], dtype="float64")
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return pd.Series([None if v is None else bool(v) for v in vals], dtype=object)
    return pd.Series([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in vals],
                     dtype=object)


def empty_frame(q: FrameQuery):
    return finalize(q, [], {t: [] for t in q.by}, {f: [] for f in q.fields})


class Reader(abc.ABC):
    """One query API over InfluxDB and the embedded store (see the module doc for the frame contract)."""

    def frame(self, measurement: str, fields: Sequence[str], start, end, every: str | dt.timedelta | None = None,
              by: Sequence[str] = (), agg: str = "mean"):
        """Values of `fields` in [start, end): raw points when every is None, else `agg` per bucket of
        width `every` aligned to multiples of it since the epoch (InfluxQL GROUP BY time), per by-tag."""
        return self._frame(FrameQuery.build(measurement, fields, start, end, every, by, agg))

    @abc.abstractmethod
    def _frame(self, q: FrameQuery): ...

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
