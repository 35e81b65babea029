"""Right-sizing CPU cores, memory and the time limit per recurring workload (kind "rightsize").

Per node for cores and memory (a workload's jobs may span different node counts; a request is per node),
per job for the time limit. The new size is the sizing estimator's (analyzer.recommend.sizing: decayed
percentile plus margin, widened on short or noisy histories; or the krr / vpa baselines); a change is
proposed when it cuts the workload's typical request by at least [recommend] min_saving. The gain is what the
window's jobs asked for above the new size, per week. Too little history: no recommendation, and the reason.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.recommend.rows import GIB, Rec, Skipped
from analyzer.recommend.usage import estimate, median, risk_text, workloads

KIND = "rightsize"


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    recs: list[Rec] = []
    skipped: list[Skipped] = []
    for g in workloads(ctx.jobs):
        nodes = np.maximum(g.col("nodes"), 1)
        for resource, used, asked, unit, step in (
                ("cpu", g.col("cpu_cores_peak") / nodes, g.col("cpus_allocated") / nodes, "cores", 1.0),
                ("memory", g.col("memory_peak_bytes") / nodes / GIB, g.col("memory_limit_bytes") / nodes / GIB,
                 "GiB", 0.25)):
            _one(ctx, g, resource, used, asked, nodes, unit, step, recs, skipped)
        _time_limit(ctx, g, recs, skipped)
    return recs, skipped


def _one(ctx, g, resource, used, asked, nodes, unit, step, recs, skipped) -> None:
    label = "CPU cores" if resource == "cpu" else "memory"
    if not np.isfinite(used).any():
        return  # nothing measured (e.g. a scheduler that reports no cgroup): nothing to say
    current = median(asked)
    if not (current > 0):
        skipped.append(Skipped(KIND, "workload", g.workload, f"{label}: no request known for its jobs"))
        return
    est = estimate(g, used, "memory" if resource == "memory" else "cpu", ctx)
    if est.value is None:
        skipped.append(Skipped(KIND, "workload", g.workload, f"{label}: {est.reason}"))
        return
    new = max(step, math.ceil(est.value / step - 1e-9) * step)
    if new > current * (1 - ctx.settings.min_saving):
        return
    freed = np.clip(asked - new, 0, None) * nodes * g.hours  # unit-hours over the window
    gain = float(np.nansum(freed)) * ctx.per_week
    fmt = (lambda v: f"{v:,.0f}") if step >= 1 else (lambda v: f"{v:,.2f}")
    risk, below = risk_text(est, new, used, unit, fmt)
    action = (f"request {fmt(new)} {unit} per node instead of {fmt(current)} for workload {g.workload}"
              f"{_owner(g)}: its jobs used {fmt(est.peak)} at most and {fmt(float(np.nanpercentile(used, 95)))}"
              f" at p95 over {g.n} jobs")
    recs.append(Rec(
        KIND, "workload", g.workload, action, risk, owner=g.owner, detail=resource, method=ctx.settings.method,
        core_hours_week=gain if resource == "cpu" else 0.0,
        memory_gib_hours_week=gain if resource == "memory" else 0.0,
        exceed_probability=est.exceed_probability, below_peak=below,
        evidence={"resource": resource, "unit": f"{unit} per node", "jobs": g.n, "points_used": est.n,
                  "current_median": current, "recommended": new, "estimate": est.value, "peak": est.peak,
                  "p95": float(np.nanpercentile(used, 95)), "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _time_limit(ctx, g, recs, skipped) -> None:
    limits = g.col("time_limit_seconds")
    if not np.isfinite(limits).any():
        return
    current = median(limits)
    hours = g.hours
    est = estimate(g, hours, "memory", ctx)  # a run past its limit is killed: size it like memory
    if est.value is None:
        skipped.append(Skipped(KIND, "workload", g.workload, f"time limit: {est.reason}"))
        return
    new_h = max(0.25, math.ceil(est.value * 4 - 1e-9) / 4)  # quarter hours
    if new_h * 3600 > current * (1 - ctx.settings.min_saving):
        return
    risk, below = risk_text(est, new_h, hours, "h")
    recs.append(Rec(
        KIND, "workload", g.workload,
        f"set the time limit of workload {g.workload}{_owner(g)} to {new_h:g} h instead of {current / 3600:,.1f} h:"
        f" its longest job ran {est.peak:,.1f} h over {g.n} jobs (the scheduler backfills shorter limits sooner)",
        risk, owner=g.owner, detail="time_limit", method=ctx.settings.method,
        exceed_probability=est.exceed_probability, below_peak=below,
        evidence={"resource": "time_limit", "unit": "hours", "jobs": g.n, "current_median_hours": current / 3600,
                  "recommended_hours": new_h, "peak_hours": est.peak,
                  "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _owner(g) -> str:
    return f" (run only by {g.owner})" if g.owner else ""
