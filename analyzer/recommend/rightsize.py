"""Right-sizing CPU cores, memory and the time limit per recurring workload (kind "rightsize").

Per node for cores and memory (a workload's jobs may span different node counts; a request is per node),
per job for the time limit. The new size is the sizing estimator's (analyzer.recommend.sizing: decayed
percentile plus margin, widened on short or noisy histories; or the krr / vpa baselines); a change is
proposed when it cuts the workload's typical request by at least [recommend] min_saving. The gain is what the
window's jobs asked for above the new size, per week. Too little history: no recommendation, and the reason.
"""

from __future__ import annotations

import math

from analyzer.recommend.rows import GIB, Rec, Skipped
from analyzer.recommend.usage import Groups, risk_text

KIND = "rightsize"
# resource -> (label, unit, rounding step, estimator resource)
RESOURCES = {"cpu": ("CPU cores", "cores", 1.0, "cpu"), "memory": ("memory", "GiB", 0.25, "memory"),
             "time_limit": ("time limit", "h", 0.25, "memory")}  # a run past its limit is killed: like memory


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    recs: list[Rec] = []
    skipped: list[Skipped] = []
    g = Groups.of(ctx.jobs)
    if len(g.jobs) == 0:
        return recs, skipped
    nodes = g.col("nodes").clip(lower=1)
    usage = {"cpu": (g.col("cpu_cores_peak") / nodes, g.col("cpus_allocated") / nodes, nodes),
             "memory": (g.col("memory_peak_bytes") / nodes / GIB, g.col("memory_limit_bytes") / nodes / GIB, nodes),
             "time_limit": (g.hours, g.col("time_limit_seconds") / 3600, nodes * 0 + 1)}
    owners, counts = g.owners().to_dict(), g.count().to_dict()
    for resource, (used, asked, per) in usage.items():
        label, _, step, est_resource = RESOURCES[resource]
        measured = used.notna().groupby(g.key).any()
        current = g.median(asked).to_dict()
        ests = g.estimate(used, est_resource, ctx)
        new_of = {}
        for key in measured.index[measured.to_numpy()]:
            est = ests.get(key)
            if not (current.get(key, math.nan) > 0):
                if resource != "time_limit":  # no time limit is common (no job_info): nothing to say
                    skipped.append(Skipped(KIND, "workload", key, f"{label}: no request known for its jobs"))
                continue
            if est is None or est.value is None:
                skipped.append(Skipped(KIND, "workload", key, f"{label}: {est.reason if est else 'no usage'}"))
                continue
            new = max(step, math.ceil(est.value / step - 1e-9) * step)
            if new <= current[key] * (1 - ctx.settings.min_saving):
                new_of[key] = new
        if not new_of:
            continue
        new_row = g.key.map(new_of)
        rows = new_row.notna()
        freed = g.sum(((asked - new_row).clip(lower=0) * per * g.hours)[rows]).to_dict()
        over = g.sum((used > new_row + 1e-9)[rows].astype(int)).to_dict()
        p95 = used[rows].groupby(g.key[rows]).quantile(0.95).to_dict()
        for key, new in new_of.items():
            recs.append(_rec(ctx, resource, key, new, ests[key], float(current[key]), float(freed[key]),
                             int(over[key]), int(counts[key]), float(p95[key]), owners[key]))
    return recs, skipped


def _rec(ctx, resource, key, new, est, current, freed, over, n, p95, owner) -> Rec:
    _, unit, step, _ = RESOURCES[resource]
    fmt = (lambda v: f"{v:,.0f}") if step >= 1 else (lambda v: f"{v:,.2f}")
    risk, below = risk_text(est, new, over, n, unit, fmt)
    gain = freed * ctx.per_week
    who = f" (run only by {owner})" if owner else ""
    if resource == "time_limit":
        action = (f"set the time limit of workload {key}{who} to {new:g} h instead of {current:,.1f} h: its "
                  f"longest job ran {est.peak:,.1f} h over {n} jobs (the scheduler backfills shorter limits sooner)")
    else:
        action = (f"request {fmt(new)} {unit} per node instead of {fmt(current)} for workload {key}{who}: its jobs "
                  f"used {fmt(est.peak)} at most and {fmt(p95)} at p95 over {n} jobs")
    return Rec(KIND, "workload", key, action, risk, owner=owner, detail=resource, method=ctx.settings.method,
               core_hours_week=gain if resource == "cpu" else 0.0,
               memory_gib_hours_week=gain if resource == "memory" else 0.0,
               exceed_probability=est.exceed_probability, below_peak=below,
               evidence={"resource": resource, "unit": unit if resource == "time_limit" else f"{unit} per node",
                         "jobs": n, "points_used": est.n, "current_median": current, "recommended": new,
                         "estimate": est.value, "peak": est.peak, "p95": p95,
                         "window": [str(ctx.window[0]), str(ctx.window[1])]})

