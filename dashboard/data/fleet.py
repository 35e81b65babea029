"""The fleet page's numbers: per-resource utilization per node and bucket, pools, node states, GPU-hours.

Every resource is a 0-1 ratio per (host, bucket). The store is asked once per measurement and bucket width
for every column the page needs from it (fetch(): all queries at once), the resources derived from those:

- cpu: `cpu` busy_ratio of the host's cpu="total" series;
- gpu: `gpu` utilization_ratio, mean over the host's GPU points in the bucket (asked per host and model as
  sums and counts: a host's mean is its sums over its counts, exact, whatever its GPUs' sample counts);
- gpu_memory: `gpu` mean memory_used_bytes / mean memory_total_bytes (the same way);
- interconnect: the busier direction over the link rate, InfiniBand (xmit/rcv bytes per second over
  rate_bytes_per_second) where the host has it, else Ethernet (`net` tx/rx over speed_bytes_per_second);
- storage: `disk` busy_ratio (share of time with I/O in flight) of the host's busiest device.

Pools follow analyzer.forecast.demand: one per accelerator type ("gpu:a100-80gb"), and one per CPU
architecture ("cpu:x86_64") for hosts without GPUs; a GPU host's type is its most reported GPU model.

GPU-hours need each GPU on its own (a GPU's mean and its share of samples held by jobs), so they are asked
per GPU, but in hour buckets (COARSE) rather than the display's: a week is 168 buckets a GPU instead of 672,
a day 24 instead of 288. The window's ends, when they are not on the hour, are asked at the display width
(spans()), so every bucket lies inside the window. An hour's figures equal the sum of its display buckets'
when a GPU reports evenly through the hour (the agents' fixed interval); a GPU that reports in only part of
an hour (started, stopped, a gap) counts the whole hour at its mean, where the display buckets counted only
the buckets it reported in (the same rounding, at a coarser width).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.efficiency import GPU_RED
from analyzer.forecast.demand import CPU_PREFIX, GPU_PREFIX

RESOURCES = {"cpu": "CPU busy", "gpu": "GPU utilization", "gpu_memory": "GPU memory used",
             "interconnect": "Interconnect (busier direction / link rate)", "storage": "Storage busy (busiest disk)"}
IDLE_BELOW = GPU_RED  # jobstats' red line: a node whose main resource averages under 15% is idle
SATURATED_FROM = 0.9  # and one averaging 90% or more has no headroom left
STATES = ("idle", "busy", "saturated")
HEAT_COLUMNS = ["time", "host", "value"]
COARSE = "1h"  # the GPU-hours' bucket (a store rollup level: agents.stores.embedded_rollup, the influx deploy's)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "host": pd.Series([], dtype=object),
                         "value": pd.Series([], dtype=float)})


def _ratio(num, den):
    den = np.where(np.asarray(den, dtype=float) > 0, den, np.nan)
    return np.clip(np.asarray(num, dtype=float) / den, 0.0, None)


# -- what the page asks the store: one query per measurement, every column the page needs from it at once --

def _gpu_hosts(reader, start, end, every):
    """Per host, model and bucket (whole window when every is None): sums and counts of utilization, memory
    used and memory total, from which a host's means follow exactly (its sums over its counts) and its pool
    (its most reported model). Per host rather than per GPU: a quarter of the rows on 4- and 8-GPU hosts."""
    return reader.aggregate("gpu", {"u_sum": ("utilization_ratio", "sum"), "u_n": ("utilization_ratio", "count"),
                                    "used_sum": ("memory_used_bytes", "sum"), "used_n": ("memory_used_bytes", "count"),
                                    "total_sum": ("memory_total_bytes", "sum"),
                                    "total_n": ("memory_total_bytes", "count")},
                            start, end, every=every, by=["host", "model"])


def _gpu_gpus(reader, start, end, every):
    """Per GPU (host, gpu, model) and bucket: utilization sum and count, for the GPU-hours used (each GPU's
    bucket mean) and allocated (its sample count against job_gpu's)."""
    return reader.aggregate("gpu", {"u_sum": ("utilization_ratio", "sum"), "u_n": ("utilization_ratio", "count")},
                            start, end, every=every, by=["host", "gpu", "model"])


def _job_gpu(reader, start, end, every):
    """[time, host, gpu, held]: job_gpu rows per GPU and bucket (analyzer.forecast.demand's held count)."""
    f = reader.frame("job_gpu", ["utilization_ratio"], start, end, every=every, by=["host", "gpu"], agg="count")
    return f.rename(columns={"utilization_ratio": "held"})


def _cpu(reader, start, end, every):
    return reader.frame("cpu", ["busy_ratio"], start, end, every=every, by=["host"], where_tags={"cpu": "total"})


def _cpu_info(reader, start, end, every):
    return reader.frame("cpu_info", ["arch"], start, end, by=["host"])


def _infiniband(reader, start, end, every):
    return reader.aggregate("infiniband", {"x": ("xmit_bytes_per_second", "mean"),
                                           "r": ("rcv_bytes_per_second", "mean"),
                                           "rate": ("rate_bytes_per_second", "mean")},
                            start, end, every=every, by=["host", "device", "port"])


def _net(reader, start, end, every):
    return reader.aggregate("net", {"x": ("tx_bytes_per_second", "mean"), "r": ("rx_bytes_per_second", "mean"),
                                    "rate": ("speed_bytes_per_second", "mean")},
                            start, end, every=every, by=["host", "interface"])


def _disk(reader, start, end, every):
    return reader.frame("disk", ["busy_ratio"], start, end, every=every, by=["host", "device"])


# name -> (measurement, query); the GPU-hours' queries (SPANNED) are asked per span of spans()
QUERIES = {"gpu_hosts": ("gpu", _gpu_hosts), "gpu_gpus": ("gpu", _gpu_gpus), "job_gpu": ("job_gpu", _job_gpu),
           "cpu": ("cpu", _cpu), "cpu_info": ("cpu_info", _cpu_info), "infiniband": ("infiniband", _infiniband),
           "net": ("net", _net), "disk": ("disk", _disk)}
SPANNED = ("gpu_gpus", "job_gpu")
# what each product of the page reads (a subset is fetched when only one is asked for)
NEEDS = {"cpu": ("cpu",), "gpu": ("gpu_hosts",), "gpu_memory": ("gpu_hosts",), "interconnect": ("infiniband", "net"),
         "storage": ("disk",), "pools": ("gpu_hosts", "cpu_info"), "gpu_hours": ("gpu_gpus", "job_gpu")}


def spans(start, end, every: str) -> list[tuple[pd.Timestamp, pd.Timestamp, str]]:
    """[start, end) cut for the GPU-hours' queries: the whole COARSE buckets inside it at COARSE, the parts
    before the first and after the last at `every` (the window's own width, which divides COARSE), so that
    no bucket reaches outside the window and each query is one a store's rollup level answers. One span at
    `every` when that is COARSE or wider, or when the window holds no whole COARSE bucket."""
    from agents.query.base import influx_duration, parse_every

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    step, coarse = parse_every(every), parse_every(COARSE)
    lo, hi = -(-start.value // coarse) * coarse, end.value // coarse * coarse
    if step >= coarse or coarse % step or hi <= lo:
        return [(start, end, every)]
    out = [(start, pd.Timestamp(lo, unit="ns", tz=start.tz), every)] if start.value < lo else []
    out.append((pd.Timestamp(lo, unit="ns", tz=start.tz), pd.Timestamp(hi, unit="ns", tz=start.tz),
                influx_duration(coarse)))
    if hi < end.value:
        out.append((pd.Timestamp(hi, unit="ns", tz=start.tz), end, every))
    return out


def fetch(reader, start, end, every: str | None, needs=tuple(QUERIES)) -> dict[str, pd.DataFrame]:
    """{name: frame} of the queries in `needs` whose measurement the store has, run at once
    (dashboard.context.gather: on a Context's workers, each with its own reader). The GPU-hours' queries
    are asked per span (spans()) and their frames carry each bucket's length in hours (`hours`)."""
    from agents.query.base import parse_every
    from dashboard.context import gather

    present = set(reader.measurements())
    tasks, parts = {}, {}
    for name in dict.fromkeys(needs):
        measurement, query = QUERIES[name]
        if measurement not in present:
            continue
        cuts = spans(start, end, every) if name in SPANNED and every is not None else [(start, end, every)]
        parts[name] = []
        for i, (s, e, width) in enumerate(cuts):
            key = f"{name}#{i}"
            tasks[key] = lambda r, q=query, s=s, e=e, width=width: q(r, s, e, width)
            parts[name].append((key, None if width is None else parse_every(width) / 3.6e12))
    got = gather(reader, tasks)
    out = {}
    for name, keys in parts.items():
        if name not in SPANNED:
            out[name] = got[keys[0][0]]
            continue
        frames = [got[k].assign(hours=h) for k, h in keys]
        out[name] = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return out


def fleet_data(reader, start, end, every: str) -> dict:
    """Everything /fleet shows for a window: {"frames": {resource: [time, host, value]}, "pools", "gpu_hours"},
    from one query per measurement and width (eight to twelve, at once)."""
    got = fetch(reader, start, end, every)
    return {"frames": {r: resource_from(got, r) for r in RESOURCES}, "pools": pools_from(got),
            "gpu_hours": gpu_hours_from(got)}


# -- the numbers, from the fetched frames --

def _by_host_time(f: pd.DataFrame, columns: dict[str, str], how: str = "sum") -> pd.DataFrame:
    """[time, host, *columns] per (host, bucket) of f (rows of several series per host), sorted by host then
    time: each output column is the sum (how="sum", NaN as 0) or the largest (how="max", NaN skipped) of the
    input column it names. Integer codes and one sort, not a groupby on a string and a timestamp column:
    a week of 256 hosts is 170 k rows a resource."""
    host_codes, hosts = pd.factorize(f["host"].to_numpy(dtype=object), sort=True)
    t_ns = f["time"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    time_codes, times = pd.factorize(t_ns, sort=True)
    key = host_codes.astype(np.int64) * len(times) + time_codes
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    cells = key[first]
    out = {"time": pd.to_datetime(times[cells % max(len(times), 1)], unit="ns", utc=True).as_unit("ns"),
           "host": pd.Series(np.asarray(hosts, dtype=object)[cells // max(len(times), 1)], dtype=object)}
    for name, col in columns.items():
        v = f[col].to_numpy(dtype=float)[order]
        if how == "sum":
            out[name] = np.add.reduceat(np.nan_to_num(v), first) if len(first) else v
        else:
            out[name] = np.fmax.reduceat(v, first) if len(first) else v
    return pd.DataFrame(out)


def resource_from(got: dict[str, pd.DataFrame], resource: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES (value a 0-1 ratio, NaN rows dropped, sorted by host then
    time) from fetch()'s frames."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    out = _empty()
    gpu = got.get("gpu_hosts")
    if resource == "cpu" and "cpu" in got and len(got["cpu"]):
        out = _by_host_time(got["cpu"], {"value": "busy_ratio"}, "max")  # one row a host and bucket: as is
    elif resource == "gpu" and gpu is not None and len(gpu):
        g = _by_host_time(gpu, {"s": "u_sum", "n": "u_n"})
        out = g[["time", "host"]].assign(value=_ratio(g["s"], g["n"]))
    elif resource == "gpu_memory" and gpu is not None and len(gpu):
        g = _by_host_time(gpu, {"us": "used_sum", "un": "used_n", "ts": "total_sum", "tn": "total_n"})
        out = g[["time", "host"]].assign(value=_ratio(_ratio(g["us"], g["un"]), _ratio(g["ts"], g["tn"])))
    elif resource == "interconnect":
        out = _interconnect(got)
    elif resource == "storage" and "disk" in got and len(got["disk"]):
        out = _by_host_time(got["disk"], {"value": "busy_ratio"}, "max")
    out = out[np.isfinite(out["value"].to_numpy(dtype=float))]
    return out.reset_index(drop=True)[HEAT_COLUMNS]


def resource_frame(reader, resource: str, start, end, every: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES, asking the store for that resource alone."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    return resource_from(fetch(reader, start, end, every, NEEDS[resource]), resource)


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
        fabric = set(both.loc[both["kind"] == 0, "host"])
        both = both[(both["kind"] == 0) | ~both["host"].isin(fabric)]
    if both.empty:
        return _empty()
    return _by_host_time(both, {"value": "value"}, "max")


def pools_from(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """[host, pool, accelerator, arch]: GPU hosts by their (most reported) accelerator type, the others by
    CPU architecture ("cpu:unknown" without cpu_info)."""
    from agents.schema.accelerators import accelerator_key

    arch = pd.Series(dtype=object)
    info = got.get("cpu_info")
    if info is not None and len(info):
        arch = info.sort_values("time", kind="stable").groupby("host")["arch"].last()
    acc = pd.Series(dtype=object)
    gpu = got.get("gpu_hosts")
    if gpu is not None and len(gpu):
        g = gpu.groupby(["host", "model"], as_index=False)["u_n"].sum()
        g = g[g["u_n"] > 0].sort_values(["host", "u_n"], ascending=[True, False], kind="stable")
        g = g.drop_duplicates("host")
        acc = pd.Series(g["model"].map(accelerator_key).to_numpy(), index=g["host"].to_numpy())
    hosts = sorted(set(arch.index) | set(acc.index))
    out = pd.DataFrame({"host": pd.Series(hosts, dtype=object)})
    out["accelerator"] = out["host"].map(acc).fillna("").astype(object)
    out["arch"] = out["host"].map(arch).fillna("").astype(object)
    out["pool"] = np.where(out["accelerator"] != "", GPU_PREFIX + out["accelerator"],
                           CPU_PREFIX + out["arch"].where(out["arch"] != "", "unknown"))
    return out


def host_pools(reader, start, end) -> pd.DataFrame:
    """pools_from() over [start, end), asking the store for the pools alone."""
    return pools_from(fetch(reader, start, end, None, NEEDS["pools"]))


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
        host_codes, hosts = pd.factorize(f["host"].to_numpy(dtype=object))
        names = np.asarray([pool_of.get(h, CPU_PREFIX + "unknown") for h in hosts], dtype=object)
        pool_codes, pool_names = pd.factorize(names, sort=True)
        time_codes, times = pd.factorize(f["time"], sort=True)
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
    """Hosts (rows, sorted) x bucket times (columns) of a resource frame; NaN where a host has no bucket."""
    if frame.empty:
        return pd.DataFrame()
    return frame.pivot(index="host", columns="time", values="value").sort_index()


def node_states(frames: dict[str, pd.DataFrame], pools: pd.DataFrame) -> pd.DataFrame:
    """[host, pool, resource, mean, state]: each host's main resource (GPU for GPU hosts, else CPU) averaged
    over the window's buckets, and idle (< IDLE_BELOW), saturated (>= SATURATED_FROM) or busy between."""
    rows = []
    means = {r: f.groupby("host")["value"].mean() for r, f in frames.items() if r in ("cpu", "gpu") and len(f)}
    for rec in pools.to_dict("records"):
        resource = "gpu" if rec["pool"].startswith(GPU_PREFIX) else "cpu"
        value = means.get(resource, pd.Series(dtype=float)).get(rec["host"], np.nan)
        if value != value:
            continue
        state = "idle" if value < IDLE_BELOW else ("saturated" if value >= SATURATED_FROM else "busy")
        rows.append({"host": rec["host"], "pool": rec["pool"], "resource": resource, "mean": float(value),
                     "state": state})
    return pd.DataFrame(rows, columns=["host", "pool", "resource", "mean", "state"])


def gpu_hours_from(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """[pool, allocated, used] GPU-hours in the window: allocated = GPUs held by jobs (the forecast's demand:
    the share of each GPU's samples with a job on it), used = the GPUs' mean utilization, both times the
    bucket length (fetch()'s `hours`: COARSE, or the display width at the window's ends) and summed over the
    buckets."""
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
    if len(demand):
        # each bucket's length: the spans do not overlap, so a bucket start names one span's width
        t_ns = gpu["time"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        starts, first = np.unique(t_ns, return_index=True)
        at = np.searchsorted(starts, demand["time"].to_numpy(dtype="datetime64[ns]").view(np.int64))
        weight = gpu["hours"].to_numpy(dtype=float)[first][at]
        allocated = (demand["demand"] * weight).groupby(demand["pool"].to_numpy(dtype=object)).sum()
    else:
        allocated = pd.Series(dtype=float)
    util = gpu[gpu["u_n"] > 0]
    codes, models = pd.factorize(util["model"].to_numpy(dtype=object))  # the key of each model, not of each row
    pool = np.asarray([GPU_PREFIX + accelerator_key(m) for m in models], dtype=object)[codes]
    used = (util["u_sum"] / util["u_n"] * util["hours"]).groupby(pool).sum()
    out = pd.DataFrame({"allocated": allocated, "used": used}).fillna(0.0).rename_axis("pool").reset_index()
    return out[cols]


def gpu_hours(reader, start, end, every: str) -> pd.DataFrame:
    """gpu_hours_from() over [start, end), asking the store for the GPU-hours alone."""
    return gpu_hours_from(fetch(reader, start, end, every, NEEDS["gpu_hours"]))
