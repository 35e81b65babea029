"""The fleet page's numbers: per-resource utilization per node and bucket, pools, node states, GPU-hours.

Every resource is a 0-1 ratio per (host, bucket):

- cpu: `cpu` busy_ratio of the host's cpu="total" series;
- gpu: `gpu` utilization_ratio, mean over the host's GPU points in the bucket (the store's mean per host);
- gpu_memory: `gpu` mean memory_used_bytes / mean memory_total_bytes (the same way);
- interconnect: the busier direction over the link rate, InfiniBand (xmit/rcv bytes per second over
  rate_bytes_per_second) where the host has it, else Ethernet (`net` tx/rx over speed_bytes_per_second);
- storage: `disk` busy_ratio (share of time with I/O in flight) of the host's busiest device.

What the page asks the store (fetch(): every query of a callback at once, one per measurement and width):

- the heatmap: the chosen resource alone, per host, at the window's bucket width (as many buckets as the
  plot has room for; dashboard.timerange). For cpu, storage and interconnect, its measurements per series
  (`cpu` per host, `disk` per device, `infiniband` per port, `net` per interface) as sums and counts, from
  which both its heatmap (each bucket's sum over its count) and its lines (the sums and counts added over
  each line bucket, the times floored to its width in epoch nanoseconds as the stores align buckets) follow
  exactly: the measurement is read once, not again at the line width below;
- the lines per pool, the node states, the GPU-hours and the pools: every resource per host at the line
  width, a few times coarser (dashboard.timerange.line_every: a line needs fewer points than a heatmap has
  columns); `gpu` per GPU (host, gpu, model) there, as sums and counts of utilization, memory used and
  memory total, from which each host's means (its GPUs' sums over their counts: exact), each GPU's mean and
  sample count (GPU-hours used and allocated, against `job_gpu`'s counts per GPU) and each host's most
  reported model (its pool) all follow. A week at 1 hour is 168 buckets a GPU where the heatmap's 15
  minutes gave 672. A bucket the window's start or end cuts counts the part of it inside the window
  (bucket_hours()). A bucket's GPU-hours equal the sum of its narrower buckets' when the GPU reports evenly
  through it (the agents' fixed interval); a GPU reporting in only part of a bucket (started, stopped, a
  gap) counts the whole bucket at its mean and its share held: the display width's rounding, at the line
  width.

Pools follow analyzer.forecast.demand: one per accelerator type ("gpu:a100-80gb"), and one per CPU
architecture ("cpu:x86_64") for hosts without GPUs; a GPU host's type is its most reported GPU model.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from analyzer.efficiency import GPU_RED
from analyzer.forecast.demand import CPU_PREFIX, GPU_PREFIX
from analyzer.runcodes import factorize_runs

RESOURCES = {"cpu": "CPU busy", "gpu": "GPU utilization", "gpu_memory": "GPU memory used",
             "interconnect": "Interconnect (busier direction / link rate)", "storage": "Storage busy (busiest disk)"}
IDLE_BELOW = GPU_RED  # jobstats' red line: a node whose main resource averages under 15% is idle
SATURATED_FROM = 0.9  # and one averaging 90% or more has no headroom left
STATES = ("idle", "busy", "saturated")
HEAT_COLUMNS = ["time", "host", "value"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "host": pd.Series([], dtype=object),
                         "value": pd.Series([], dtype=float)})


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(num / np.where(den > 0, den, np.nan), 0.0, None)


def _ns(times) -> np.ndarray:
    """Epoch nanoseconds (int64) of a time column or index, without a Timestamp per row."""
    return np.asarray(pd.DatetimeIndex(times).as_unit("ns").asi8)


# -- what the page asks the store: per measurement, every column it needs from it at once --

def _gpu_util(reader, start, end, every):
    """The GPU heatmap alone: mean utilization per host and bucket."""
    return reader.aggregate("gpu", {"u": ("utilization_ratio", "mean")}, start, end, every=every, by=["host"])


def _gpu_memory(reader, start, end, every):
    """The GPU memory heatmap alone: mean memory used and total per host and bucket."""
    return reader.aggregate("gpu", {"used": ("memory_used_bytes", "mean"), "total": ("memory_total_bytes", "mean")},
                            start, end, every=every, by=["host"])


def _gpu_gpus(reader, start, end, every):
    """Per GPU (host, gpu, model) and bucket: sums and counts of utilization, memory used and memory total.
    A host's means are its GPUs' sums over their counts (exact, whatever each GPU's sample count), a GPU's
    mean and count give the GPU-hours used and allocated, a host's counts per model its pool."""
    return reader.aggregate("gpu", {"u_sum": ("utilization_ratio", "sum"), "u_n": ("utilization_ratio", "count"),
                                    "used_sum": ("memory_used_bytes", "sum"), "used_n": ("memory_used_bytes", "count"),
                                    "total_sum": ("memory_total_bytes", "sum"),
                                    "total_n": ("memory_total_bytes", "count")},
                            start, end, every=every, by=["host", "gpu", "model"])


def _job_gpu(reader, start, end, every):
    """[time, host, gpu, held]: job_gpu rows per GPU and bucket (analyzer.forecast.demand's held count)."""
    f = reader.frame("job_gpu", ["utilization_ratio"], start, end, every=every, by=["host", "gpu"], agg="count")
    return f.rename(columns={"utilization_ratio": "held"})


def _cpu_info(reader, start, end, every):
    """[host, arch]: each host's latest reported CPU architecture in the window (`every` is not used)."""
    return reader.aggregate("cpu_info", {"arch": ("arch", "last")}, start, end, every=None, by=["host"])


# measurement -> (the tags of a series, {column: field} averaged per series and bucket, tag filter): what the
# resource frames of cpu, storage and interconnect read (resource_from)
SERIES = {"cpu": (("host",), {"busy_ratio": "busy_ratio"}, {"cpu": "total"}),
          "disk": (("host", "device"), {"busy_ratio": "busy_ratio"}, None),
          "infiniband": (("host", "device", "port"), {"x": "xmit_bytes_per_second", "r": "rcv_bytes_per_second",
                                                      "rate": "rate_bytes_per_second"}, None),
          "net": (("host", "interface"), {"x": "tx_bytes_per_second", "r": "rx_bytes_per_second",
                                          "rate": "speed_bytes_per_second"}, None)}


def _series_means(measurement, reader, start, end, every):
    """[time, *series tags, *columns]: each column's mean per series and bucket."""
    by, columns, tags = SERIES[measurement]
    return reader.aggregate(measurement, {c: (f, "mean") for c, f in columns.items()}, start, end, every=every,
                            by=list(by), where_tags=tags)


def _series_sums(measurement, reader, start, end, every):
    """[time, *series tags, c_sum, c_n for each column]: each column's sum and count per series and bucket, from
    which its means at this width and at any multiple of it follow exactly (_series_from_sums)."""
    by, columns, tags = SERIES[measurement]
    stats = {f"{c}_{k}": (f, agg) for c, f in columns.items() for k, agg in (("sum", "sum"), ("n", "count"))}
    return reader.aggregate(measurement, stats, start, end, every=every, by=list(by), where_tags=tags)


# name -> (measurement, query)
QUERIES = {"gpu_util": ("gpu", _gpu_util), "gpu_memory": ("gpu", _gpu_memory), "gpu_gpus": ("gpu", _gpu_gpus),
           "job_gpu": ("job_gpu", _job_gpu), "cpu_info": ("cpu_info", _cpu_info),
           **{m: (m, partial(_series_means, m)) for m in SERIES},
           **{m + "_sums": (m, partial(_series_sums, m)) for m in SERIES}}
# what each product of the page reads: a resource alone (the heatmap), every resource at once (the lines
# per pool: `gpu` per GPU, also read by the pools and the GPU-hours), the pools, the GPU-hours
NEEDS = {"cpu": ("cpu",), "gpu": ("gpu_util",), "gpu_memory": ("gpu_memory",), "interconnect": ("infiniband", "net"),
         "storage": ("disk",), "resources": ("cpu", "gpu_gpus", "infiniband", "net", "disk"),
         "pools": ("gpu_gpus", "cpu_info"), "gpu_hours": ("gpu_gpus", "job_gpu")}


def fetch(reader, start, end, asks: dict[str, tuple[str, str | None]]) -> dict[str, pd.DataFrame]:
    """{key: frame} for each ask (key -> (QUERIES name, bucket width; None for the whole window)) whose
    measurement the store has, run at once (dashboard.context.gather: on a Context's workers, each with its
    own reader)."""
    from dashboard.context import gather

    present = set(reader.measurements())
    tasks = {key: (lambda r, q=QUERIES[name][1], every=every: q(r, start, end, every))
             for key, (name, every) in asks.items() if QUERIES[name][0] in present}
    return gather(reader, tasks)


def asks(products, every: str | None, prefix: str = "") -> dict[str, tuple[str, str | None]]:
    """fetch()'s asks for products (NEEDS keys) over a window at `every`, keyed prefix + query name."""
    return {prefix + name: (name, every) for product in products for name in NEEDS[product]}


def fetch_products(reader, products, start, end, every: str | None) -> dict[str, pd.DataFrame]:
    """{query name: frame} of what products (NEEDS keys) read, over [start, end) at `every`."""
    return fetch(reader, start, end, asks(products, every))


def fleet_data(reader, start, end, every: str, heat: str | None = None, heat_every: str | None = None) -> dict:
    """Everything /fleet shows for a window: {"frames": {resource: [time, host, value]} at `every` (the lines
    per pool, the node states), "pools", "gpu_hours"} and, with heat (one of RESOURCES), "heat": that
    resource's frame at heat_every (the heatmap), every query at once. A cpu, storage or interconnect
    heatmap at a width dividing `every` reads its measurements once, as sums and counts at heat_every, from
    which both its frames follow (_series_from_sums)."""
    from agents.query.base import parse_every

    if heat is not None and heat not in RESOURCES:
        raise ValueError(f"unknown resource {heat!r}: use one of {', '.join(RESOURCES)}")
    own_heat = heat is not None and heat_every is not None and heat_every != every
    # cpu, storage, interconnect: their measurements' sums and counts at heat_every give their lines too
    summed = NEEDS[heat] if own_heat and all(m in SERIES for m in NEEDS[heat]) \
        and parse_every(every) % parse_every(heat_every) == 0 else ()
    # the longest queries first (the heatmap's, then `gpu` per GPU): the workers take them in this order
    wanted = asks((heat,), heat_every, prefix="heat:") if own_heat else {}
    if summed:
        wanted = {key: (name + "_sums", width) for key, (name, width) in wanted.items()}
    wanted.update({k: v for k, v in asks(("gpu_hours", "resources", "pools"), every).items() if k not in summed})
    got = fetch(reader, start, end, wanted)
    for m in summed:
        if "heat:" + m in got:
            got[m] = _series_from_sums(got["heat:" + m], m, parse_every(every))
            got["heat:" + m] = _series_from_sums(got["heat:" + m], m)
    got["gpu_host_sums"] = host_sums(got.get("gpu_gpus"))  # once for both GPU resources
    frames = {r: resource_from(got, r) for r in RESOURCES}
    out = {"frames": frames, "pools": pools_from(got), "gpu_hours": gpu_hours_from(got, start, end, every)}
    if heat is not None:
        out["heat"] = resource_from({k[5:]: v for k, v in got.items() if k.startswith("heat:")}, heat) \
            if own_heat else frames[heat]
    return out


def _series_from_sums(sums: pd.DataFrame, measurement: str, every_ns: int | None = None) -> pd.DataFrame:
    """_series_means()' frame of measurement from _series_sums()' (at that width, or at every_ns, a multiple
    of it: each time floored to a multiple of every_ns in epoch nanoseconds, as the stores align buckets, and
    the sums and counts added): each column its sum over its count. Exact, not a mean of means."""
    by, columns, _ = SERIES[measurement]
    if every_ns is not None:
        sums = _by_series_time(sums, {c: c for c in sums.columns if c != "time" and c not in by}, "sum", by, every_ns)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = {c: sums[f"{c}_sum"].to_numpy(dtype=float) / np.where(sums[f"{c}_n"] > 0, sums[f"{c}_n"], np.nan)
                 for c in columns}
    return sums[["time", *by]].assign(**means)


# -- the numbers, from the fetched frames --

def bucket_hours(times, start, end, every: str) -> np.ndarray:
    """Hours of each bucket (starting at times, `every` wide) inside [start, end): the whole width but for a
    bucket the window's start or end cuts."""
    from agents.query.base import parse_every

    t = _ns(times)
    lo = np.maximum(t, pd.Timestamp(start).value)
    hi = np.minimum(t + parse_every(every), pd.Timestamp(end).value)
    return np.clip(hi - lo, 0, None) / 3.6e12


def _by_series_time(f: pd.DataFrame, columns: dict[str, str], how: str = "max", by: tuple[str, ...] = ("host",),
                    every_ns: int | None = None) -> pd.DataFrame:
    """[time, *by, *columns] per (by-tag values, bucket) of f (e.g. a host's several series into one row a host
    and bucket; with every_ns, each time floored to a multiple of every_ns in epoch nanoseconds first), sorted
    by the tags then time: each output column the largest (how="max", NaN skipped) or the sum (how="sum", NaN
    as 0) of the input column it names. Integer codes and one sort, not a groupby on a string and a timestamp
    column (a week of 256 hosts is 170 k rows)."""
    series = np.zeros(len(f), dtype=np.int64)
    for tag in by:  # mixed-radix codes: they rank like the tag tuples
        codes, values = factorize_runs(f[tag])
        series = series * len(values) + codes
    t = _ns(f["time"])
    if every_ns is not None:
        t = t - t % every_ns  # numpy's % takes the divisor's sign: a floor before 1970 too
    time_codes, times = pd.factorize(t, sort=True)
    width = max(len(times), 1)
    key = series * width + time_codes
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    out = {"time": pd.to_datetime(times[key[first] % width], unit="ns", utc=True).as_unit("ns")}
    for tag in by:
        out[tag] = pd.Series(f[tag].to_numpy(dtype=object)[order[first]], dtype=object)
    for name, col in columns.items():
        v = f[col].to_numpy(dtype=float)[order]
        if not len(first):
            out[name] = v
        elif how == "sum":
            out[name] = np.add.reduceat(np.nan_to_num(v), first)
        else:
            out[name] = np.fmax.reduceat(v, first)
    return pd.DataFrame(out)


def _gpu_resource(got: dict[str, pd.DataFrame], resource: str) -> pd.DataFrame:
    """[time, host, value] of gpu or gpu_memory: from the heatmap's own per-host means when fetched, else
    from the per-GPU sums and counts (a host's sums over its counts)."""
    own = got.get("gpu_util" if resource == "gpu" else "gpu_memory")
    if own is not None:
        if not len(own):
            return _empty()
        value = own["u"] if resource == "gpu" else _ratio(own["used"], own["total"])
        return own[["time", "host"]].assign(value=np.asarray(value, dtype=float))  # one row a host and bucket
    g = got.get("gpu_host_sums")
    if g is None:
        g = host_sums(got.get("gpu_gpus"))
    if not len(g):
        return _empty()
    if resource == "gpu":
        return g[["time", "host"]].assign(value=_ratio(g["u_sum"], g["u_n"]))
    return g[["time", "host"]].assign(value=_ratio(_ratio(g["used_sum"], g["used_n"]),
                                                   _ratio(g["total_sum"], g["total_n"])))


GPU_SUMS = ("u_sum", "u_n", "used_sum", "used_n", "total_sum", "total_n")


def host_sums(gpu: pd.DataFrame | None) -> pd.DataFrame:
    """[time, host, *GPU_SUMS] per host and bucket from `gpu_gpus`' per-GPU sums and counts (empty without)."""
    if gpu is None or not len(gpu):
        return pd.DataFrame(columns=["time", "host", *GPU_SUMS])
    return _by_series_time(gpu, {c: c for c in GPU_SUMS}, "sum")


def resource_from(got: dict[str, pd.DataFrame], resource: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES (value a 0-1 ratio, NaN rows dropped, sorted by host then
    time) from fetch()'s frames (keyed by query name)."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    out = _empty()
    if resource in ("gpu", "gpu_memory"):
        out = _gpu_resource(got, resource)
    elif resource == "cpu" and "cpu" in got and len(got["cpu"]):
        # one row a host and bucket, in the store's order (bucketed frames come sorted by tags, then time)
        out = got["cpu"].rename(columns={"busy_ratio": "value"})[HEAT_COLUMNS]
    elif resource == "interconnect":
        out = _interconnect(got)
    elif resource == "storage" and "disk" in got and len(got["disk"]):
        out = _by_series_time(got["disk"], {"value": "busy_ratio"})
    out = out[np.isfinite(out["value"].to_numpy(dtype=float))]
    return out.reset_index(drop=True)[HEAT_COLUMNS]


def resource_frame(reader, resource: str, start, end, every: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES, asking the store for that resource alone."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    return resource_from(fetch_products(reader, (resource,), start, end, every), resource)


def _interconnect(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for kind, measurement in enumerate(("infiniband", "net")):
        f = got.get(measurement)
        if f is not None and len(f):
            value = _ratio(np.fmax(f["x"].to_numpy(dtype=float), f["r"].to_numpy(dtype=float)), f["rate"])
            parts.append(pd.DataFrame({"time": f["time"], "host": f["host"], "value": value, "kind": kind}))
    if not parts:
        return _empty()
    both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    both = both[~np.isnan(both["value"].to_numpy())]
    # A host with InfiniBand is judged by it (its fabric); Ethernet only where there is no InfiniBand.
    if len(parts) > 1:
        fabric = pd.unique(both.loc[both["kind"] == 0, "host"].to_numpy(dtype=object))
        both = both[(both["kind"] == 0) | ~both["host"].isin(fabric)]
    if both.empty:
        return _empty()
    return _by_series_time(both, {"value": "value"})


def pools_from(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """[host, pool, accelerator, arch]: GPU hosts by their (most reported) accelerator type, the others by
    CPU architecture ("cpu:unknown" without cpu_info)."""
    from agents.schema.accelerators import accelerator_key

    arch = pd.Series(dtype=object)
    info = got.get("cpu_info")
    if info is not None and len(info):
        arch = pd.Series(info["arch"].to_numpy(dtype=object), index=info["host"].to_numpy(dtype=object))
    acc = pd.Series(dtype=object)
    gpu = got.get("gpu_gpus")
    if gpu is not None and len(gpu):
        # samples per (host, model) over integer codes; each host's most reported model (ties: the first
        # model in sorted order)
        h_codes, hosts = factorize_runs(gpu["host"])
        m_codes, models = factorize_runs(gpu["model"])
        n = np.bincount(h_codes * len(models) + m_codes, weights=gpu["u_n"].to_numpy(dtype=float),
                        minlength=len(hosts) * len(models)).reshape(len(hosts), len(models))
        has = n.max(axis=1) > 0
        keys = np.asarray([accelerator_key(m) for m in models], dtype=object)
        acc = pd.Series(keys[n.argmax(axis=1)][has], index=np.asarray(hosts, dtype=object)[has])
    hosts = sorted(set(arch.index) | set(acc.index))
    out = pd.DataFrame({"host": pd.Series(hosts, dtype=object)})
    out["accelerator"] = out["host"].map(acc).fillna("").astype(object)
    out["arch"] = out["host"].map(arch).fillna("").astype(object)
    out["pool"] = np.where(out["accelerator"] != "", GPU_PREFIX + out["accelerator"],
                           CPU_PREFIX + out["arch"].where(out["arch"] != "", "unknown"))
    return out


def host_pools(reader, start, end) -> pd.DataFrame:
    """pools_from() over [start, end), asking the store for the pools alone."""
    return pools_from(fetch_products(reader, ("pools",), start, end, None))


def pool_utilization(frames: dict[str, pd.DataFrame], pools: pd.DataFrame) -> pd.DataFrame:
    """[resource, pool, time, value]: per resource, the mean over a pool's hosts of each host's bucket value.

    Summed per (pool, bucket) over integer codes (np.bincount): a week of 256 hosts is 170 k rows a resource,
    and grouping them by strings took most of a second."""
    cols = ["resource", "pool", "time", "value"]
    pool_of = dict(zip(pools["host"].astype(object), pools["pool"].astype(object), strict=True))
    parts = []
    for resource, f in frames.items():
        if f.empty:
            continue
        host_codes, hosts = factorize_runs(f["host"])
        names = np.asarray([pool_of.get(h, CPU_PREFIX + "unknown") for h in hosts], dtype=object)
        pool_codes, pool_names = pd.factorize(names, sort=True)
        time_codes, times_ns = pd.factorize(_ns(f["time"]), sort=True)
        times = pd.to_datetime(times_ns, unit="ns", utc=True).as_unit("ns")
        key = pool_codes[host_codes].astype(np.int64) * len(times) + time_codes
        n = len(pool_names) * len(times)
        counts = np.bincount(key, minlength=n)
        sums = np.bincount(key, weights=f["value"].to_numpy(dtype=float), minlength=n)
        cells = np.flatnonzero(counts)  # in (pool, time) order, as groupby(["pool", "time"]) gave them
        parts.append(pd.DataFrame({"resource": pd.Series([resource] * len(cells), dtype=object),
                                   "pool": pd.Series(np.asarray(pool_names, dtype=object)[cells // len(times)],
                                                     dtype=object),
                                   "time": times[cells % len(times)], "value": sums[cells] / counts[cells]}))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def heatmap_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Hosts (rows, sorted) x bucket times (columns) of a resource frame (one row a host and bucket); NaN
    where a host has no bucket. Placed by integer codes (a pivot of a week's 170 k cells took 50 ms)."""
    if frame.empty:
        return pd.DataFrame()
    host_codes, hosts = factorize_runs(frame["host"])
    time_codes, times = pd.factorize(_ns(frame["time"]), sort=True)
    cells = np.full((len(hosts), len(times)), np.nan)
    cells[host_codes, time_codes] = frame["value"].to_numpy(dtype=float)
    return pd.DataFrame(cells, index=pd.Index(hosts.tolist(), name="host"),
                        columns=pd.DatetimeIndex(pd.to_datetime(times, unit="ns", utc=True), name="time").as_unit(
                            frame["time"].dt.unit))


def node_states(frames: dict[str, pd.DataFrame], pools: pd.DataFrame, window: tuple | None = None) -> pd.DataFrame:
    """[host, pool, resource, mean, state]: each host's main resource (GPU for GPU hosts, else CPU) averaged
    over the window's buckets, and idle (< IDLE_BELOW), saturated (>= SATURATED_FROM) or busy between.
    window (start, end, every): each bucket weighs its hours inside [start, end) (bucket_hours(): a bucket
    the window's start or end cuts weighs less); None: every bucket weighs the same."""
    rows = []
    means = {}
    for r, f in frames.items():
        if r not in ("cpu", "gpu") or not len(f):
            continue
        w = np.ones(len(f)) if window is None else bucket_hours(f["time"], *window)
        codes, hosts = factorize_runs(f["host"])
        total = np.bincount(codes, weights=w, minlength=len(hosts))
        with np.errstate(divide="ignore", invalid="ignore"):
            means[r] = pd.Series(np.bincount(codes, weights=w * f["value"].to_numpy(dtype=float),
                                             minlength=len(hosts)) / total, index=np.asarray(hosts, dtype=object))
    means = {r: m.to_dict() for r, m in means.items()}
    for host, pool in zip(pools["host"].tolist(), pools["pool"].tolist(), strict=True):
        resource = "gpu" if pool.startswith(GPU_PREFIX) else "cpu"
        value = means.get(resource, {}).get(host, np.nan)
        if value != value:
            continue
        state = "idle" if value < IDLE_BELOW else ("saturated" if value >= SATURATED_FROM else "busy")
        rows.append({"host": host, "pool": pool, "resource": resource, "mean": float(value), "state": state})
    return pd.DataFrame(rows, columns=["host", "pool", "resource", "mean", "state"])


def gpu_hours_from(got: dict[str, pd.DataFrame], start, end, every: str) -> pd.DataFrame:
    """[pool, allocated, used] GPU-hours in [start, end) from fetch()'s `gpu_gpus` and `job_gpu` frames at
    bucket width `every`: allocated = GPUs held by jobs (the forecast's demand: the share of each GPU's samples
    with a job on it), used = the GPUs' mean utilization, both times the bucket's hours inside the window
    (bucket_hours()) and summed over the buckets."""
    from agents.schema.accelerators import accelerator_key
    from analyzer.forecast.demand import gpu_demand_from_counts

    cols = ["pool", "allocated", "used"]
    gpu = got.get("gpu_gpus")
    if gpu is None or gpu.empty:
        return pd.DataFrame(columns=cols)
    held = got.get("job_gpu")
    if held is None:
        held = pd.DataFrame({"time": gpu["time"].iloc[:0], "host": [], "gpu": [], "held": []})
    demand = gpu_demand_from_counts(gpu[["time", "host", "gpu", "model"]].assign(samples=gpu["u_n"]), held)
    allocated = pd.Series(dtype=float)
    if len(demand):
        weight = bucket_hours(demand["time"], start, end, every)
        allocated = pd.Series(demand["demand"].to_numpy(dtype=float) * weight).groupby(
            demand["pool"].to_numpy(dtype=object)).sum()
    util = gpu[gpu["u_n"] > 0]
    codes, models = factorize_runs(util["model"])  # the key of each model, not of each row
    used = util["u_sum"].to_numpy(dtype=float) / util["u_n"].to_numpy(dtype=float) \
        * bucket_hours(util["time"], start, end, every)
    used = pd.Series(np.bincount(codes, weights=used, minlength=len(models))).groupby(
        np.asarray([GPU_PREFIX + accelerator_key(m) for m in models], dtype=object)).sum()
    out = pd.DataFrame({"allocated": allocated, "used": used}).fillna(0.0).rename_axis("pool").reset_index()
    return out[cols]


def gpu_hours(reader, start, end, every: str) -> pd.DataFrame:
    """gpu_hours_from() over [start, end) in buckets of `every`, asking the store for the GPU-hours alone."""
    return gpu_hours_from(fetch_products(reader, ("gpu_hours",), start, end, every), start, end, every)
