"""The fleet page's numbers: per-resource utilization per node and bucket, pools, node states, GPU-hours.

Every resource is a 0-1 ratio per (host, bucket). The store is asked once per measurement for every column
the page needs from it (fetch(): seven aggregates at most, run at once), the resources derived from those:

- cpu: `cpu` busy_ratio of the host's cpu="total" series;
- gpu: `gpu` utilization_ratio, mean over the host's GPU points in the bucket (the sum of its GPUs' sums over
  the sum of their counts: exact, from the same per-GPU aggregate as the GPU-hours and the pools);
- gpu_memory: `gpu` mean memory_used_bytes / mean memory_total_bytes (the same way);
- interconnect: the busier direction over the link rate, InfiniBand (xmit/rcv bytes per second over
  rate_bytes_per_second) where the host has it, else Ethernet (`net` tx/rx over speed_bytes_per_second);
- storage: `disk` busy_ratio (share of time with I/O in flight) of the host's busiest device.

Pools follow analyzer.forecast.demand: one per accelerator type ("gpu:a100-80gb"), and one per CPU
architecture ("cpu:x86_64") for hosts without GPUs.
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


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "host": pd.Series([], dtype=object),
                         "value": pd.Series([], dtype=float)})


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    den = den.where(den > 0)
    return (num / den).clip(lower=0.0)


# -- what the page asks the store: one query per measurement, every column the page needs from it at once --

def _gpu(reader, start, end, every):
    """Per GPU (host, gpu, model) and bucket (whole window when every is None): sums and counts, from which
    the utilization and memory means per host, the GPUs' bucket means (GPU-hours used), their sample counts
    (GPU-hours allocated, pools) all follow exactly: a mean over a host's GPUs is its sums over its counts."""
    return reader.aggregate("gpu", {"u_sum": ("utilization_ratio", "sum"), "u_n": ("utilization_ratio", "count"),
                                    "used_sum": ("memory_used_bytes", "sum"), "used_n": ("memory_used_bytes", "count"),
                                    "total_sum": ("memory_total_bytes", "sum"),
                                    "total_n": ("memory_total_bytes", "count")},
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


QUERIES = {"gpu": _gpu, "job_gpu": _job_gpu, "cpu": _cpu, "cpu_info": _cpu_info, "infiniband": _infiniband,
           "net": _net, "disk": _disk}
# what each product of the page reads (a subset is fetched when only one is asked for)
NEEDS = {"cpu": ("cpu",), "gpu": ("gpu",), "gpu_memory": ("gpu",), "interconnect": ("infiniband", "net"),
         "storage": ("disk",), "pools": ("gpu", "cpu_info"), "gpu_hours": ("gpu", "job_gpu")}


def fetch(reader, start, end, every: str | None, needs=tuple(QUERIES)) -> dict[str, pd.DataFrame]:
    """{measurement: frame} of the queries in `needs` whose measurement the store has, run at once
    (dashboard.context.gather: on a Context's workers, each with its own reader)."""
    from dashboard.context import gather

    present = set(reader.measurements())
    tasks = {m: (lambda r, q=QUERIES[m]: q(r, start, end, every)) for m in dict.fromkeys(needs) if m in present}
    return gather(reader, tasks)


def fleet_data(reader, start, end, every: str) -> dict:
    """Everything /fleet shows for a window: {"frames": {resource: [time, host, value]}, "pools", "gpu_hours"},
    from one query per measurement (seven at most, at once), where one per figure asked for `gpu` five times."""
    got = fetch(reader, start, end, every)
    pools = pools_from(got)
    return {"frames": {r: resource_from(got, r) for r in RESOURCES}, "pools": pools,
            "gpu_hours": gpu_hours_from(got, every)}


# -- the numbers, from the fetched frames --

def _per_host(gpu: pd.DataFrame, s: str, n: str) -> pd.Series:
    """Mean over a host's GPU points per bucket: the sums over the counts of its GPUs."""
    g = gpu.groupby(["time", "host"], sort=False)[[s, n]].sum()
    return g[s] / g[n].where(g[n] > 0)


def resource_from(got: dict[str, pd.DataFrame], resource: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES (value a 0-1 ratio, NaN rows dropped) from fetch()'s frames."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    out = _empty()
    gpu = got.get("gpu")
    if resource == "cpu" and "cpu" in got:
        out = got["cpu"].rename(columns={"busy_ratio": "value"})[HEAT_COLUMNS]
    elif resource == "gpu" and gpu is not None and len(gpu):
        out = _per_host(gpu, "u_sum", "u_n").rename("value").reset_index()
    elif resource == "gpu_memory" and gpu is not None and len(gpu):
        used, total = _per_host(gpu, "used_sum", "used_n"), _per_host(gpu, "total_sum", "total_n")
        out = _ratio(used, total).rename("value").reset_index()
    elif resource == "interconnect":
        out = _interconnect(got)
    elif resource == "storage" and "disk" in got:
        f = got["disk"]
        out = f.groupby(["time", "host"], as_index=False)["busy_ratio"].max().rename(columns={"busy_ratio": "value"})
    out = out[np.isfinite(out["value"].to_numpy(dtype=float))]
    return out.sort_values(["host", "time"], kind="stable").reset_index(drop=True)[HEAT_COLUMNS]


def resource_frame(reader, resource: str, start, end, every: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES, asking the store for that resource alone."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    return resource_from(fetch(reader, start, end, every, NEEDS[resource]), resource)


def _interconnect(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for kind, measurement in enumerate(("infiniband", "net")):
        if measurement in got:
            f = got[measurement]
            parts.append(f.assign(value=_ratio(np.fmax(f["x"], f["r"]), f["rate"]), kind=kind))
    parts = [p[["time", "host", "value", "kind"]].dropna(subset=["value"]) for p in parts]
    if not parts:
        return _empty()
    both = pd.concat(parts, ignore_index=True)
    # A host with InfiniBand is judged by it (its fabric); Ethernet only where there is no InfiniBand.
    first = both.groupby("host")["kind"].transform("min")
    both = both[both["kind"] == first]
    return both.groupby(["time", "host"], as_index=False)["value"].max()[HEAT_COLUMNS]


def pools_from(got: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """[host, pool, accelerator, arch]: GPU hosts by their (most reported) accelerator type, the others by
    CPU architecture ("cpu:unknown" without cpu_info)."""
    from agents.schema.accelerators import accelerator_key

    arch = pd.Series(dtype=object)
    info = got.get("cpu_info")
    if info is not None and len(info):
        arch = info.sort_values("time", kind="stable").groupby("host")["arch"].last()
    acc = pd.Series(dtype=object)
    gpu = got.get("gpu")
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


def gpu_hours_from(got: dict[str, pd.DataFrame], every: str) -> pd.DataFrame:
    """[pool, allocated, used] GPU-hours in the window: allocated = GPUs held by jobs (the forecast's demand:
    the share of each GPU's samples with a job on it), used = the GPUs' mean utilization, both times the
    bucket length and summed over the buckets."""
    from agents.query.base import parse_every
    from agents.schema.accelerators import accelerator_key
    from analyzer.forecast.demand import gpu_demand_from_counts

    cols = ["pool", "allocated", "used"]
    gpu = got.get("gpu")
    if gpu is None or gpu.empty:
        return pd.DataFrame(columns=cols)
    hours = parse_every(every) / 3.6e12
    held = got.get("job_gpu")
    if held is None:
        held = pd.DataFrame({"time": gpu["time"].iloc[:0], "host": [], "gpu": [], "held": []})
    demand = gpu_demand_from_counts(gpu[["time", "host", "gpu", "model"]].assign(samples=gpu["u_n"]), held)
    allocated = demand.groupby("pool")["demand"].sum() * hours if len(demand) else pd.Series(dtype=float)
    util = gpu[gpu["u_n"] > 0]
    codes, models = pd.factorize(util["model"].to_numpy(dtype=object))  # the key of each model, not of each row
    pool = np.asarray([GPU_PREFIX + accelerator_key(m) for m in models], dtype=object)[codes]
    used = (util["u_sum"] / util["u_n"]).groupby(pool).sum() * hours
    out = pd.DataFrame({"allocated": allocated, "used": used}).fillna(0.0).rename_axis("pool").reset_index()
    return out[cols]


def gpu_hours(reader, start, end, every: str) -> pd.DataFrame:
    """gpu_hours_from() over [start, end), asking the store for the GPU-hours alone."""
    return gpu_hours_from(fetch(reader, start, end, every, NEEDS["gpu_hours"]), every)
