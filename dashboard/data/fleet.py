"""The fleet page's numbers: per-resource utilization per node and bucket, pools, node states, GPU-hours.

Every resource is a 0-1 ratio per (host, bucket), one aggregate pushed down to the store per resource:

- cpu: `cpu` busy_ratio of the host's cpu="total" series;
- gpu: `gpu` utilization_ratio, mean over the host's GPU points in the bucket;
- gpu_memory: `gpu` mean memory_used_bytes / mean memory_total_bytes;
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


def resource_frame(reader, resource: str, start, end, every: str) -> pd.DataFrame:
    """[time, host, value] for one of RESOURCES (value a 0-1 ratio, NaN rows dropped)."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    present = set(reader.measurements())
    out = _empty()
    if resource == "cpu" and "cpu" in present:
        f = reader.frame("cpu", ["busy_ratio"], start, end, every=every, by=["host", "cpu"])
        f = f[f["cpu"] == "total"]
        out = f.rename(columns={"busy_ratio": "value"})[HEAT_COLUMNS]
    elif resource == "gpu" and "gpu" in present:
        f = reader.frame("gpu", ["utilization_ratio"], start, end, every=every, by=["host"])
        out = f.rename(columns={"utilization_ratio": "value"})[HEAT_COLUMNS]
    elif resource == "gpu_memory" and "gpu" in present:
        f = reader.aggregate("gpu", {"used": ("memory_used_bytes", "mean"), "total": ("memory_total_bytes", "mean")},
                             start, end, every=every, by=["host"])
        out = f.assign(value=_ratio(f["used"], f["total"]))[HEAT_COLUMNS]
    elif resource == "interconnect":
        out = _interconnect(reader, present, start, end, every)
    elif resource == "storage" and "disk" in present:
        f = reader.frame("disk", ["busy_ratio"], start, end, every=every, by=["host", "device"])
        out = f.groupby(["time", "host"], as_index=False)["busy_ratio"].max().rename(columns={"busy_ratio": "value"})
    out = out[np.isfinite(out["value"].to_numpy(dtype=float))]
    return out.sort_values(["host", "time"], kind="stable").reset_index(drop=True)


def _interconnect(reader, present: set, start, end, every: str) -> pd.DataFrame:
    parts = []
    if "infiniband" in present:
        f = reader.aggregate("infiniband", {"x": ("xmit_bytes_per_second", "mean"),
                                            "r": ("rcv_bytes_per_second", "mean"),
                                            "rate": ("rate_bytes_per_second", "mean")},
                             start, end, every=every, by=["host", "device", "port"])
        parts.append(f.assign(value=_ratio(np.fmax(f["x"], f["r"]), f["rate"]), kind=0))
    if "net" in present:
        f = reader.aggregate("net", {"x": ("tx_bytes_per_second", "mean"), "r": ("rx_bytes_per_second", "mean"),
                                     "rate": ("speed_bytes_per_second", "mean")},
                             start, end, every=every, by=["host", "interface"])
        parts.append(f.assign(value=_ratio(np.fmax(f["x"], f["r"]), f["rate"]), kind=1))
    parts = [p[["time", "host", "value", "kind"]].dropna(subset=["value"]) for p in parts]
    if not parts:
        return _empty()
    both = pd.concat(parts, ignore_index=True)
    # A host with InfiniBand is judged by it (its fabric); Ethernet only where there is no InfiniBand.
    first = both.groupby("host")["kind"].transform("min")
    both = both[both["kind"] == first]
    return both.groupby(["time", "host"], as_index=False)["value"].max()[HEAT_COLUMNS]


def host_pools(reader, start, end) -> pd.DataFrame:
    """[host, pool, accelerator, arch]: GPU hosts by their (most reported) accelerator type, the others by
    CPU architecture ("cpu:unknown" without cpu_info)."""
    from agents.schema.accelerators import accelerator_key

    present = set(reader.measurements())
    arch = pd.Series(dtype=object)
    if "cpu_info" in present:
        info = reader.frame("cpu_info", ["arch"], start, end, by=["host"])
        if len(info):
            arch = info.sort_values("time").groupby("host")["arch"].last()
    acc = pd.Series(dtype=object)
    if "gpu" in present:
        g = reader.aggregate("gpu", {"n": ("utilization_ratio", "count")}, start, end, by=["host", "model"])
        if len(g):
            g = g.sort_values(["host", "n"], ascending=[True, False], kind="stable").drop_duplicates("host")
            acc = pd.Series(g["model"].map(accelerator_key).to_numpy(), index=g["host"].to_numpy())
    hosts = sorted(set(arch.index) | set(acc.index))
    out = pd.DataFrame({"host": pd.Series(hosts, dtype=object)})
    out["accelerator"] = out["host"].map(acc).fillna("").astype(object)
    out["arch"] = out["host"].map(arch).fillna("").astype(object)
    out["pool"] = np.where(out["accelerator"] != "", GPU_PREFIX + out["accelerator"],
                           CPU_PREFIX + out["arch"].where(out["arch"] != "", "unknown"))
    return out


def pool_utilization(frames: dict[str, pd.DataFrame], pools: pd.DataFrame) -> pd.DataFrame:
    """[resource, pool, time, value]: per resource, the mean over a pool's hosts of each host's bucket value."""
    parts = []
    for resource, f in frames.items():
        if f.empty:
            continue
        m = f.merge(pools[["host", "pool"]], on="host", how="left")
        m["pool"] = m["pool"].fillna(CPU_PREFIX + "unknown")
        p = m.groupby(["pool", "time"], as_index=False)["value"].mean()
        parts.append(p.assign(resource=resource))
    if not parts:
        return pd.DataFrame(columns=["resource", "pool", "time", "value"])
    return pd.concat(parts, ignore_index=True)[["resource", "pool", "time", "value"]]


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


def gpu_hours(reader, start, end, every: str) -> pd.DataFrame:
    """[pool, allocated, used] GPU-hours in the window: allocated = GPUs held by jobs (the forecast's demand:
    the share of each GPU's samples with a job on it), used = the GPUs' mean utilization, both times the
    bucket length and summed over the buckets."""
    from agents.query.base import parse_every
    from agents.schema.accelerators import accelerator_key
    from analyzer.forecast.demand import gpu_demand

    hours = parse_every(every) / 3.6e12
    cols = ["pool", "allocated", "used"]
    if "gpu" not in set(reader.measurements()):
        return pd.DataFrame(columns=cols)
    demand = gpu_demand(reader, start, end, every=every)
    allocated = demand.groupby("pool")["demand"].sum() * hours if len(demand) else pd.Series(dtype=float)
    util = reader.frame("gpu", ["utilization_ratio"], start, end, every=every, by=["host", "gpu", "model"])
    util["pool"] = GPU_PREFIX + util["model"].map(accelerator_key)
    used = util.groupby("pool")["utilization_ratio"].sum() * hours
    out = pd.DataFrame({"allocated": allocated, "used": used}).fillna(0.0).rename_axis("pool").reset_index()
    return out[cols]
