"""Reading InfluxDB: InfluxQL over the v1 /query endpoint (1.x natively, 2.x and 3.x via DBRP mapping).

Aggregation is pushed down (GROUP BY time(...) fill(none)); responses are requested chunked and parsed
one chunk (one JSON document a line) at a time, so a large result is never one huge JSON text.
Secrets come from the environment or files only (FLEETWISE_INFLUXDB_PASSWORD(_FILE),
FLEETWISE_INFLUXDB_TOKEN(_FILE)); HTTPS certificates are verified.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
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
    finalize,
    finalize_stats,
    influx_duration,
    parse_every,
)
from agents.query.gc_pause import gc_paused
from agents.stores.connection import describe_foreign, endpoint, influx_error, is_influx_answer
from agents.stores.secrets import Credentials
from agents.stores.url import StoreURL

_CHUNK_SIZE = 10_000
_MSGPACK = "application/x-msgpack"


def _has_msgpack() -> bool:
    import importlib.util

    return importlib.util.find_spec("msgpack") is not None


class InfluxReader(Reader):
    parallel_queries = 2  # influxd answers one query while this process parses another
    # the answer's type asked for: MessagePack where the msgpack package is installed (see _documents)
    accept = _MSGPACK if _has_msgpack() else "application/json"

    def __init__(self, url: StoreURL, timeout: float = 120.0, ca_file: Path | None = None,
                 credentials: Credentials | None = None) -> None:
        if url.kind != "influxdb":
            raise ValueError(f"InfluxReader needs an influxdb:// URL, got {url}")
        self.url = url
        self.timeout = timeout
        # The writers' endpoint: same credentials, same CA (a private CA that can be written can be read).
        self.endpoint = endpoint(url, timeout, ca_file, credentials)
        self._headers = self.endpoint.auth_headers()
        self._ssl = self.endpoint.ssl_context()
        # ?rollup=RP[:WIDTH][,RP[:WIDTH]...]: the rollup levels (retention policies) and their bucket widths;
        # each aggregate reads the coarsest level that answers it exactly (see _rollup_source)
        self.rollups = rollup_levels(url.params.get("rollup", ""), url.params.get("rollup_every"))
        # ?rollup_by=MEASUREMENT:TAG[:TAG...][,...]: measurements whose levels also hold a companion rolled up
        # over only those tags (the deploy's gpu per host, job_gpu per GPU: see rollup_groups)
        self.rollup_by = rollup_groups(url.params.get("rollup_by", ""))
        self.now_ns = time.time_ns  # what a level holds yet depends on the time (_level_end)

    # -- transport ------------------------------------------------------------------------------
    def _results(self, q: str) -> Iterator[dict]:
        """Yield each statement result of each chunk; raise QueryError on any error."""
        params = {"q": q, "db": self.url.database, "epoch": "ns", "chunked": "true", "chunk_size": str(_CHUNK_SIZE)}
        if self.url.retention_policy:
            params["rp"] = self.url.retention_policy
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self.url.base_url + "/query", data=body, method="POST", headers={
            **self._headers, "Accept": self.accept, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl)
        except urllib.error.HTTPError as e:
            body = e.read()
            if not is_influx_answer(e.headers, body):
                raise QueryError(f"{self.url.base_url}: {describe_foreign(e.code, e.headers, body)}") from None
            raise QueryError(f"InfluxDB at {self.url.base_url} answered {e.code}: {influx_error(body)}") from None
        except OSError as e:
            raise QueryError(f"InfluxDB at {self.url.base_url} unreachable: {e}") from None
        with resp:
            if not is_influx_answer(resp.headers, b""):
                body = resp.read(4096)
                raise QueryError(f"{self.url.base_url}: {describe_foreign(resp.status, resp.headers, body)}")
            for doc in self._documents(resp):
                if doc.get("error"):
                    raise QueryError(f"InfluxDB: {doc['error']}")
                for result in doc.get("results", []):
                    if result.get("error"):
                        raise QueryError(f"InfluxDB: {result['error']}")
                    yield result

    def _documents(self, resp) -> Iterator[dict]:
        """The answer's documents, one a chunk: MessagePack where the server speaks it (InfluxDB 1.x: a third
        of JSON's bytes, parsed 3-4 times faster), else one JSON document a line (a server that does not
        know the MessagePack type answers JSON, its default)."""
        if resp.headers.get("Content-Type", "").startswith(_MSGPACK):
            import msgpack

            try:
                yield from msgpack.Unpacker(resp, raw=False, max_buffer_size=1 << 30)
            except (ValueError, msgpack.UnpackException):
                raise QueryError(f"InfluxDB at {self.url.base_url} sent a MessagePack answer that does not "
                                 "decode") from None
            return
        for line in resp:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                raise QueryError(f"InfluxDB at {self.url.base_url} sent a line that is not JSON") from None

    def _series(self, q: str) -> Iterator[dict]:
        for result in self._results(q):
            yield from result.get("series", [])

    # -- queries --------------------------------------------------------------------------------
    def _frame(self, q: FrameQuery):
        qi = identifiers.influxql
        where = f" WHERE time >= {int(q.start_ns)} AND time < {int(q.end_ns)}" + _tag_conditions(q)
        if q.every_ns is None:
            # raw points: tags selected as columns of one series, not GROUP BY tags, since influxd spends
            # tens of microseconds on each output group (a measurement with one point per job answers in a
            # second instead of ten)
            select = ", ".join([*(f"{qi(f, 'field')}::field AS {qi(f'__f{i}')}" for i, f in enumerate(q.fields)),
                                *(f"{qi(t, 'tag')}::tag AS {qi(f'__g{i}')}" for i, t in enumerate(q.by))])
            times, tags, values = _raw_columns(self._series(f"SELECT {select} FROM {qi(q.measurement, 'measurement')}"
                                                            + where), len(q.by), len(q.fields))
            return finalize(q, times, dict(zip(q.by, tags, strict=True)), dict(zip(q.fields, values, strict=True)))
        level = self._rollup_level(q, [(q.agg.name, f) for f in q.fields])
        if level is not None:
            times, tags, values = self._rollup_read(q, level, [(f, q.agg.name, f) for f in q.fields])
            return finalize(q, times, tags, values)
        source = qi(q.measurement, "measurement")
        select = ", ".join(f"{_agg(q, qi(f, 'field'))} AS {qi(f, 'field')}" for f in q.fields)
        group = [f"time({influx_duration(q.every_ns)})", *(qi(t, "tag") for t in q.by)]
        text = f"SELECT {select} FROM {source}{where} GROUP BY {', '.join(group)} fill(none)"
        return _assemble(q, self._series(text))

    def _rollup_source(self, q: FrameQuery | AggregateQuery, aggs: list[tuple[str, str]]) -> str | None:
        """FROM "db"."rollup"."measurement" of the coarsest rollup level that answers q exactly, else None (read
        the raw points).

        Exactly: an aggregate whose bucket (or, without buckets, the whole window) and window bounds are
        multiples of the level's width (each rollup point then falls wholly inside one bucket of the window)
        and whose every aggregate is one the rollup's sums, counts, maxima and minima give (mean = sum of sums /
        sum of counts), with no conditions on field values (those need the points)."""
        level = self._rollup_level(q, aggs)
        return None if level is None else self._level_source(q, level)

    def _level_source(self, q: FrameQuery | AggregateQuery, level: str) -> str:
        """FROM "db"."level"."measurement" for q: the measurement, or its companion where one answers q."""
        qi = identifiers.influxql
        measurement = q.measurement
        kept = self.rollup_by.get(measurement)
        # a query grouped and filtered by the companion's tags alone reads the companion: the same sums and
        # counts over fewer series (the fleet page's GPU heatmap: one series a host instead of one a GPU)
        if kept is not None and set(q.by) | {tag for tag, _ in q.where_tags} <= set(kept):
            measurement = companion(measurement, kept)
        return f"{qi(self.url.database, 'database')}.{qi(level, 'retention policy')}." \
               f"{qi(measurement, 'measurement')}"

    def _rollup_level(self, q: FrameQuery | AggregateQuery, aggs: list[tuple[str, str]]) -> str | None:
        """The retention policy _rollup_source reads for q (None: the raw points)."""
        if not self.rollups or not self.url.database:
            return None
        if getattr(q, "where", ()) or any(agg not in _ROLLUP_PARTS for agg, _ in aggs):
            return None
        if q.every_ns is None and isinstance(q, FrameQuery):
            return None  # a frame without buckets is the raw points themselves
        for name, width in self.rollups:  # coarsest first
            if (q.every_ns is None or q.every_ns % width == 0) and q.start_ns % width == 0 and q.end_ns % width == 0 \
                    and self._level_end(width, q.every_ns) > q.start_ns:
                return name
        return None

    def _level_end(self, width: int, every_ns: int | None) -> int:
        """Up to where a level of `width` surely holds its buckets, on the query's grid: its continuous query
        writes a bucket once it has closed, so all but the last closed one (its query may not have run yet);
        the rest of a window is read from the raw points (_rollup_read)."""
        end = (self.now_ns() // width - 1) * width
        return end if every_ns is None else end // every_ns * every_ns

    def _scan_rollup(self, q: FrameQuery | AggregateQuery, level: str) -> bool:
        """Whether _rollup_read reads the rollup level's points as they are and sums them here rather than
        have influxd group them by time: influxd 1.x spends a few microseconds on each (series, bucket,
        aggregate) of a GROUP BY time, however few points the bucket holds, five times what reading a point
        and summing it here costs, so where a bucket holds at most SCAN_POINTS points of a series (the
        dashboard's buckets: the level's own width) the points are read."""
        return q.every_ns is not None and q.every_ns // dict(self.rollups)[level] <= SCAN_POINTS

    def _rollup_read(self, q: FrameQuery | AggregateQuery, level: str, specs: list[tuple[str, str, str]]):
        """(times, tags, columns) of q from a rollup level (_rollup_level's, chosen once: the time moves on
        between calls): partial sums, counts, maxima and minima per bucket
        and q.by tags (the level's points as they are where _scan_rollup says so, else influxd's per-bucket
        sums of them; the raw points for what the level may not hold yet), combined here: sums and counts
        added, maxima and minima kept, means the sum of sums over the sum of counts; specs: (output column,
        aggregate, field)."""
        import numpy as np
        import pandas as pd

        qi = identifiers.influxql
        columns = list(dict.fromkeys(f"{k}_{field}" for _, agg, field in specs for k in _ROLLUP_PARTS[agg]))
        fields = list(dict.fromkeys(field for _, _, field in specs))
        group = " GROUP BY " + ", ".join(qi(t, "tag") for t in q.by) if q.by else ""
        source = self._level_source(q, level)
        cut = min(q.end_ns, self._level_end(dict(self.rollups)[level], q.every_ns))
        if self._scan_rollup(q, level):
            select, level_group = ", ".join(qi(c, "field") for c in columns), group
        else:  # many points a bucket: influxd adds them up (whole window: one row per group)
            select = ", ".join(f"{_PART_AGG[c.split('_', 1)[0]]}({qi(c, 'field')}) AS {qi(c, 'field')}"
                               for c in columns)
            keys = ([f"time({influx_duration(q.every_ns)})"] if q.every_ns is not None else []) + \
                [qi(t, "tag") for t in q.by]
            level_group = (" GROUP BY " + ", ".join(keys) if keys else "") + \
                (" fill(none)" if q.every_ns is not None else "")
        texts = [f"SELECT {select} FROM {source} WHERE time >= {int(q.start_ns)} AND time < {int(cut)}"
                 f"{_tag_conditions(q)}{level_group}"]
        if cut < q.end_ns:  # what the level may not hold yet: the raw points, each its own sum, count, max, min
            texts.append(f"SELECT {', '.join(qi(f, 'field') for f in fields)} FROM {qi(q.measurement, 'measurement')}"
                         f" WHERE time >= {int(cut)} AND time < {int(q.end_ns)}{_tag_conditions(q)}{group}")
        parts = self._many(texts, q.by, [columns, fields][:len(texts)])
        if len(parts) == 2:
            times, tags, points = parts[1]
            parts[1] = (times, tags, {c: _as_rollup(points[c.split("_", 1)[1]], c.split("_", 1)[0]) for c in columns})
        times, tags, values = _concat_columns(parts, q.by)
        buckets = times - times % q.every_ns if q.every_ns is not None else np.zeros_like(times)
        keys = {"__t": buckets, **{f"__g{i}": tags[t].codes for i, t in enumerate(q.by)}}
        if len(parts) == 1:
            out = _combine_runs(keys, {c: values[c] for c in columns})
        else:  # the raw tail's rows follow the level's: a (bucket, group) may come in two places
            frame = pd.DataFrame({**keys, **{c: values[c] for c in columns}})
            grouped = frame.groupby(list(keys), sort=False)
            # a sum of nothing but missing values is missing, as InfluxQL's sum() of no points
            out = pd.concat([grouped[c].max() if c.startswith("max_") else grouped[c].min() if c.startswith("min_")
                             else grouped[c].sum(min_count=1) for c in columns], axis=1).reset_index()
        result = {}
        for name, agg, field in specs:
            s, n = out.get(f"sum_{field}"), out.get(f"count_{field}")
            if agg == "mean":
                result[name] = (s / n.where(n > 0)).to_numpy(dtype=np.float64)
            elif agg == "count":
                result[name] = n.fillna(0).to_numpy(dtype=np.int64)
            else:
                result[name] = out[f"{_ROLLUP_PARTS[agg][0]}_{field}"].to_numpy(dtype=np.float64)
        out_tags = {t: TagCodes(out[f"__g{i}"].to_numpy(dtype=np.int64), tags[t].uniques) for i, t in enumerate(q.by)}
        return (out["__t"].to_numpy(dtype=np.int64) if q.every_ns is not None else None), out_tags, result

    def _aggregate(self, q: AggregateQuery):
        """One statement for the value stats (influxd reads each field once per call, never a row per point
        back to us) and one per time stat: a lone first()/last() selector without GROUP BY time is the only
        way InfluxQL reports the time of a point. The statements run on two connections at once, so influxd
        computes one while this process parses the other."""
        qi = identifiers.influxql
        where = f" WHERE time >= {int(q.start_ns)} AND time < {int(q.end_ns)}" + "".join(
            f" AND {qi(c.field, 'field')} {c.op} {_number(c.value)}" for c in q.where) + _tag_conditions(q)
        group = [f"time({influx_duration(q.every_ns)})"] if q.every_ns is not None else []
        group += [qi(t, "tag") for t in q.by]
        tail = (" GROUP BY " + ", ".join(group) if group else "") + (" fill(none)" if q.every_ns is not None else "")
        level = self._rollup_level(q, [(s.agg.name, s.field) for s in q.stats])
        if level is not None:
            times, tags, cols = self._rollup_read(q, level, [(s.name, s.agg.name, s.field) for s in q.stats])
            return finalize_stats(q, times, tags, cols)
        source = f" FROM {qi(q.measurement, 'measurement')}{where}{tail}"
        # one selector statement per (first|last, field) asked for with a time: it also answers that field's
        # first/last value (the value at that time), so asking for both costs one scan
        selectors: dict[tuple[str, str], list] = {}
        for s in q.stats:
            if s.agg.name in TIME_AGGS:
                selectors.setdefault((s.agg.name.removesuffix("_time"), s.field), []).append(s)
        for s in q.stats:
            if s.agg.name in ("first", "last") and (s.agg.name, s.field) in selectors:
                selectors[(s.agg.name, s.field)].append(s)
        served = {id(s) for group in selectors.values() for s in group}
        values = [s for s in q.stats if id(s) not in served]
        statements = []
        if values:
            select = ", ".join(f"{_agg(s, qi(s.field, 'field'))} AS {qi(s.name, 'column')}" for s in values)
            statements.append(("SELECT " + select + source, values))
        for (fn, field), stats in selectors.items():
            statements.append((f"SELECT {fn}({qi(field, 'field')}) AS {qi('__v')}{source}", stats))
        names = [[s.name for s in stats] if i == 0 and values else ["__v"] for i, (_, stats) in enumerate(statements)]
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


# the deploy's rollup levels (deploy/influxdb/influxdb-1x.iql): retention policy -> bucket width
DEPLOY_ROLLUPS = {"five_minutes": "5m", "fifteen_minutes": "15m", "one_hour": "1h"}
# and the companions its fleet_*_by_* continuous queries write beside each level (what ?rollup_by= names)
DEPLOY_COMPANIONS = {"gpu": ("host",), "job_gpu": ("host", "gpu")}


def rollup_levels(spec: str, every: str | None = None) -> list[tuple[str, int]]:
    """[(retention policy, bucket width ns)], coarsest first, from a store URL's ?rollup= value: retention
    policies separated by commas, each with its width after a colon ("five_minutes:5m"); without one, the
    deploy's width for its own levels (DEPLOY_ROLLUPS), else ?rollup_every= (default 5m)."""
    levels = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, width = item.partition(":")
        identifiers.validate(name, "retention policy")
        try:
            levels[name] = parse_every(width or DEPLOY_ROLLUPS.get(name) or every or "5m")
        except ValueError as e:
            raise QueryError(f"store URL: rollup {name!r}: {e}") from None
    return sorted(levels.items(), key=lambda level: -level[1])


def companion(measurement: str, tags) -> str:
    """The name of measurement's rollup companion over `tags` alone: "gpu_by_host", "job_gpu_by_host_gpu"."""
    return f"{measurement}_by_{'_'.join(tags)}"


def rollup_groups(spec: str) -> dict[str, tuple[str, ...]]:
    """{measurement: tags kept} from a store URL's ?rollup_by= value ("gpu:host,job_gpu:host:gpu"): each
    rollup level holds, beside measurement, companion(measurement, tags), rolled up by time and those tags
    only (deploy/influxdb/influxdb-1x.iql's fleet_*_by_* continuous queries)."""
    groups = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        measurement, *tags = item.split(":")
        if not tags:
            raise QueryError(f"store URL: rollup_by {item!r}: name the tags kept (MEASUREMENT:TAG[:TAG...])")
        for name, what in ((measurement, "measurement"), *((t, "tag") for t in tags)):
            identifiers.validate(name, what)
        groups[measurement] = tuple(tags)
    return groups


def _tag_conditions(q: FrameQuery | AggregateQuery) -> str:
    """InfluxQL of q.where_tags: quoted tag keys cast to ::tag (a field of that name never matches), values
    as escaped string literals. A missing tag equals '' in InfluxQL, as in the frame contract."""
    qi, lit = identifiers.influxql, identifiers.influxql_string
    return "".join(" AND (" + " OR ".join(f"{qi(tag, 'tag')}::tag = {lit(v)}" for v in values) + ")"
                   for tag, values in q.where_tags)


# the rollup columns each aggregate is made of (_rollup_read; the deploy's continuous queries write mean(*),
# sum(*), count(*), max(*), min(*) into fields mean_<field>, sum_<field>, ...), and how influxd adds up
# several points' columns
_ROLLUP_PARTS = {"mean": ("sum", "count"), "sum": ("sum",), "count": ("count",), "max": ("max",), "min": ("min",)}
_PART_AGG = {"sum": "sum", "count": "sum", "max": "max", "min": "min"}
SCAN_POINTS = 3  # a bucket of at most this many rollup points per series: read them (_scan_rollup)


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


@gc_paused
def _columns(series_iter, by, names):
    """Series documents -> (times, TagCodes per tag, column per name): rows of all series gathered into one
    table converted once per column (many series of one row each are the common answer of a per-series
    aggregate), tags as one code per series."""
    import numpy as np

    rows_all: list = []
    counts: list[int] = []
    codes: dict[str, list] = {t: [] for t in by}
    lookup: dict[str, dict] = {t: {} for t in by}
    layout = None
    for series in series_iter:
        rows = series.get("values") or []
        if not rows:
            continue
        if layout is None:
            layout = list(series["columns"])
        elif series["columns"] != layout:  # never seen within one statement; kept correct anyway
            index = [series["columns"].index(c) if c in series["columns"] else None for c in layout]
            rows = [[r[i] if i is not None else None for i in index] for r in rows]
        rows_all.extend(rows)
        counts.append(len(rows))
        series_tags = series.get("tags") or {}
        for t in by:
            seen = lookup[t]
            codes[t].append(seen.setdefault(series_tags.get(t, ""), len(seen)))
    if not rows_all:
        return (np.zeros(0, dtype=np.int64), {t: TagCodes(np.zeros(0, dtype=np.int64), []) for t in by},
                {f: np.zeros(0) for f in names})
    table = np.empty((len(rows_all), len(layout)), dtype=object)
    table[:] = rows_all
    del rows_all
    index = {c: i for i, c in enumerate(layout)}
    times = table[:, 0].astype(np.int64)
    n = np.asarray(counts, dtype=np.int64)
    tags = {t: TagCodes(np.repeat(np.asarray(codes[t], dtype=np.int64), n), list(lookup[t])) for t in by}
    values = {f: (np.full(len(times), np.nan) if f not in index else _numeric_or_raw(table[:, index[f]]))
              for f in names}
    return times, tags, values


def _combine_runs(keys: dict, columns: dict):
    """The rollup parts of one statement's rows combined per (bucket, group) as a frame [*keys, *columns]:
    maxima and minima kept (missing values skipped), the rest added (missing when every value is). One
    statement answers each group's rows in time order, so the rows of a (bucket, group) are adjacent: added
    by np.*.reduceat over the runs, and the rows are the answer itself where every bucket holds one point
    of a group (the level's own width: the dashboard's buckets), where a pandas groupby over the keys took
    a tenth of a second per 100,000 rows."""
    import numpy as np
    import pandas as pd

    n = len(keys["__t"])
    change = np.zeros(max(n - 1, 0), dtype=bool)
    for k in keys.values():
        change |= k[1:] != k[:-1]
    starts = np.flatnonzero(np.r_[True, change]) if n else np.zeros(0, dtype=np.int64)
    if len(starts) == n:
        return pd.DataFrame({**keys, **columns})
    out = {k: v[starts] for k, v in keys.items()}
    for c, v in columns.items():
        v = np.asarray(v, dtype=np.float64)
        if c.startswith(("max_", "min_")):
            out[c] = (np.fmax if c.startswith("max_") else np.fmin).reduceat(v, starts)
        else:
            present = np.add.reduceat(~np.isnan(v), starts)
            out[c] = np.where(present > 0, np.add.reduceat(np.nan_to_num(v), starts), np.nan)
    return pd.DataFrame(out)


def _as_rollup(values, part: str):
    """Raw points' values as the rollup column `part` (sum, count, max or min) of one point each."""
    import numpy as np
    import pandas as pd

    if part == "count":
        return pd.notna(values).astype(np.float64)
    return values


def _concat_columns(parts: list, by) -> tuple:
    """_columns' answers of several statements as one (tags recoded onto one list of values)."""
    import numpy as np

    if len(parts) == 1:
        return parts[0]
    tags = {}
    for t in by:
        uniques = list(dict.fromkeys(u for _, part_tags, _ in parts for u in part_tags[t].uniques))
        index = {u: i for i, u in enumerate(uniques)}
        tags[t] = TagCodes(np.concatenate([
            np.asarray([index[u] for u in part_tags[t].uniques], dtype=np.int64)[np.asarray(part_tags[t].codes)]
            for _, part_tags, _ in parts]), uniques)
    values = {c: _concat([cols[c] for _, _, cols in parts]) for c in parts[0][2]}
    return np.concatenate([times for times, _, _ in parts]), tags, values


@gc_paused
def _raw_columns(series_iter, n_tags: int, n_fields: int):
    """A raw query's rows (tags selected as __g columns, fields as __f) -> (times, tag columns, field columns)."""
    import numpy as np

    names = [f"__g{i}" for i in range(n_tags)] + [f"__f{i}" for i in range(n_fields)]
    rows_all: list = []
    layout = None
    for series in series_iter:
        rows = series.get("values") or []
        if layout is None and rows:
            layout = list(series["columns"])
        rows_all.extend(rows)
    if not rows_all:
        return np.zeros(0, dtype=np.int64), [[] for _ in range(n_tags)], [np.zeros(0) for _ in range(n_fields)]
    table = np.empty((len(rows_all), len(layout)), dtype=object)
    table[:] = rows_all
    del rows_all
    index = {c: i for i, c in enumerate(layout)}
    cols = {c: (table[:, index[c]] if c in index else np.full(len(table), None, dtype=object)) for c in names}
    return (table[:, 0].astype(np.int64), [cols[f"__g{i}"] for i in range(n_tags)],
            [_numeric_or_raw(cols[f"__f{i}"]) for i in range(n_fields)])


def _with_times(cols: dict, stats, times) -> dict:
    """A selector statement reports the point's time in the time column and its value as __v."""
    return {s.name: (times if s.agg.name in TIME_AGGS else cols.get("__v", cols.get(s.name))) for s in stats}


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
