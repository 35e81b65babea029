"""Utilization per pool and resource from the telemetry, for one ISO week and the weeks before it.

Pools are the forecast's (analyzer.forecast.demand): one per accelerator type (`gpu:a100-80gb`), and one per
CPU architecture for hosts without GPUs (`cpu:x86_64`); a GPU host's CPUs and memory count in its GPU pool.

Resources: `gpu` (utilization_ratio), `gpu_memory` (memory used / memory size), `gpu_allocated` (the share of
the pool's GPUs held by jobs, analyzer.forecast.demand.demand_series: the forecast's own demand over its
capacity), `cpu` (busy_ratio of cpu="total"), `memory` (used_ratio). Each is reduced in the store to one
value per pool (GPU fields grouped by model, pushed down) or per host (CPU, memory) and hour; the pool's
hourly value is the mean over its GPUs' samples, or over its hosts. A week's mean, p95 and peak are the
mean, 95th percentile and maximum of those hourly pool values: an hour of the whole pool, not one device's
spike, is what capacity is planned on. The trend uses daily values (UTC days) averaged per ISO week.
"""

from __future__ import annotations

from agents.schema.accelerators import accelerator_key
from analyzer.forecast.demand import CPU_PREFIX, GPU_PREFIX

RESOURCES = ("gpu", "gpu_memory", "gpu_allocated", "cpu", "memory")
COLUMNS = ["time", "pool", "resource", "value"]


def _empty():
    import pandas as pd

    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "pool": pd.Series([], dtype=object),
                         "resource": pd.Series([], dtype=object), "value": pd.Series([], dtype=float)})


def host_pools(reader, start, end) -> dict[str, str]:
    """host -> pool over [start, end): the accelerator its GPUs report, else its CPU architecture."""
    present = set(reader.measurements())
    pools: dict[str, str] = {}
    if "cpu_info" in present:
        info = reader.frame("cpu_info", ["arch"], start, end, every=None, by=["host"])
        if len(info):
            # cpu_info is raw (a string field cannot be averaged): each host's latest report wins
            last = info.sort_values("time").groupby("host")["arch"].last()
            pools.update({h: CPU_PREFIX + str(a) for h, a in last.items() if a})
    if "gpu" in present:
        gpus = reader.aggregate("gpu", {"n": ("utilization_ratio", "count")}, start, end, by=["host", "model"])
        for r in gpus[gpus["n"] > 0].itertuples():
            pools[r.host] = GPU_PREFIX + accelerator_key(r.model)
    return pools


def pool_series(reader, start, end, every: str = "1h", pools: dict[str, str] | None = None):
    """Long frame [time, pool, resource, value] of hourly (or `every`) pool values in [start, end); pools: host ->
    pool (host_pools(), read over [start, end) when not given)."""
    import pandas as pd

    present = set(reader.measurements())
    parts = []
    if "gpu" in present:
        parts.append(_gpu(reader, start, end, every))
        from analyzer.forecast.demand import demand_series

        held = demand_series(reader, start, end, every=every)
        held = held[held["pool"].str.startswith(GPU_PREFIX) & (held["capacity"] > 0)]
        parts.append(pd.DataFrame({"time": held["time"], "pool": held["pool"], "resource": "gpu_allocated",
                                   "value": held["demand"] / held["capacity"]}))
    if pools is None:
        pools = host_pools(reader, start, end) if {"cpu", "memory"} & present else {}
    if "cpu" in present and pools:
        cpu = reader.frame("cpu", ["busy_ratio"], start, end, every=every, by=["host", "cpu"], agg="mean")
        cpu = cpu[cpu["cpu"] == "total"]
        parts.append(_per_host(cpu, "busy_ratio", "cpu", pools))
    if "memory" in present and pools:
        mem = reader.frame("memory", ["used_ratio"], start, end, every=every, by=["host"], agg="mean")
        parts.append(_per_host(mem, "used_ratio", "memory", pools))
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    out = out[out["value"].notna()]
    return out.sort_values(["pool", "resource", "time"], kind="stable").reset_index(drop=True)[COLUMNS]


def _gpu(reader, start, end, every):
    import pandas as pd

    stats = {"util": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count"),
             "used": ("memory_used_bytes", "sum"), "total": ("memory_total_bytes", "sum")}
    g = reader.aggregate("gpu", stats, start, end, every=every, by=["model"])
    if g.empty:
        return _empty()
    g["pool"] = GPU_PREFIX + g["model"].map(accelerator_key)
    # several driver strings can name one type: weight each model's mean by its samples
    g["util_sum"] = g["util"] * g["n"]
    p = g.groupby(["time", "pool"], as_index=False)[["util_sum", "n", "used", "total"]].sum()
    util = pd.DataFrame({"time": p["time"], "pool": p["pool"], "resource": "gpu",
                         "value": p["util_sum"] / p["n"].where(p["n"] > 0)})
    mem = pd.DataFrame({"time": p["time"], "pool": p["pool"], "resource": "gpu_memory",
                        "value": p["used"] / p["total"].where(p["total"] > 0)})
    return pd.concat([util, mem], ignore_index=True)


def _per_host(frame, field: str, resource: str, pools: dict[str, str]):
    import pandas as pd

    if frame.empty:
        return _empty()
    f = frame.assign(pool=frame["host"].map(pools)).dropna(subset=["pool"])
    p = f.groupby(["time", "pool"], as_index=False)[field].mean()
    return pd.DataFrame({"time": p["time"], "pool": p["pool"], "resource": resource, "value": p[field]})


def week_stats(hourly):
    """Per pool and resource: mean, p95 and peak of the hourly pool values, and the hours they cover."""
    import pandas as pd

    if hourly.empty:
        return pd.DataFrame(columns=["pool", "resource", "mean", "p95", "peak", "hours"])
    g = hourly.groupby(["pool", "resource"], sort=True)["value"]
    out = pd.DataFrame({"mean": g.mean(), "p95": g.quantile(0.95), "peak": g.max(), "hours": g.size()})
    out = out.reset_index()
    order = {r: i for i, r in enumerate(RESOURCES)}
    return out.sort_values(["pool", "resource"], key=lambda s: s.map(order) if s.name == "resource" else s,
                           kind="stable").reset_index(drop=True)


def weekly_means(daily):
    """Per ISO week, pool and resource: the mean of the daily values (weeks as `2026-W47`)."""
    import pandas as pd

    if daily.empty:
        return pd.DataFrame(columns=["week", "pool", "resource", "mean", "days"])
    iso = daily["time"].dt.isocalendar()
    week = iso["year"].astype(str) + "-W" + iso["week"].astype(int).map("{:02d}".format)
    g = daily.assign(week=week).groupby(["week", "pool", "resource"], sort=True)["value"]
    return pd.DataFrame({"mean": g.mean(), "days": g.size()}).reset_index()
