"""GPU-hours of the week from the analyze run's job table and efficiency table: held (allocated), used and
idle per job, pool, workload and user.

Per job the analyzer computed gpu_hours_held = GPUs x duration and gpu_hours_idle (analyzer.efficiency);
used = held x gpu_utilization (the job's mean utilization over every GPU it held, idle ones at 0). A job
that ran partly outside the week counts the share of its span inside it (when the run's window is the week,
as a weekly `fleetwise analyze --since <Monday> --until <next Monday>` makes it, that share is 1 and the
figures are exactly the analyzer's).
"""

from __future__ import annotations

from analyzer.forecast.demand import GPU_PREFIX

TOP = 10


def job_hours(run, start, end):
    """One row per GPU job that overlaps [start, end): job, user, workload, pool, gpus, share (of its span in
    the week), held, used, idle (GPU-hours in the week), utilization."""
    import numpy as np
    import pandas as pd

    jobs = run.table("job_table")
    eff = run.table("efficiency")
    if len(jobs) != len(eff) or not (jobs["job"].to_numpy() == eff["job"].to_numpy()).all():
        raise ValueError(f"run {run.run_id}: the efficiency table does not list the job table's jobs")
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    lo = jobs["start"].clip(lower=t0)
    hi = jobs["end"].clip(upper=t1)
    overlap = (hi - lo).dt.total_seconds().clip(lower=0)
    duration = jobs["duration_seconds"].astype(float)
    share = np.where(duration > 0, overlap / duration.where(duration > 0), 0.0)
    held = eff["gpu_hours_held"] * share
    out = pd.DataFrame({
        "job": jobs["job"], "scheduler": jobs["scheduler"], "user": jobs["user"],
        "workload": jobs.get("workload", ""),
        "pool": GPU_PREFIX + jobs["accelerator"].astype(str), "gpus": jobs["gpus"],
        "share": share, "held": held, "used": held * eff["gpu_utilization"],
        "idle": eff["gpu_hours_idle"] * share, "utilization": eff["gpu_utilization"]})
    return out[(out["gpus"] > 0) & (out["held"] > 0)].reset_index(drop=True)


def by_pool(jobs, available=None):
    """Per pool: GPU-hours available (from the telemetry, if given), allocated, used, idle, and the shares."""
    import pandas as pd

    g = jobs.groupby("pool", sort=True)
    out = pd.DataFrame({"jobs": g.size(), "allocated_gpu_hours": g["held"].sum(),
                        "used_gpu_hours": g["used"].sum(min_count=1),
                        "idle_gpu_hours": g["idle"].sum(min_count=1)}).reset_index()
    if available is not None and len(available):
        out = out.merge(available, on="pool", how="outer")
    else:
        out["available_gpu_hours"] = float("nan")
    total = {"pool": "all", "jobs": out["jobs"].sum(),
             **{c: out[c].sum(min_count=1) for c in ("allocated_gpu_hours", "used_gpu_hours", "idle_gpu_hours",
                                                      "available_gpu_hours")}}
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    out["jobs"] = out["jobs"].fillna(0).astype(int)
    available_hours = out["available_gpu_hours"]
    out["allocated_share"] = out["allocated_gpu_hours"] / available_hours.where(available_hours > 0)
    out["used_share_of_allocated"] = out["used_gpu_hours"] / out["allocated_gpu_hours"].where(
        out["allocated_gpu_hours"] > 0)
    return out[["pool", "jobs", "available_gpu_hours", "allocated_gpu_hours", "used_gpu_hours", "idle_gpu_hours",
                "allocated_share", "used_share_of_allocated"]]


def available_gpu_hours(demand):
    """GPU-hours each GPU pool could have given in the week: the forecast's capacity per hourly bucket, summed."""
    import pandas as pd

    gpu = demand[demand["pool"].str.startswith(GPU_PREFIX)]
    if gpu.empty:
        return pd.DataFrame(columns=["pool", "available_gpu_hours"])
    return gpu.groupby("pool", as_index=False)["capacity"].sum().rename(columns={"capacity": "available_gpu_hours"})


def underused(jobs, key: str, top: int = TOP):
    """The `top` workloads or users that left the most GPU-hours unused (held - used), with what they held."""
    import pandas as pd

    named = jobs[jobs[key].astype(str) != ""]
    if named.empty:
        return pd.DataFrame(columns=[key, "jobs", "allocated_gpu_hours", "used_gpu_hours", "unused_gpu_hours",
                                     "idle_gpu_hours", "utilization"])
    g = named.groupby(key, sort=False)
    out = pd.DataFrame({"jobs": g.size(), "allocated_gpu_hours": g["held"].sum(),
                        "used_gpu_hours": g["used"].sum(min_count=1),
                        "idle_gpu_hours": g["idle"].sum(min_count=1)}).reset_index()
    out["unused_gpu_hours"] = out["allocated_gpu_hours"] - out["used_gpu_hours"]
    out["utilization"] = out["used_gpu_hours"] / out["allocated_gpu_hours"]
    out = out.sort_values(["unused_gpu_hours", key], ascending=[False, True], kind="stable").head(top)
    return out[[key, "jobs", "allocated_gpu_hours", "used_gpu_hours", "unused_gpu_hours", "idle_gpu_hours",
                "utilization"]].reset_index(drop=True)
