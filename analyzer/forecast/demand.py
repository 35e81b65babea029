"""Demand and capacity per pool, per time bucket, from the telemetry the agent collects.

Pools: every accelerator type is one pool, named by its canonical key ("gpu:a100-80gb", "gpu:mi250";
agents.schema.accelerators); hosts without any GPU form one
pool per CPU architecture ("cpu:aarch64", "cpu:x86_64"). The CPUs of GPU hosts are left out of the CPU
pools because they are scheduled with their GPUs, not as general CPU capacity.

- GPU demand is GPUs allocated to jobs, time-averaged over the bucket: for each (host, gpu), the share
  of that GPU's samples in the bucket that also have a job_gpu row, summed per accelerator type. A GPU
  held for 30 minutes of an hour counts 0.5, so demand is GPU-hours per hour and matches the
  scheduler's placements whatever the sampling interval. Capacity is the GPUs that reported at all.
- CPU demand is logical CPUs busy (cpu busy_ratio of cpu="total" x cpu_info threads), capacity the
  threads, both summed over the pool's hosts.

Every query is one aggregate pushed down to the store (GROUP BY time and tags), so the work done here
is proportional to series x buckets, not to raw points.
"""

from __future__ import annotations

from agents.schema.accelerators import accelerator_key

GPU_PREFIX, CPU_PREFIX = "gpu:", "cpu:"
COLUMNS = ["time", "pool", "demand", "capacity"]
def demand_series(reader, start, end, every: str = "1h"):
    """Long frame [time, pool, demand, capacity] per bucket of `every` in [start, end).

    reader is an agents.query Reader. Pools with no data give no rows; buckets with no samples at all
    (store outage) are absent rather than zero, so a forecaster sees a gap, not a collapse in demand.
    """
    import pandas as pd

    gpus, gpu_hosts = _gpu_demand(reader, start, end, every)
    if gpus.empty:  # no per-GPU series: what the per-job GPU series say was held
        from analyzer.forecast.held import held_demand

        gpus = held_demand(reader, start, end, every)
    parts = [gpus, _cpu_demand(reader, start, end, every, gpu_hosts)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "pool": pd.Series([], dtype=object),
                             "demand": pd.Series([], dtype=float), "capacity": pd.Series([], dtype=float)})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["pool", "time"], kind="stable").reset_index(drop=True)[COLUMNS]


def gpu_demand(reader, start, end, every: str = "1h"):
    """The GPU pools' rows of demand_series alone (per-GPU series only; two queries, no CPU ones): the
    dashboard's GPU-hours allocated."""
    return _gpu_demand(reader, start, end, every)[0]


def _gpu_demand(reader, start, end, every):
    present = reader.frame("gpu", ["utilization_ratio"], start, end, every=every, by=["host", "gpu", "model"],
                           agg="count")
    if present.empty:
        return present.iloc[0:0], set()
    held = reader.frame("job_gpu", ["utilization_ratio"], start, end, every=every, by=["host", "gpu"], agg="count")
    return gpu_demand_from_counts(present.rename(columns={"utilization_ratio": "samples"}),
                                  held.rename(columns={"utilization_ratio": "held"})), \
        set(present.loc[present["utilization_ratio"] > 0, "host"])


def gpu_demand_from_counts(present, held):
    """gpu_demand's rows from the two counts it asks the store for, for callers that already have them (the
    dashboard reads the per-GPU sample counts with the rest of `gpu` in one aggregate): present is
    [time, host, gpu, model, samples] (gpu samples per bucket), held [time, host, gpu, held] (job_gpu rows)."""
    import pandas as pd

    present = present[present["samples"] > 0]
    if present.empty:
        return pd.DataFrame({c: [] for c in COLUMNS})
    # Several jobs on one GPU (time slicing, MPS) give one row each: count the GPU once, never more than
    # the samples it reported.
    held = held.groupby(["time", "host", "gpu"], as_index=False)["held"].sum()
    g = present.merge(held, on=["time", "host", "gpu"], how="left")
    g["held"] = g["held"].fillna(0)
    g["busy"] = (g["held"] / g["samples"]).clip(upper=1.0)
    g["pool"] = GPU_PREFIX + g["model"].map(accelerator_key)
    out = g.groupby(["time", "pool"], as_index=False).agg(demand=("busy", "sum"), capacity=("busy", "size"))
    out["capacity"] = out["capacity"].astype(float)
    return pd.DataFrame(out)


def _cpu_demand(reader, start, end, every, gpu_hosts: set):
    import pandas as pd

    busy = reader.frame("cpu", ["busy_ratio"], start, end, every=every, by=["host", "cpu"], agg="mean")
    if busy.empty:
        return busy.iloc[0:0]
    busy = busy[busy["cpu"] == "total"].drop(columns="cpu")
    info = reader.frame("cpu_info", ["arch", "threads"], start, end, every=None, by=["host"])
    if info.empty:
        return info.iloc[0:0]
    # cpu_info is raw (string fields cannot be averaged): the latest report per host wins.
    info = info.sort_values("time").groupby("host", as_index=False).last()[["host", "arch", "threads"]]
    info = info[~info["host"].isin(gpu_hosts) & info["threads"].notna()]
    c = busy.merge(info, on="host", how="inner")
    c = c[c["busy_ratio"].notna()]
    c["cores"] = c["busy_ratio"] * c["threads"]
    c["pool"] = CPU_PREFIX + c["arch"].astype(str)
    out = c.groupby(["time", "pool"], as_index=False).agg(demand=("cores", "sum"), capacity=("threads", "sum"))
    out["capacity"] = out["capacity"].astype(float)
    return pd.DataFrame(out)
