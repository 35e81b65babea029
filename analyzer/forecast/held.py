"""GPU demand from per-job GPU series alone (job_gpu), for stores without per-GPU series (`gpu`).

GPU-only pod telemetry (the GenAI trace, dcgm-exporter scraped without its device series) says which
jobs held a GPU and when, but not how many GPUs there were or of which model. A job holds each of its GPUs
from its first to its last sample there (its span, as in the job table); demand per bucket is the
GPU-hours held in it per hour. Every GPU falls in one pool of unknown model ("gpu:unknown"), and capacity
is NaN: how many GPUs the fleet has is not in the data, so it is not guessed.
"""

from __future__ import annotations

SPAN_FIELDS = ("utilization_ratio", "memory_used_bytes")
UNKNOWN = "unknown"  # the pool's accelerator: the model is not in per-job series


def held_demand(reader, start, end, every: str = "1h"):
    """Long frame [time, pool, demand, capacity] from job_gpu spans; empty when job_gpu has none."""
    import numpy as np
    import pandas as pd

    from agents.query.base import parse_every, time_ns
    from analyzer.forecast.demand import COLUMNS, GPU_PREFIX

    if "job_gpu" not in set(reader.measurements()):
        return pd.DataFrame(columns=COLUMNS)
    stats = {f"{a}:{f}": (f, a) for f in SPAN_FIELDS for a in ("first_time", "last_time")}
    spans = reader.aggregate("job_gpu", stats, start, end, by=["host", "gpu", "uuid", "job", "scheduler", "user"])
    if spans.empty:
        return pd.DataFrame(columns=COLUMNS)
    first = spans[[c for c in stats if c.startswith("first_time")]].min(axis=1)
    last = spans[[c for c in stats if c.startswith("last_time")]].max(axis=1)
    lo = first.to_numpy("datetime64[ns]").view("int64")
    hi = last.to_numpy("datetime64[ns]").view("int64")
    ok = (lo != np.iinfo(np.int64).min) & (hi >= lo)
    lo, hi = lo[ok], hi[ok]
    step = parse_every(every)
    lo, hi = np.maximum(lo, time_ns(start)), np.minimum(hi, time_ns(end))
    b0, b1 = lo // step, hi // step
    n = (b1 - b0 + 1).astype(np.int64)
    rep = np.repeat(np.arange(len(n)), n)
    bucket = b0[rep] + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    held = (np.minimum(hi[rep], (bucket + 1) * step) - np.maximum(lo[rep], bucket * step)) / step
    demand = pd.Series(held).groupby(bucket).sum()
    return pd.DataFrame({"time": pd.to_datetime(demand.index.to_numpy() * step, unit="ns", utc=True),
                         "pool": GPU_PREFIX + UNKNOWN, "demand": demand.to_numpy(float),
                         "capacity": np.nan})[COLUMNS]
