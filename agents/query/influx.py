"""Reading InfluxDB: InfluxQL over the v1 /query endpoint (1.x natively, 2.x and 3.x via DBRP mapping).

Aggregation is pushed down (GROUP BY time(...) fill(none)); responses are requested chunked and parsed
one chunk (one JSON document a line) at a time, so a large result is never one huge JSON text.
Secrets come from the environment or files only (FLEETWISE_INFLUXDB_PASSWORD(_FILE),
FLEETWISE_INFLUXDB_TOKEN(_FILE)); HTTPS certificates are verified.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

from agents.query import identifiers
from agents.query.base import (
    NAT,
    TIME_AGGS,
    AggregateQuery,
    FrameQuery,
    QueryError,
    Reader,
    TagCodes,
    finalize,
    finalize_stats,
    influx_duration,
)
from agents.stores.url import StoreURL

_CHUNK_SIZE = 10_000


def _secret(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(name + "_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return None


class InfluxReader(Reader):
    def __init__(self, url: StoreURL, timeout: float = 120.0) -> None:
        if url.kind != "influxdb":
            raise ValueError(f"InfluxReader needs an influxdb:// URL, got {url}")
        self.url = url
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        token = _secret("FLEETWISE_INFLUXDB_TOKEN")
        password = _secret("FLEETWISE_INFLUXDB_PASSWORD")
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif url.user or password:
            creds = f"{url.user}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
        self._ssl = ssl.create_default_context() if url.base_url.startswith("https:") else None

    # -- transport ------------------------------------------------------------------------------
    def _results(self, q: str) -> Iterator[dict]:
        """Yield each statement result of each chunk; raise QueryError on any error."""
        params = {"q": q, "db": self.url.database, "epoch": "ns", "chunked": "true", "chunk_size": str(_CHUNK_SIZE)}
        if self.url.retention_policy:
            params["rp"] = self.url.retention_policy
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self.url.base_url + "/query", data=body, method="POST", headers={
            **self._headers, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise QueryError(f"InfluxDB at {self.url.base_url} answered {e.code}: {detail}") from None
        except OSError as e:
            raise QueryError(f"InfluxDB at {self.url.base_url} unreachable: {e}") from None
        with resp:
            for line in resp:
                if not line.strip():
                    continue
                doc = json.loads(line)
                if doc.get("error"):
                    raise QueryError(f"InfluxDB: {doc['error']}")
                for result in doc.get("results", []):
                    if result.get("error"):
                        raise QueryError(f"InfluxDB: {result['error']}")
                    yield result

    def _series(self, q: str) -> Iterator[dict]:
        for result in self._results(q):
            yield from result.get("series", [])

    # -- queries --------------------------------------------------------------------------------
    def _frame(self, q: FrameQuery):
        qi = identifiers.influxql
        if q.every_ns is None:
            select = ", ".join(qi(f, "field") for f in q.fields)
        else:
            select = ", ".join(f"{_agg(q, qi(f, 'field'))} AS {qi(f, 'field')}" for f in q.fields)
        text = (f"SELECT {select} FROM {qi(q.measurement, 'measurement')}"
                f" WHERE time >= {int(q.start_ns)} AND time < {int(q.end_ns)}")
        group = [f"time({influx_duration(q.every_ns)})"] if q.every_ns is not None else []
        group += [qi(t, "tag") for t in q.by]
        if group:
            text += " GROUP BY " + ", ".join(group)
        if q.every_ns is not None:
            text += " fill(none)"
        return _assemble(q, self._series(text))

    def _aggregate(self, q: AggregateQuery):
        """One statement for the value stats (influxd reads each field once per call, never a row per point
        back to us) and one per time stat: a lone first()/last() selector without GROUP BY time is the only
        way InfluxQL reports the time of a point. The statements run on two connections at once, so influxd
        computes one while this process parses the other."""
        qi = identifiers.influxql
        where = f" WHERE time >= {int(q.start_ns)} AND time < {int(q.end_ns)}" + "".join(
            f" AND {qi(c.field, 'field')} {c.op} {_number(c.value)}" for c in q.where)
        group = [f"time({influx_duration(q.every_ns)})"] if q.every_ns is not None else []
        group += [qi(t, "tag") for t in q.by]
        tail = (" GROUP BY " + ", ".join(group) if group else "") + (" fill(none)" if q.every_ns is not None else "")
        source = f" FROM {qi(q.measurement, 'measurement')}{where}{tail}"
        values = [s for s in q.stats if s.agg.name not in TIME_AGGS]
        statements = []
        if values:
            select = ", ".join(f"{_agg(s, qi(s.field, 'field'))} AS {qi(s.name, 'column')}" for s in values)
            statements.append(("SELECT " + select + source, values))
        for s in q.stats:
            if s.agg.name in TIME_AGGS:
                fn = "first" if s.agg.name == "first_time" else "last"
                statements.append((f"SELECT {fn}({qi(s.field, 'field')}) AS {qi(s.name, 'column')}{source}", [s]))
        names = [[s.name for s in stats] for _, stats in statements]
        parts = self._many([text for text, _ in statements], q.by, names)
        if len(parts) == 1:
            times, tags, cols = parts[0]
            return finalize_stats(q, times if q.every_ns is not None else None, tags,
                                  _with_times(cols, statements[0][1], times))
        return _merge_series(q, [(p, stats) for p, (_, stats) in zip(parts, statements, strict=True)])

    def _many(self, texts: list[str], by, names: list[list[str]]) -> list:
        """Each statement's columns (see _columns), two statements in flight at a time."""
        if len(texts) == 1:
            return [_columns(self._series(texts[0]), by, names[0])]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda i: _columns(self._series(texts[i]), by, names[i]), range(len(texts))))

    def measurements(self) -> list[str]:
        names = [row[0] for s in self._series("SHOW MEASUREMENTS") for row in s.get("values") or []]
        return sorted(names)

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        qi = identifiers.influxql
        text = f"SHOW TAG VALUES FROM {qi(measurement, 'measurement')} WITH KEY = {qi(tag, 'tag')}"
        return sorted(row[1] for s in self._series(text) for row in s.get("values") or [] if row[1] != "")

    def time_bounds(self, measurement: str):
        import pandas as pd

        m = identifiers.influxql(measurement, "measurement")
        bounds = []
        for order in ("ASC", "DESC"):
            found = [row[0] for s in self._series(f"SELECT * FROM {m} ORDER BY time {order} LIMIT 1")
                     for row in (s.get("values") or [])[:1]]
            if not found:
                return None
            bounds.append(pd.Timestamp(int(found[0]), unit="ns", tz="UTC"))
        return bounds[0], bounds[1]


def _number(value: float) -> str:
    """An InfluxQL number literal for value: positional and exact (InfluxQL has no exponent notation)."""
    import decimal

    if isinstance(value, int):
        return str(value)
    return format(decimal.Decimal(value), "f")


def _agg(q: FrameQuery, col: str) -> str:
    """InfluxQL of q.agg over col (q: anything with an .agg)."""
    if q.agg.name == "percentile":
        return f"percentile({col}, {float(q.agg.percentile)!r})"
    return f"{q.agg.name}({col})"


def _assemble(q: FrameQuery, series_iter):
    """Series documents -> a frame (see _columns)."""
    times, tags, values = _columns(series_iter, q.by, q.fields)
    return finalize(q, times, tags, values)


def _columns(series_iter, by, names):
    """Series documents -> (times, TagCodes per tag, column per name), converted per series in bulk: one code
    per series for each tag and one float64 array per numeric column, so no Python object is kept per value."""
    import numpy as np

    times: list = []
    codes: dict[str, list] = {t: [] for t in by}
    lookup: dict[str, dict] = {t: {} for t in by}
    values: dict[str, list] = {f: [] for f in names}
    for series in series_iter:
        rows = series.get("values") or []
        if not rows:
            continue
        n = len(rows)
        index = {c: i for i, c in enumerate(series["columns"])}
        table = np.empty((n, len(series["columns"])), dtype=object)
        table[:] = rows
        times.append(table[:, 0].astype(np.int64))
        series_tags = series.get("tags") or {}
        for t in by:
            seen = lookup[t]
            codes[t].append(np.full(n, seen.setdefault(series_tags.get(t, ""), len(seen)), dtype=np.int64))
        for f in names:
            i = index.get(f)
            values[f].append(np.full(n, np.nan) if i is None else _numeric_or_raw(table[:, i]))
    if not times:
        return (np.zeros(0, dtype=np.int64), {t: TagCodes(np.zeros(0, dtype=np.int64), []) for t in by},
                {f: np.zeros(0) for f in names})
    tags = {t: TagCodes(np.concatenate(codes[t]), list(lookup[t])) for t in by}
    return np.concatenate(times), tags, {f: _concat(values[f]) for f in names}


def _with_times(cols: dict, stats, times) -> dict:
    """A time stat's statement reports the point's time in the time column; its value column is the value."""
    return {s.name: (times if s.agg.name in TIME_AGGS else cols[s.name]) for s in stats}


def _merge_series(q: AggregateQuery, parts):
    """Outer-join the per-series answers of several statements (every=None: one row per series each)."""
    import numpy as np

    keys: dict[tuple, int] = {}
    per_part = []
    for (times, tags, cols), stats in parts:
        names = [np.asarray(tags[t].uniques, dtype=object)[np.asarray(tags[t].codes)] if q.by else None
                 for t in q.by]
        rows = [keys.setdefault(k, len(keys)) for k in zip(*names, strict=True)] if q.by else \
            ([keys.setdefault((), 0)] if len(times) else [])
        per_part.append((np.asarray(rows, dtype=np.int64), _with_times(cols, stats, times)))
    n = len(keys)
    values: dict = {}
    for (rows, cols), (_, stats) in zip(per_part, parts, strict=True):
        for s in stats:
            col = cols[s.name]
            if s.agg.name in TIME_AGGS:
                full = np.full(n, NAT, dtype=np.int64)
            elif col.dtype.kind == "f":
                full = np.full(n, np.nan)
            else:
                full = np.full(n, None, dtype=object)
            full[rows] = col
            values[s.name] = full
    tag_cols = {t: [k[i] for k in keys] for i, t in enumerate(q.by)}
    return finalize_stats(q, None, tag_cols, values)


def _numeric_or_raw(column):
    """float64 (NaN for null) when every value is a number, else the values as they came."""
    import numpy as np
    import pandas as pd

    if pd.api.types.infer_dtype(column, skipna=True) in ("integer", "floating", "mixed-integer-float", "empty"):
        return np.where(np.equal(column, None), np.nan, column).astype(np.float64)
    return np.array(column, dtype=object)


def _concat(parts):
    import numpy as np

    if len({p.dtype.kind for p in parts}) > 1:
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts)
