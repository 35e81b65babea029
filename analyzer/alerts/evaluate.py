"""One evaluation of an alert expression over the query API (InfluxDB or the embedded store), at a given
instant, with Prometheus' meaning: the latest value of each series within a lookback window, functions
over [now - window, now], aggregation by tags, then the comparisons.

Work stays in the store: each value is one Reader.aggregate() call (per series over the window), so the
answer is as long as the number of series, never the number of points."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from agents.query import Reader
from analyzer.alerts.expr import Condition, Expr, Value

LOOKBACK_SECONDS = 300.0  # Prometheus' default lookback for an instant vector
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
        "!=": operator.ne}
_AGG = {"avg": "mean", "min": "min", "max": "max", "sum": "sum", "count": "count"}
_OVER_TIME = {"avg_over_time": "mean", "min_over_time": "min", "max_over_time": "max"}


@dataclass(frozen=True)
class Sample:
    """One series for which every condition held: its labels (schema tag names, empty ones left out)
    and the first condition's value."""

    labels: dict[str, str]
    value: float


def _tag_filter(v: Value) -> dict[str, str] | None:
    """The = matchers on tags, pushed into the store's query (where_tags)."""
    return {m.name: m.value for m in v.selector.tag_matchers if m.op == "="} or None


def _value_frame(reader: Reader, v: Value, now, lookback: float):
    """Per series (all tags, plus matched info fields): the value column "v" of one Value, before
    aggregation."""
    import pandas as pd

    sel = v.selector
    window = v.window if v.window else lookback
    start, end = now - pd.Timedelta(seconds=window), now + pd.Timedelta(nanoseconds=1)
    tags = list(sel.tags)
    f = sel.field
    if v.func in ("", "bitand"):
        stats = {"v": (f, "last")}
    elif v.func in _OVER_TIME:
        stats = {"v": (f, _OVER_TIME[v.func])}
    elif v.func == "time_since":
        stats = {"last": (f, "last")}
    else:  # increase, rate, delta: first and last value of the window
        stats = {"first": (f, "first"), "last": (f, "last"), "n": (f, "count")}
    df = reader.aggregate(sel.measurement, stats, start, end, by=tags, where_tags=_tag_filter(v))
    if v.func in ("increase", "rate", "delta"):
        df = df[df["n"] >= 2].copy()
        if v.func == "delta":
            df["v"] = df["last"] - df["first"]
        else:
            # a counter that went down was reset within the window: what it counted since the reset
            # is all that is known, never a negative increase
            inc = (df["last"] - df["first"]).where(df["last"] >= df["first"], df["last"])
            df["v"] = inc / window if v.func == "rate" else inc
    elif v.func == "time_since":
        df["v"] = now.timestamp() - df["last"]
    elif v.func == "bitand":
        df["v"] = df["v"].map(lambda x: float(int(x) & v.mask))
    df = df[[*tags, "v"]]
    for m in sel.tag_matchers:
        if m.op == "!=":  # where_tags keeps equal values only: the rest is filtered here
            df = df[df[m.name] != m.value]
    if sel.info_matchers:
        df = _join_info(reader, v, df, now, lookback)
    return df.reset_index(drop=True)


def _join_info(reader: Reader, v: Value, df, now, lookback: float):
    """Add the matched string fields (the latest value per series in the lookback window) and keep the
    series whose values match, as the Prometheus export's join with the _info series does."""
    import pandas as pd

    sel = v.selector
    names = [m.name for m in sel.info_matchers]
    tags = list(sel.tags)
    start, end = now - pd.Timedelta(seconds=lookback), now + pd.Timedelta(nanoseconds=1)
    raw = reader.frame(sel.measurement, names, start, end, by=tags, where_tags=_tag_filter(v))
    if raw.empty:
        return df.iloc[0:0].assign(**{n: pd.Series(dtype=object) for n in names})
    info = raw.sort_values("time").groupby(tags, sort=False).tail(1)[[*tags, *names]]
    df = df.merge(info, on=tags, how="inner")
    for m in sel.info_matchers:
        keep = df[m.name].astype(str) == m.value
        df = df[keep if m.op == "=" else ~keep]
    return df


def _value(reader: Reader, v: Value, now, lookback: float):
    df = _value_frame(reader, v, now, lookback)
    if v.agg:
        by = list(v.by)
        if df.empty:
            return df[[*by, "v"]]
        df = df.groupby(by, as_index=False, sort=True)["v"].agg(_AGG[v.agg])
    return df


def _holds(reader: Reader, c: Condition, now, lookback: float):
    df = _value(reader, c.value, now, lookback)
    return df[_OPS[c.op](df["v"], c.threshold)]


def evaluate(reader: Reader, expr: Expr, now, lookback: float = LOOKBACK_SECONDS) -> list[Sample]:
    """The series for which every condition of expr holds at `now` (a UTC pandas Timestamp)."""
    labels = list(expr.labels)
    result = _holds(reader, expr.conditions[0], now, lookback)
    for c in expr.conditions[1:]:
        other = _holds(reader, c, now, lookback)[labels]
        result = result.merge(other, on=labels, how="inner")
    out = []
    for d in result.to_dict("records"):
        lab = {k: str(d[k]) for k in labels if d.get(k) not in (None, "")}
        out.append(Sample(lab, float(d["v"])))
    return out
