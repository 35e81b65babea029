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
    import numpy as np
    import pandas as pd

    from analyzer.runcodes import factorize_runs

    present = present[present["samples"] > 0]
    if present.empty:
        return pd.DataFrame({c: [] for c in COLUMNS})
    # Keys as integers (bucket, host, gpu): a week of 2,000 GPUs at 15 minutes is half a million rows, and a
    # merge on three string columns took seconds where this takes tens of milliseconds.
    # One pass over both frames' host and gpu strings (each frame comes in runs of a host, then a gpu).
    t_ns = np.asarray(pd.DatetimeIndex(present["time"]).as_unit("ns").asi8)
    t_codes, times_ns = pd.factorize(t_ns, sort=True)
    times = pd.to_datetime(times_ns, unit="ns", utc=True).as_unit("ns")
    n_present = len(present)
    h_codes, hosts = factorize_runs(np.concatenate([present["host"].to_numpy(dtype=object),
                                                    held["host"].to_numpy(dtype=object)]))
    g_codes, gpus = factorize_runs(np.concatenate([present["gpu"].to_numpy(dtype=object),
                                                   held["gpu"].to_numpy(dtype=object)]))

    def key(t, h, g):
        k = (t.astype(np.int64) * len(hosts) + h) * len(gpus) + g
        return np.where((t < 0) | (h < 0) | (g < 0), -1, k)

    # Several jobs on one GPU (time slicing, MPS) give one row each: count the GPU once, never more than
    # the samples it reported.
    held_keys = np.zeros(0, dtype=np.int64)
    if len(held):
        held_ns = np.asarray(pd.DatetimeIndex(held["time"]).as_unit("ns").asi8)
        at = np.searchsorted(times_ns, held_ns).clip(max=max(len(times_ns) - 1, 0))
        held_t = np.where(times_ns[at] == held_ns, at, -1)
        held_keys = key(held_t, h_codes[n_present:], g_codes[n_present:])
    ok = held_keys >= 0
    held_sum = pd.Series(held["held"].to_numpy(dtype=float)[ok]).groupby(held_keys[ok]).sum()
    got = held_sum.reindex(key(t_codes, h_codes[:n_present], g_codes[:n_present])).fillna(0.0).to_numpy()
    busy = np.minimum(got / present["samples"].to_numpy(dtype=float), 1.0)
    m_codes, models = factorize_runs(present["model"])
    p_codes, pools = pd.factorize(np.asarray([GPU_PREFIX + accelerator_key(m) for m in models], dtype=object),
                                  sort=True)
    cell = t_codes.astype(np.int64) * len(pools) + p_codes[m_codes]
    n = len(times) * len(pools)
    capacity, demand = np.bincount(cell, minlength=n), np.bincount(cell, weights=busy, minlength=n)
    cells = np.flatnonzero(capacity)  # in (time, pool) order, as a groupby on both gave them
    return pd.DataFrame({"time": times[cells // len(pools)],
                         "pool": pd.Series(np.asarray(pools, dtype=object)[cells % len(pools)], dtype=object),
                         "demand": demand[cells], "capacity": capacity[cells].astype(float)})


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
