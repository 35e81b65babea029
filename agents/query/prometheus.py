"""Reading a Prometheus that scrapes node_exporter and dcgm-exporter, as fleetwise measurements.

`prometheus://HOST:9090` (`prometheuss://` for HTTPS, certificates verified; a bearer token from
FLEETWISE_PROMETHEUS_TOKEN(_FILE), never the URL). Every fleetwise field this reader serves comes from
agents.schema.equivalents (the one mapping table): which series, which labels become which tags, and the
unit conversion. Aggregation is pushed into PromQL over /api/v1/query_range and /api/v1/query
(sum_over_time / count_over_time for means, max_over_time, min_over_time, last_over_time,
quantile_over_time, rate() for counters), so what comes back is series x buckets, never raw samples.

Buckets are InfluxQL's: [t, t + every) aligned to multiples of every since the epoch, labelled with t, and
cut at the window's edges. Each is one evaluation at t + every - 1 ms over a range that covers exactly the
bucket's milliseconds (Prometheus 2 closes ranges at both ends, 3 opens them on the left).

Where PromQL cannot say what InfluxQL says, the answer is documented, not silently different:
- percentiles are quantile_over_time's (interpolated), not InfluxQL's nearest rank;
- counters: a bucket's mean rate is rate() over the bucket (the first increment, from the bucket before,
  is not in it); other statistics of a rate are taken over rate(counter[4 x step]) sampled every step;
- `where` conditions, first_time and last_time are evaluated on a subquery sampled every step (the scrape
  interval from /api/v1/status/config, or ?step= in the URL): exact to one step;
- first (the first value) reads raw samples.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from agents.query import promql
from agents.query.base import (
    NAT,
    AggregateQuery,
    FrameQuery,
    QueryError,
    Reader,
    finalize,
    finalize_stats,
    parse_every,
)
from agents.query.mapped import combine as _combine
from agents.query.mapped import strip_port as _strip_port
from agents.query.mapped import tag_column as _tag_column
from agents.query.mapped import tag_value, view_tag_filter
from agents.schema.equivalents import PROMETHEUS_SOURCES, Equivalent, View, equivalents, views
from agents.stores.url import StoreURL

MAX_POINTS = 10_000  # query_range refuses more than 11,000 points per series
RAW_CHUNK_MS = 86_400_000  # raw samples are read a day at a time
MAX_STEPS = 2_000  # subquery steps per series and window (Prometheus refuses queries over 50 M samples)


class PrometheusReader(Reader):
    parallel_queries = 2

    def __init__(self, url: StoreURL, timeout: float = 120.0, ca_file: Path | None = None) -> None:
        from agents.stores.connection import ssl_context
        from agents.stores.secrets import read_secret

        if url.kind != "prometheus":
            raise ValueError(f"PrometheusReader needs a prometheus:// URL, got {url}")
        self.url = url
        self.base = url.base_url
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        token = read_secret("FLEETWISE_PROMETHEUS_TOKEN")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # The same verification as every store connection: a private CA is added, never turned off.
        self._ssl = ssl_context(ca_file) if self.base.startswith("https:") else None
        self._step_ms = parse_every(url.params["step"]) // 10**6 if url.params.get("step") else None
        self._names: set[str] | None = None
        self._left_open: bool | None = None
        self._present: dict[tuple[str, str], list] = {}
        self._bounds_cache: dict[str, object] = {}

    # -- transport ------------------------------------------------------------------------------
    def _api(self, path: str, params: Iterable[tuple[str, str]] = (), post: bool = False):
        body = urllib.parse.urlencode(list(params))
        if post:
            req = urllib.request.Request(self.base + path, data=body.encode(), method="POST", headers={
                **self._headers, "Content-Type": "application/x-www-form-urlencoded"})
        else:
            req = urllib.request.Request(self.base + path + ("?" + body if body else ""), headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("error", detail)
            raise QueryError(f"Prometheus at {self.base} answered {e.code}: {detail}") from None
        except OSError as e:
            raise QueryError(f"Prometheus at {self.base} unreachable: {e}") from None
        except ValueError as e:
            raise QueryError(f"Prometheus at {self.base} sent a malformed answer: {e}") from None
        if doc.get("status") != "success":
            raise QueryError(f"Prometheus: {doc.get('error', doc)}")
        return doc["data"]

    def _instant(self, expr: str, t_ms: int) -> list[dict]:
        return self._api("/api/v1/query", [("query", expr), ("time", _seconds(t_ms))], post=True)["result"]

    def _range(self, expr: str, first_ms: int, last_ms: int, step_ms: int) -> list[dict]:
        out: list[dict] = []
        while first_ms <= last_ms:
            chunk_end = min(last_ms, first_ms + (MAX_POINTS - 1) * step_ms)
            out += self._api("/api/v1/query_range", [("query", expr), ("start", _seconds(first_ms)),
                                                     ("end", _seconds(chunk_end)), ("step", _seconds(step_ms))],
                             post=True)["result"]
            first_ms = chunk_end + step_ms
        return out

    # -- what the server has --------------------------------------------------------------------
    def metric_names(self) -> set[str]:
        if self._names is None:
            self._names = set(self._api("/api/v1/label/__name__/values"))
        return self._names

    def _view_present(self, view: View, eq: Equivalent) -> bool:
        if not all(m in self.metric_names() for m in eq.metrics):
            return False
        for label in view.require:  # a dcgm series carries pod / hpc_job only where a job holds the GPU
            sel = promql.selector(eq.metrics[0], dict(eq.match), (label,))
            if not self._api(f"/api/v1/label/{promql.label_name(label)}/values", [("match[]", sel)]):
                return False
        return True

    def _parts(self, measurement: str, fields: Iterable[str]) -> dict[str, list[tuple[View, Equivalent]]]:
        """Per field, the (view, equivalent) pairs whose series the server has (asked once per reader)."""
        out: dict[str, list] = {}
        for f in fields:
            if (measurement, f) not in self._present:
                self._present[(measurement, f)] = [
                    (v, e) for e in equivalents(PROMETHEUS_SOURCES, measurement) if e.field == f
                    for v in views(e.source, measurement) if self._view_present(v, e)]
            out[f] = self._present[(measurement, f)]
        return out

    def mapped(self) -> list[str]:
        """Every metric name the mapping table looks for (for the one-line 'nothing mapped' message)."""
        return sorted({m for e in equivalents(PROMETHEUS_SOURCES) for m in e.metrics})

    def check_mapped(self) -> None:
        """QueryError in one line when no mapped series is there: what was looked for, what was found."""
        if not self.measurements():
            found = sorted(self.metric_names())
            shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
            raise QueryError(f"no node_exporter or dcgm-exporter series that fleetwise maps: looked for "
                             f"{', '.join(self.mapped())}; found {shown or 'no series at all'}")

    def measurements(self) -> list[str]:
        names = sorted({e.measurement for e in equivalents(PROMETHEUS_SOURCES)})
        return [m for m in names if any(self._parts(m, [e.field for e in equivalents(PROMETHEUS_SOURCES, m)])
                                        .values())]

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        found: set[str] = set()
        for parts in self._parts(measurement, [e.field for e in equivalents(PROMETHEUS_SOURCES, measurement)]
                                 ).values():
            for view, eq in parts:
                src = dict(view.tags).get(tag)
                if src is None:
                    continue
                if src.startswith("="):
                    found.add(src[1:])
                    continue
                label = src.removesuffix(":host")
                sel = promql.selector(eq.metrics[0], dict(eq.match), view.require)
                values = self._api(f"/api/v1/label/{promql.label_name(label)}/values", [("match[]", sel)])
                found.update(_strip_port(v) if src.endswith(":host") else v for v in values)
        return sorted(v for v in found if v != "")

    def time_bounds(self, measurement: str):
        """First and last sample of any mapped series: found by zooming in, one range query a round, on
        count(last_over_time(...)) at ever finer steps, so no round reads more than the data once."""
        import time as _time

        import pandas as pd

        sels = sorted({promql.selector(m, dict(e.match), v.require)
                       for parts in self._parts(measurement, [e.field for e in
                                                              equivalents(PROMETHEUS_SOURCES, measurement)]).values()
                       for v, e in parts for m in e.metrics})
        if not sels:
            return None
        now_ms = int(_time.time() * 1000) + 60_000
        found = []
        for edge in (min, max):
            a, b = 0, now_ms
            while b - a > 2000:  # zoom in on the edge: the sample is in [t - step, t]
                step = max(1, (b - a) // 1000)
                times = self._steps_with_data(sels, a, b, step)
                if not times:
                    return None
                t = edge(times)
                a, b = max(0, t - step), t
            # the last two seconds: the raw samples themselves
            stamps = [round(float(v[0]) * 1000) for sel in sels
                      for series in self._instant(f"{sel}[{promql.duration_ms(b - a + 1)}]", b)
                      for v in series.get("values", []) if a <= round(float(v[0]) * 1000) <= b]
            if not stamps:
                return None
            found.append(edge(stamps))
        return pd.Timestamp(found[0], unit="ms", tz="UTC"), pd.Timestamp(found[1], unit="ms", tz="UTC")

    def _steps_with_data(self, sels: list[str], a_ms: int, b_ms: int, step_ms: int) -> list[int]:
        """Evaluation times t in a..b (every step) with a sample in [t - step, t]: closed at both ends on
        Prometheus 2; on 3 (left-open) the range is one millisecond longer."""
        width = step_ms + (1 if self._is_left_open() else 0)
        expr = " or ".join(f"count(last_over_time({s}[{promql.duration_ms(width)}]))" for s in sels)
        times = set()
        first = a_ms + step_ms
        for series in self._range(expr, first, b_ms + step_ms, step_ms):
            times.update(round(float(t) * 1000) for t, _ in series.get("values", []))
        return sorted(times)

    def _is_left_open(self) -> bool:
        if self._left_open is None:
            try:
                version = self._api("/api/v1/status/buildinfo").get("version", "2")
            except QueryError:
                version = "2"
            self._left_open = int(version.split(".")[0] or 2) >= 3
        return self._left_open

    def step_ms(self) -> int:
        """Subquery resolution: ?step= of the URL, else the global scrape interval, else 15 s."""
        if self._step_ms is None:
            self._step_ms = 15_000
            try:
                yaml = self._api("/api/v1/status/config").get("yaml", "")
                m = re.search(r"^\s*scrape_interval:\s*(\S+)", yaml, re.MULTILINE)
                if m:
                    self._step_ms = max(1, parse_every(m.group(1)) // 10**6)
            except (QueryError, ValueError):
                pass
        return self._step_ms

    # -- evaluation -----------------------------------------------------------------------------
    def _range_ms(self, lo_ms: int, hi_ms: int) -> int:
        """The range that, evaluated at hi - 1 ms, covers exactly [lo, hi)."""
        return hi_ms - lo_ms - (0 if self._is_left_open() else 1)

    def _evaluate(self, make, start_ns: int, end_ns: int, every_ns: int | None):
        """[(labels, bucket starts in ms (None per series), values)] of make(range_ms) over the window."""
        import numpy as np

        start_ms, end_ms = -(-start_ns // 10**6), -(-end_ns // 10**6)
        if end_ms <= start_ms:
            return []
        if every_ns is None:
            r = self._range_ms(start_ms, end_ms)
            if r <= 0:
                return []
            return [(s["metric"], None, np.asarray([_float(s["value"][1])]))
                    for s in self._instant(make(r, start_ms), end_ms - 1)]
        if every_ns % 10**6:
            raise QueryError("Prometheus keeps milliseconds: use a bucket width in whole milliseconds")
        w = every_ns // 10**6
        b_first, b_last = (start_ms // w) * w, ((end_ms - 1) // w) * w
        out = []
        edges = []  # buckets the window cuts: (label, lo, hi), each one instant evaluation
        head, tail = start_ms > b_first, end_ms < b_last + w
        if b_first == b_last and (head or tail):
            edges.append((b_first, start_ms, end_ms))
            mid_first, mid_last = 0, -1
        else:
            if head:
                edges.append((b_first, start_ms, b_first + w))
            if tail:
                edges.append((b_last, b_last, end_ms))
            mid_first, mid_last = b_first + (w if head else 0), b_last - (w if tail else 0)
        for bucket, lo, hi in edges:
            r = self._range_ms(lo, hi)
            if r > 0:
                out += [(s["metric"], np.asarray([bucket], dtype=np.int64), np.asarray([_float(s["value"][1])]))
                        for s in self._instant(make(r, lo), hi - 1)]
        if mid_first <= mid_last:
            for s in self._range(make(self._range_ms(0, w), None), mid_first + w - 1, mid_last + w - 1, w):
                vals = s.get("values", [])
                t = np.asarray([round(float(v[0]) * 1000) + 1 - w for v in vals], dtype=np.int64)
                out.append((s["metric"], t, np.asarray([_float(v[1]) for v in vals])))
        return out

    def _raw(self, view: View, eq: Equivalent, metric: str, start_ns: int, end_ns: int, tags: tuple[str, ...] = ()):
        """[(labels, times ms, values)] of one metric's raw samples in the window, a day at a time."""
        import numpy as np

        sel = promql.selector(metric, dict(eq.match), view.require, tags)
        start_ms, end_ms = -(-start_ns // 10**6), -(-end_ns // 10**6)
        per_series: dict[tuple, list] = {}
        lo = start_ms
        while lo < end_ms:
            hi = min(end_ms, lo + RAW_CHUNK_MS)
            r = self._range_ms(lo, hi)
            if r > 0:
                for s in self._instant(f"{sel}[{promql.duration_ms(r)}]", hi - 1):
                    key = tuple(sorted(s["metric"].items()))
                    per_series.setdefault(key, []).extend(s.get("values", []))
            lo = hi
        return [(dict(key), np.asarray([round(float(v[0]) * 1000) for v in vals], dtype=np.int64),
                 np.asarray([_float(v[1]) for v in vals])) for key, vals in per_series.items()]

    # -- one statistic of one mapped field, in fleetwise units, as a long frame ----------------------
    def _stat(self, view: View, eq: Equivalent, agg, by: tuple[str, ...], start_ns: int, end_ns: int,
              every_ns: int | None, where=(), tags: tuple[str, ...] = ()):
        """Frame [time?, *by, v, n]: the statistic agg (an Agg or "first_time"/"last_time"/"first") of one
        mapped field through one view; n is the weight for combining means of several views. tags: label
        matchers of the query's where_tags (see _tag_matchers)."""
        import pandas as pd

        name = agg if isinstance(agg, str) else agg.name
        empty = pd.DataFrame(columns=[*(["time"] if every_ns is not None else []), *by, "v", "n"])
        if name == "first" or (eq.counter and every_ns is None and name not in ("mean", "count") and not where):
            return self._stat_raw(view, eq, name, agg, by, start_ns, end_ns, tags)
        group = _group_labels(view, by)
        sels = [promql.selector(m, dict(eq.match), view.require, tags) for m in eq.metrics]
        if where or name in ("first_time", "last_time") or (len(sels) > 1 and name in
                                                             ("max", "min", "last", "percentile")):
            # statistics of an instant vector (see _sampled); the extremes of a sum are not the sum of extremes
            f = self._sampled(sels, view, eq, name, agg, by, group, start_ns, end_ns, every_ns, where)
            return f if f is not None and len(f) else empty
        frames = []
        for sel in sels:
            exprs = self._exprs(sel, eq, name, agg, group)
            frames.append(_long(self._evaluate_all(exprs, start_ns, end_ns, every_ns), view, by, every_ns is not None))
        f = frames[0]
        for other in frames[1:]:  # "A+B" metrics: added series by series (equal timestamps: same scrape)
            keys = [c for c in f.columns if c not in ("v", "n")]
            f = f.merge(other, on=keys, how="inner", suffixes=("", "_b"))
            if name != "count":  # the samples', not the values'
                f["v"] = f["v"] + f["v_b"]
            f = f.drop(columns=[c for c in f.columns if c.endswith("_b")])
        if name != "count":
            f["v"] = f["v"] * eq.scale
        return f if len(f) else empty

    def _evaluate_all(self, exprs: dict, start_ns: int, end_ns: int, every_ns: int | None) -> dict:
        """_evaluate for each builder; a mean's sum and count run at once (Prometheus answers each on its
        own core)."""
        if len(exprs) == 1:
            return {col: self._evaluate(make, start_ns, end_ns, every_ns) for col, make in exprs.items()}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(exprs)) as pool:
            futures = {col: pool.submit(self._evaluate, make, start_ns, end_ns, every_ns)
                       for col, make in exprs.items()}
            return {col: f.result() for col, f in futures.items()}

    def _sampled(self, sels, view, eq, name, agg, by, group, start_ns, end_ns, every_ns, where):
        """Statistics PromQL only takes over an instant vector (values meeting `where`, sample times, a sum
        of metrics): a subquery every `step`, keeping at each step the newest sample if it is less than a
        step old and (per series) inside the window. The step is the scrape interval, widened so that one
        series has at most MAX_STEPS steps in the window, which is first cut to where the measurement has
        samples. When the step is the scrape interval every sample counts once (exact); when it is wider the
        step grid samples each series' state: counts (and sums) are then the samples' count_over_time times
        the share of steps meeting the condition, and first/last times are exact to one step."""
        import numpy as np

        bounds = self._bounds(view.measurement)
        if bounds is None:
            return None
        lo_ns = max(start_ns, bounds[0].value) if every_ns is None else start_ns
        hi_ns = min(end_ns, bounds[1].value + 10**6) if every_ns is None else end_ns
        if hi_ns <= lo_ns:
            return None
        step = self.step_ms()
        if every_ns is None:
            step = max(step, -(-(hi_ns - lo_ns) // 10**6 // MAX_STEPS))
        hi_ms = -(-hi_ns // 10**6) if every_ns is None else None
        value = sels[0] if len(sels) == 1 else "(" + " + ".join(sels) + ")"
        sub = name if name in ("first_time", "last_time") else ("sum" if name == "mean" else name)
        cols = {"v": self._sampled_expr(sels[0], value, sub, agg, group, where, view, hi_ms, step)}
        if name in ("count", "sum", "mean"):  # steps kept without the condition, to scale by
            cols["n"] = self._sampled_expr(sels[0], value, "count", agg, group, (), view, hi_ms, step)
        if name in ("count", "sum"):  # the samples themselves
            g = promql.by(group)
            cols["c"] = lambda r, lo=None: f"sum {g} (count_over_time({sels[0]}[{promql.duration_ms(r)}]))"
        # the subquery runs a step past the window's end so that the last samples get their step
        until = hi_ns + (step * 10**6 if hi_ms is not None else 0)
        parts = {col: _long({"v": self._evaluate(make, lo_ns, until if col != "c" else hi_ns, every_ns)}, view, by,
                            every_ns is not None).drop(columns="n") for col, make in cols.items()}
        f = parts["v"]
        keys = [c for c in f.columns if c != "v"]
        for col in ("n", "c"):
            if col in parts:
                other = parts[col].rename(columns={"v": col})
                f = f.merge(other, on=keys, how="left") if keys else f.assign(**{col: other[col].sum()})
        if name in ("count", "sum"):
            f["v"] = f["v"] * f["c"] / f["n"]  # equal to v when every sample had its own step
        if name == "mean":
            f = f.assign(n=f["n"])
        else:
            f["n"] = 1.0
        if name in ("first_time", "last_time"):
            f["v"] = f["v"].round().astype(np.int64)  # epoch ms
        elif name != "count":
            f["v"] = f["v"] * eq.scale
        return f[[*keys, "v", "n"]]

    def _bounds(self, measurement: str):
        if measurement not in self._bounds_cache:
            self._bounds_cache[measurement] = self.time_bounds(measurement)
        return self._bounds_cache[measurement]

    def _exprs(self, sel: str, eq: Equivalent, name: str, agg, group: list[str]):
        """PromQL builders ((range ms, window start ms) -> text) for one statistic: "v" (and "n" for means)."""
        g = promql.by(group)
        step = self.step_ms()
        if eq.counter:
            if name == "mean":
                return {"v": lambda r, lo=None: f"sum {g} (rate({sel}[{promql.duration_ms(r)}]))",
                        "n": lambda r, lo=None: f"count {g} (rate({sel}[{promql.duration_ms(r)}]))"}
            if name == "count":
                return {"v": lambda r, lo=None: f"sum {g} (count_over_time({sel}[{promql.duration_ms(r)}]))"}
            fn, outer = _OVER[name]
            rate = f"rate({sel}[{promql.duration_ms(4 * step)}])"
            return {"v": lambda r, lo=None: f"{outer} {g} ({fn}({_q(agg)}{rate}[{promql.duration_ms(r)}:"
                                   f"{promql.duration_ms(step)}]))"}
        if name == "mean":
            return {"v": lambda r, lo=None: f"sum {g} (sum_over_time({sel}[{promql.duration_ms(r)}]))",
                    "n": lambda r, lo=None: f"sum {g} (count_over_time({sel}[{promql.duration_ms(r)}]))"}
        fn, outer = _OVER[name]
        return {"v": lambda r, lo=None: f"{outer} {g} ({fn}({_q(agg)}{sel}[{promql.duration_ms(r)}]))"}

    def _sampled_expr(self, sel: str, value: str, name: str, agg, group: list[str], where, view: View,
                      hi_ms: int | None, step: int):
        """The PromQL builder of one sampled statistic (see _sampled)."""
        g = promql.by(group)
        ts = f"timestamp({sel})"

        def sampled(lo):
            s = f"({value} and ((time() - {ts}) < {promql.number(step / 1000)}))"
            if lo is not None and hi_ms is not None:
                s = f"({s} and ({ts} >= {promql.number(lo / 1000)}) and ({ts} < {promql.number(hi_ms / 1000)}))"
            for c in where:
                s = f"({s} and {self._condition(c, view)})"
            return s

        def over(fn, r, lo, stamps=None, arg=""):
            inner = sampled(lo) if stamps is None else f"({stamps} and {sampled(lo)})"
            return f"{fn}({arg}{inner}[{promql.duration_ms(r)}:{promql.duration_ms(step)}])"
        if name in ("first_time", "last_time"):
            fn, outer = ("min_over_time", "min") if name == "first_time" else ("max_over_time", "max")
            return lambda r, lo=None: f"{outer} {g} ({over(fn, r, lo, ts)}) * 1000"
        fn, outer = _OVER[name]
        return lambda r, lo=None: f"{outer} {g} ({over(fn, r, lo, arg=_q(agg))})"

    def _condition(self, cond, view: View) -> str:
        eqs = [e for e in equivalents(view.source, view.measurement) if e.field == cond.field]
        if not eqs or eqs[0].counter or len(eqs[0].metrics) > 1:
            raise QueryError(f"Prometheus reader: cannot filter on {view.measurement}.{cond.field}")
        e = eqs[0]
        op = "==" if cond.op == "=" else cond.op
        return f"({promql.selector(e.metric, dict(e.match), view.require)} {op} {promql.number(cond.value / e.scale)})"

    def _stat_raw(self, view, eq, name, agg, by, start_ns, end_ns, tags=()):
        """first (and, for counters, statistics PromQL has no rate form of) from raw samples."""
        import pandas as pd

        f = self._raw_field(view, eq, by, start_ns, end_ns, tags)
        if f.empty:
            return pd.DataFrame(columns=[*by, "v", "n"])
        f = f.sort_values("time", kind="stable")
        g = f.groupby(list(by), sort=False)["value"] if by else f["value"]
        pick = {"first": "first", "last": "last", "max": "max", "min": "min", "sum": "sum"}.get(name)
        if name == "percentile":
            v = g.quantile(agg.percentile / 100)
        elif pick:
            v = g.agg(pick)
        else:
            raise QueryError(f"Prometheus reader: no {name} of a counter's rate")
        if not by:
            return pd.DataFrame({"v": [v], "n": [1.0]})
        return v.rename("v").reset_index().assign(n=1.0)

    def _raw_field(self, view, eq, by, start_ns, end_ns, tags=()):
        """Long frame [time (ms), *by, value] of one mapped field's raw points in fleetwise units; counters
        as the rate between consecutive samples (a drop is a reset: no rate)."""
        import numpy as np
        import pandas as pd

        per_metric = []
        for metric in eq.metrics:
            rows = []
            for labels, t, v in self._raw(view, eq, metric, start_ns, end_ns, tags):
                if eq.counter:
                    dt = np.diff(t) / 1000.0
                    rate = np.diff(v) / np.where(dt > 0, dt, np.nan)
                    t, v = t[1:], np.where(rate >= 0, rate, np.nan)
                key = {k: labels.get(k, "") for k in _all_labels(view)}
                rows.append(pd.DataFrame({"time": t, **{k: [val] * len(t) for k, val in key.items()}, "value": v}))
            per_metric.append(pd.concat(rows, ignore_index=True) if rows else None)
        if any(p is None for p in per_metric):
            return pd.DataFrame(columns=["time", *by, "_series", "value"])
        f = per_metric[0]
        keys = [c for c in f.columns if c != "value"]
        for other in per_metric[1:]:
            f = f.merge(other, on=keys, suffixes=("", "_b"))
            f["value"] = f["value"] + f["value_b"]
            f = f.drop(columns=["value_b"])
        f["value"] = f["value"] * eq.scale
        out = pd.DataFrame({"time": f["time"].to_numpy(np.int64)})
        for tag in by:
            out[tag] = _tag_column(view, tag, f)
        # the series a point belongs to, so that raw points of several series never merge into one row
        out["_series"] = f[_all_labels(view)].astype(str).agg("\x1f".join, axis=1).to_numpy(object) \
            if len(f) and _all_labels(view) else ""
        out["value"] = f["value"].to_numpy(float)
        return out[out["value"].notna()]

    # -- the Reader contract --------------------------------------------------------------------
    def _frame(self, q: FrameQuery):
        import numpy as np

        parts = self._parts(q.measurement, q.fields)
        cols = []
        for field in q.fields:
            pieces = []
            for view, eq in parts[field]:
                tags = _tag_matchers(view, q.where_tags)
                if tags is None:
                    continue
                if q.every_ns is None:
                    f = self._raw_field(view, eq, q.by, q.start_ns, q.end_ns, tags).rename(columns={"value": "v"})
                    f["n"] = 1.0
                else:
                    f = self._stat(view, eq, q.agg, q.by, q.start_ns, q.end_ns, q.every_ns, tags=tags)
                    f["time"] = f["time"].astype(np.int64)
                pieces.append(f)
            keys = ["time", *q.by, *(["_series"] if q.every_ns is None else [])]
            combined = _combine(pieces, keys, q.agg.name if q.every_ns is not None else "raw")
            cols.append(combined.rename(columns={"v": field}))
        merged = None
        for c in cols:
            merged = c if merged is None else merged.merge(c, on=keys, how="outer")
        if merged is None or merged.empty:
            return finalize(q, [], {t: [] for t in q.by}, {f: [] for f in q.fields})
        merged = merged.sort_values(["time", *q.by], kind="stable")
        times = merged["time"].to_numpy(np.int64) * 10**6
        return finalize(q, times, {t: merged[t].to_numpy(object) for t in q.by},
                        {f: merged[f].to_numpy(float) for f in q.fields})

    def _aggregate(self, q: AggregateQuery):
        import numpy as np

        parts = self._parts(q.measurement, q.fields)
        keys = [*(["time"] if q.every_ns is not None else []), *q.by]
        merged = None
        for s in q.stats:
            name = s.agg.name
            pieces = [self._stat(view, eq, name if name in ("first", "first_time", "last_time") else s.agg,
                                 q.by, q.start_ns, q.end_ns, q.every_ns, q.where, tags)
                      for view, eq in parts[s.field] for tags in [_tag_matchers(view, q.where_tags)]
                      if tags is not None]
            f = _combine(pieces, keys, name).rename(columns={"v": s.name})
            merged = f if merged is None else merged.merge(f, on=keys, how="outer") if keys else \
                merged.join(f, how="outer")
        if merged is None or merged.empty:
            return finalize_stats(q, None if q.every_ns is None else [], {t: [] for t in q.by},
                                  {s.name: [] for s in q.stats})
        values = {}
        for s in q.stats:
            col = merged[s.name]
            if s.agg.name in ("first_time", "last_time"):
                values[s.name] = np.where(col.isna(), NAT, col.fillna(0).to_numpy(float).round() * 10**6
                                          ).astype(np.int64)
            elif s.agg.name == "count":
                values[s.name] = col.fillna(0).to_numpy(float)
            else:
                values[s.name] = col.to_numpy(float)
        times = merged["time"].to_numpy(np.int64) * 10**6 if q.every_ns is not None else None
        return finalize_stats(q, times, {t: merged[t].to_numpy(object) for t in q.by}, values)


_OVER = {  # statistic -> (PromQL over-time function, aggregation across the series of a group)
    "max": ("max_over_time", "max"), "min": ("min_over_time", "min"), "sum": ("sum_over_time", "sum"),
    "count": ("count_over_time", "sum"), "last": ("last_over_time", "max"),
    "percentile": ("quantile_over_time", "max"),
}


def _q(agg) -> str:
    """quantile_over_time's first argument."""
    return f"{promql.number(agg.percentile / 100)}, " if getattr(agg, "name", "") == "percentile" else ""


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}" if ms >= 0 else f"{ms / 1000:.3f}"


def _float(text: str) -> float:
    return float(text)


def _tag_matchers(view: View, where_tags) -> tuple[str, ...] | None:
    """Label matchers of a query's where_tags through one view, or None when no series of the view can
    match. A host tag read from instance (host:port) matches the label with or without a port, exactly
    as strip_port reads it back."""
    found = view_tag_filter(view, where_tags)
    if found is None:
        return None
    out = []
    for label, host, values in found:
        if not host:
            out.append(promql.one_of(label, values))
            continue
        patterns = []
        for v in values:
            if v.startswith("["):  # [ipv6]: strip_port keeps up to the first "]", whatever follows
                if re.fullmatch(r"\[[^\]]*\]", v):
                    patterns.append(promql.regex_literal(v) + ".*")
            elif re.search(r":\d+$", v):  # "a:1" is what strip_port makes of "a:1:PORT" only
                patterns.append(promql.regex_literal(v) + ":[0-9]+")
            else:
                patterns.append(promql.regex_literal(v) + "(?::[0-9]+)?")
        if not patterns:
            return None
        out.append(promql.one_of(label, (), tuple(patterns)))
    return tuple(out)


def _group_labels(view: View, by: tuple[str, ...]) -> list[str]:
    tags = dict(view.tags)
    return list(dict.fromkeys(tags[t].removesuffix(":host") for t in by
                              if t in tags and not tags[t].startswith("=")))


def _all_labels(view: View) -> list[str]:
    return [src.removesuffix(":host") for _, src in view.tags if not src.startswith("=")]


def _long(cols: dict, view: View, by: tuple[str, ...], timed: bool):
    """{"v": series list, "n": series list} -> frame [time?, *by, v, n] joined on the group labels."""
    import numpy as np
    import pandas as pd

    frames = {}
    for col, series in cols.items():
        # columns built once from all series (a frame per series costs milliseconds each: seconds per week)
        counts = np.asarray([len(vals) for _, _, vals in series], dtype=np.int64)
        data = {}
        if timed:
            data["time"] = np.concatenate([t for _, t, _ in series]) if series else np.zeros(0, dtype=np.int64)
        for tag in by:
            data[tag] = np.repeat(np.asarray([tag_value(view, tag, labels) for labels, _, _ in series], dtype=object),
                                  counts)
        data[col] = np.concatenate([vals for _, _, vals in series]) if series else np.zeros(0)
        frames[col] = pd.DataFrame(data, columns=[*(["time"] if timed else []), *by, col])
    keys = [*(["time"] if timed else []), *by]
    f = frames["v"]
    if "n" in frames:
        f = f.merge(frames["n"], on=keys, how="left") if keys else f.assign(n=frames["n"]["n"].sum())
    else:
        f = f.assign(n=1.0)
    f = f[np.isfinite(pd.to_numeric(f["v"], errors="coerce").astype(float))]
    return f.reset_index(drop=True)
