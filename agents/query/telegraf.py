"""Reading Telegraf's measurements in InfluxDB as fleetwise measurements.

`influxdb://host:8086/telegraf?schema=telegraf`, or detected: a database holding Telegraf's measurements
(nvidia_smi, amd_rocm_smi, cpu, mem, diskio, net, infiniband) and none of fleetwise's own is read this way.
Every field comes from agents.schema.equivalents (the one mapping table shared with the Prometheus reader and
docs/existing-telemetry.md): the Telegraf measurement and field, tag names (nvidia_smi's index / uuid / name,
amd_rocm_smi's gpu_id / gpu_unique_id, diskio's name), units (MiB, %, MHz, 4-byte words), and which are
counters. Queries go to the wrapped InfluxReader, so aggregation stays pushed down into InfluxQL.

Counters (diskio, net, infiniband bytes): a bucket's rate is the difference of the last value of the
counter in it and in the bucket before, over their distance; a drop (reset, wrap) gives no rate. Over a
whole window (every=None) the mean rate is (last - first) / (their times' distance), NaN across a reset.
"""

from __future__ import annotations

from agents.query.base import NAT, AggregateQuery, FrameQuery, QueryError, Reader, finalize, finalize_stats
from agents.query.mapped import combine, tag_column, view_tag_filter
from agents.schema.equivalents import (
    TELEGRAF,
    Equivalent,
    View,
    equivalents,
    telegraf_field,
    telegraf_measurement,
    telegraf_views,
)

SCHEMAS = ("fleetwise", "telegraf")


def telegraf_measurements() -> set[str]:
    return {telegraf_measurement(e) for e in equivalents(TELEGRAF)}


def with_schema(inner: Reader, schema: str) -> Reader:
    """inner as it is (fleetwise's schema), or read through Telegraf's; "" detects which from the
    measurements present (an unreachable server is left to fail on first use, with its own message)."""
    if schema not in ("", *SCHEMAS):
        raise ValueError(f"?schema={schema!r}: use one of {', '.join(SCHEMAS)}")
    if schema == "":
        from agents import schema as fw_schema

        try:
            present = set(inner.measurements())
        except QueryError:
            return inner
        # cpu, net and infiniband are names both use: only Telegraf's own names, and none of the fleetwise
        # measurements Telegraf's would stand for, tell it apart
        only_telegraf = telegraf_measurements() - set(fw_schema.MEASUREMENTS)
        stands_for = {e.measurement for e in equivalents(TELEGRAF)} - telegraf_measurements()
        if present & only_telegraf and not present & stands_for:
            schema = "telegraf"
    return TelegrafReader(inner) if schema == "telegraf" else inner


class TelegrafReader(Reader):
    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.parallel_queries = getattr(inner, "parallel_queries", 1)
        self._present: set[str] | None = None

    def close(self) -> None:
        self.inner.close()

    def source_measurements(self) -> set[str]:
        if self._present is None:
            self._present = set(self.inner.measurements())
        return self._present

    def mapped(self) -> list[str]:
        return sorted(telegraf_measurements())

    def _parts(self, measurement: str, field: str) -> list[tuple[View, Equivalent]]:
        present = self.source_measurements()
        return [(v, e) for e in equivalents(TELEGRAF, measurement) if e.field == field
                and telegraf_measurement(e) in present for v in telegraf_views(measurement, telegraf_measurement(e))]

    def check_mapped(self) -> None:
        """QueryError in one line when no mapped measurement is there: what was looked for, what was found."""
        if not self.measurements():
            found = sorted(self.source_measurements())
            raise QueryError(f"no Telegraf measurement that fleetwise maps: looked for {', '.join(self.mapped())}; "
                             f"found {', '.join(found) or 'no measurements at all'}")

    def native(self) -> set[str]:
        """fleetwise's own measurements written beside Telegraf's (the agent's job collector next to
        Telegraf's host plugins): read as they are. Names Telegraf also uses (cpu, net, infiniband) are
        Telegraf's here."""
        from agents import schema as fw_schema

        mapped = {e.measurement for e in equivalents(TELEGRAF)} | telegraf_measurements()
        return (self.source_measurements() & set(fw_schema.MEASUREMENTS)) - mapped

    def measurements(self) -> list[str]:
        names = sorted({e.measurement for e in equivalents(TELEGRAF)})
        return sorted({*(m for m in names if any(self._parts(m, e.field) for e in equivalents(TELEGRAF, m))),
                       *self.native()})

    def frame(self, measurement, fields, start, end, every=None, by=(), agg="mean", where_tags=None):
        reader = self.inner if measurement in self.native() else super()
        return reader.frame(measurement, fields, start, end, every=every, by=by, agg=agg, where_tags=where_tags)

    def aggregate(self, measurement, stats, start, end, every=None, by=(), where=(), where_tags=None):
        reader = self.inner if measurement in self.native() else super()
        return reader.aggregate(measurement, stats, start, end, every=every, by=by, where=where,
                                where_tags=where_tags)

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        if measurement in self.native():
            return self.inner.tag_values(measurement, tag)
        found: set[str] = set()
        for e in equivalents(TELEGRAF, measurement):
            for view, eq in self._parts(measurement, e.field):
                src = dict(view.tags).get(tag)
                if src is None:
                    continue
                found.update([src[1:]] if src.startswith("=") else
                             self.inner.tag_values(telegraf_measurement(eq), src))
        return sorted(v for v in found if v)

    def time_bounds(self, measurement: str):
        if measurement in self.native():
            return self.inner.time_bounds(measurement)
        bounds = [b for m in sorted({telegraf_measurement(eq) for e in equivalents(TELEGRAF, measurement)
                                     for _, eq in self._parts(measurement, e.field)})
                  for b in [self.inner.time_bounds(m)] if b is not None]
        if not bounds:
            return None
        return min(b[0] for b in bounds), max(b[1] for b in bounds)

    # -- one statistic of one mapped field through one view ----------------------------------------
    def _inner_by(self, view: View, eq: Equivalent, by) -> list[str]:
        tags = dict(view.tags)
        labels = [tags[t] for t in by if t in tags and not tags[t].startswith("=")]
        return list(dict.fromkeys([*labels, *(k for k, _ in eq.match)]))

    def _to_fleetwise(self, f, view: View, eq: Equivalent, by, timed: bool):
        """Inner rows -> [time?, *by, v, n]: rows not matching eq.match dropped, tags renamed."""
        import pandas as pd

        for k, v in eq.match:
            f = f[f[k] == v]
        out = pd.DataFrame({"time": f["time"].to_numpy()} if timed else {})
        for tag in by:
            out[tag] = tag_column(view, tag, f.reset_index(drop=True))
        return out

    def _stat(self, view: View, eq: Equivalent, stat, by, q, every_ns):
        import numpy as np
        import pandas as pd

        m, field = telegraf_measurement(eq), telegraf_field(eq)
        inner_by = self._inner_by(view, eq, by)
        name = stat.agg.name if hasattr(stat, "agg") else stat
        where = [(field if c.field == eq.field else self._where_field(view, eq, c), c.op, c.value / eq.scale)
                 for c in getattr(q, "where", ())]
        if eq.counter:
            if where or name not in ("mean", "count"):
                raise QueryError(f"Telegraf reader: {name} of {eq.metric}'s rate is not supported")
            if name == "mean":
                return self._counter_mean(view, eq, by, inner_by, q, every_ns)
        timed = every_ns is not None
        if name == "mean":
            stats = {"v": (field, "sum"), "n": (field, "count")}
        else:
            agg = f"p{stat.agg.percentile:g}" if name == "percentile" else name
            stats = {"v": (field, agg)}
        f = self.inner.aggregate(m, stats, q.start_ns, q.end_ns, every=every_ns and f"{every_ns}ns",
                                 by=inner_by, where=where, where_tags=_inner_tags(view, q))
        out = self._to_fleetwise(f, view, eq, by, timed)
        kept = f
        for k, v in eq.match:
            kept = kept[kept[k] == v]
        v = kept["v"]
        if name in ("first_time", "last_time"):
            out["v"] = np.where(v.isna(), np.nan, v.to_numpy("datetime64[ns]").view("int64") / 1e6)
        elif name == "count":
            out["v"] = v.to_numpy(float)
        else:
            out["v"] = v.to_numpy(float) * eq.scale
        out["n"] = kept["n"].to_numpy(float) if "n" in kept else 1.0
        if timed:
            out["time"] = pd.to_datetime(out["time"]).astype("int64") // 10**6
        return out

    def _where_field(self, view, eq, cond) -> str:
        others = [e for e in equivalents(TELEGRAF, view.measurement)
                  if e.field == cond.field and telegraf_measurement(e) == telegraf_measurement(eq)]
        if not others or others[0].scale != eq.scale:
            raise QueryError(f"Telegraf reader: cannot filter {eq.metric} on {cond.field}")
        return telegraf_field(others[0])

    def _counter_mean(self, view, eq, by, inner_by, q, every_ns):
        """Mean rate per bucket (or over the window) from the counter's last values, resets dropped."""
        import numpy as np
        import pandas as pd

        m, field = telegraf_measurement(eq), telegraf_field(eq)
        series = list(dict.fromkeys([*inner_by, *(src for _, src in view.tags if not src.startswith("="))]))
        if every_ns is None:
            f = self.inner.aggregate(m, {"a": (field, "first"), "b": (field, "last"), "ta": (field, "first_time"),
                                         "tb": (field, "last_time")}, q.start_ns, q.end_ns, by=series,
                                     where_tags=_inner_tags(view, q))
            seconds = (f["tb"] - f["ta"]).dt.total_seconds()
            rate = (f["b"] - f["a"]) / seconds.where(seconds > 0)
            f = f.assign(rate=rate.where(rate >= 0))
        else:
            # one bucket before the window gives the first bucket's starting value
            f = self.inner.frame(m, [field], q.start_ns - every_ns, q.end_ns, every=f"{every_ns}ns", by=series,
                                 agg="last", where_tags=_inner_tags(view, q))
            f = f.sort_values([*series, "time"], kind="stable")
            same = (f[series] == f[series].shift()).all(axis=1) if series else pd.Series(True, index=f.index)
            gap = f["time"].diff().dt.total_seconds()
            rate = (f[field] - f[field].shift()) / gap
            f = f.assign(rate=rate.where(same & (rate >= 0) & np.isfinite(rate)))
            f = f[f["time"] >= pd.Timestamp(q.start_ns - q.start_ns % every_ns, unit="ns", tz="UTC")]
        for k, v in eq.match:
            f = f[f[k] == v]
        f = f[f["rate"].notna()].reset_index(drop=True)
        out = self._to_fleetwise(f, view, eq, by, every_ns is not None)
        out["v"] = f["rate"].to_numpy(float) * eq.scale
        out["n"] = 1.0
        if every_ns is not None:
            out["time"] = pd.to_datetime(out["time"]).astype("int64") // 10**6
        return out

    # -- the Reader contract --------------------------------------------------------------------
    def _frame(self, q: FrameQuery):
        import numpy as np
        import pandas as pd

        timed = q.every_ns is not None
        keys = ["time", *q.by]
        merged = None
        for field in q.fields:
            pieces = []
            for view, eq in self._parts(q.measurement, field):
                if _inner_tags(view, q) is None:
                    continue
                if timed:
                    pieces.append(self._stat(view, eq, q.agg.name if q.agg.name != "percentile" else _Stat(q.agg),
                                             q.by, q, q.every_ns))
                else:
                    pieces.append(self._raw(view, eq, q))
            f = combine(pieces, keys, q.agg.name if timed else "raw").rename(columns={"v": field})
            merged = f if merged is None else merged.merge(f, on=keys, how="outer")
        if merged is None or merged.empty:
            return finalize(q, [], {t: [] for t in q.by}, {f: [] for f in q.fields})
        times = merged["time"].to_numpy(np.int64) * (10**6 if timed else 1)
        return finalize(q, times, {t: merged[t].to_numpy(object) for t in q.by},
                        {f: pd.to_numeric(merged[f]).to_numpy(float) for f in q.fields})

    def _raw(self, view, eq, q):

        m, field = telegraf_measurement(eq), telegraf_field(eq)
        series = list(dict.fromkeys([*self._inner_by(view, eq, q.by),
                                     *(src for _, src in view.tags if not src.startswith("="))]))
        f = self.inner.frame(m, [field], q.start_ns, q.end_ns, by=series, where_tags=_inner_tags(view, q))
        for k, v in eq.match:
            f = f[f[k] == v]
        f = f.reset_index(drop=True)
        values = f[field].to_numpy(float)
        if eq.counter:
            f = f.sort_values([*series, "time"], kind="stable").reset_index(drop=True)
            same = (f[series] == f[series].shift()).all(axis=1)
            rate = (f[field] - f[field].shift()) / f["time"].diff().dt.total_seconds()
            keep = (same & (rate >= 0)).to_numpy()
            f, values = f[keep].reset_index(drop=True), rate[keep].to_numpy(float)
        out = self._to_fleetwise(f, view, eq, q.by, True)
        out["time"] = f["time"].to_numpy("datetime64[ns]").view("int64")
        out["v"] = values * eq.scale
        out["n"] = 1.0
        return out

    def _aggregate(self, q: AggregateQuery):
        import numpy as np

        keys = [*(["time"] if q.every_ns is not None else []), *q.by]
        merged = None
        for s in q.stats:
            pieces = [self._stat(view, eq, s, q.by, q, q.every_ns) for view, eq in self._parts(q.measurement, s.field)
                      if _inner_tags(view, q) is not None]
            f = combine(pieces, keys, s.agg.name).rename(columns={"v": s.name})
            if merged is None:
                merged = f
            elif keys:
                merged = merged.merge(f, on=keys, how="outer")
            else:
                merged = merged.join(f, how="outer")
        if merged is None or merged.empty:
            return finalize_stats(q, None if q.every_ns is None else [], {t: [] for t in q.by},
                                  {s.name: [] for s in q.stats})
        values = {}
        for s in q.stats:
            col = merged[s.name].astype(float)
            if s.agg.name in ("first_time", "last_time"):
                values[s.name] = np.where(col.isna(), NAT, (col.fillna(0).to_numpy() * 1e6).round()).astype(np.int64)
            elif s.agg.name == "count":
                values[s.name] = col.fillna(0).to_numpy()
            else:
                values[s.name] = col.to_numpy()
        times = merged["time"].to_numpy(np.int64) * 10**6 if q.every_ns is not None else None
        return finalize_stats(q, times, {t: merged[t].to_numpy(object) for t in q.by}, values)


def _inner_tags(view: View, q) -> dict[str, tuple[str, ...]] | None:
    """The query's where_tags as the Telegraf measurement's tags, or None when no series of the view can
    match (see mapped.view_tag_filter); two fleetwise tags read from one Telegraf tag must both hold."""
    found = view_tag_filter(view, q.where_tags)
    if found is None:
        return None
    out: dict[str, tuple[str, ...]] = {}
    for label, host, values in found:
        if host:  # no Telegraf view reads a host:port label
            raise QueryError(f"Telegraf reader: cannot filter on {label} as host:port")
        out[label] = tuple(v for v in out[label] if v in values) if label in out else values
    return out


class _Stat:
    """A frame() percentile dressed as an aggregate() stat for _stat."""

    def __init__(self, agg) -> None:
        self.agg = agg
