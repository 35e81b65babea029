"""GPUs per recurring workload and accelerator type (kind "gpu"): how many, which type, and idle holds.

- Idle: a workload whose jobs hold GPUs without using them (the decayed percentile of their mean utilization
  below analyzer.features.IDLE_UTILIZATION) is told to release them all; a job outside such a workload that
  held GPUs idle for most of its run gets its own recommendation. Their GPU-hours are what the recommender
  reports as idle GPU-hours found.
- Count: busy GPU-equivalents per job (GPUs x the job's peak utilization) sized like CPU cores; a cut
  needs the workload's scaling model to price it (X(now) / X(new), with its bootstrap interval) and is
  proposed only when the slowdown's upper bound is within [recommend] max_slowdown. Without a fitted
  scaling model the cut is still proposed, saying that its throughput cost is unknown.
- Type: a cheaper type (price table) whose predicted speed (throughput matrix, with its uncertainty) keeps
  the workload's slowdown within budget, given how little of the big one it used, and whose memory holds
  its peak GPU memory.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.features import IDLE_UTILIZATION
from analyzer.recommend.rows import Rec, Skipped, fmt_hours, fmt_pct
from analyzer.recommend.usage import Group, estimate, median, risk_text, workloads

KIND = "gpu"
IDLE_JOB_SHARE = 0.5  # a job idle for more than half its run is reported on its own (jobstats flags far less)
Z90 = 1.645  # two-sided 90% interval, as the scaling model's bootstrap


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    recs: list[Rec] = []
    skipped: list[Skipped] = []
    covered: set[str] = set()
    for g in workloads(ctx.jobs[ctx.jobs["gpus"] > 0]):
        accs = g.jobs["accelerator"].astype(str).to_numpy()
        for acc in sorted(set(accs) - {""}):
            sub = Group(g.workload, g.jobs[accs == acc], g.times_s[accs == acc], g.owner)
            if _idle(ctx, sub, acc, recs, skipped):
                covered.update(sub.jobs["job"].astype(str))
                continue
            _count(ctx, sub, acc, recs, skipped)
            _type(ctx, sub, acc, recs)
    _idle_jobs(ctx, covered, recs)
    return recs, skipped


def _idle(ctx, g: Group, acc: str, recs: list[Rec], skipped: list[Skipped]) -> bool:
    util = g.col("gpu_utilization_mean")
    est = estimate(g, util, "gpu", ctx)
    if est.value is None:
        skipped.append(Skipped(KIND, "workload", f"{g.workload} on {acc}", f"GPU use: {est.reason}"))
        return False
    if est.value >= IDLE_UTILIZATION:
        return False
    gpus = g.col("gpus")
    held = gpus * g.hours
    idle_hours = float(np.nansum(held))
    risk, below = risk_text(est, 0.0, util, "utilization", lambda v: f"{v:.3f}")
    recs.append(Rec(
        KIND, "workload", g.workload,
        f"release the GPUs of workload {g.workload}{_owner(g)} on {acc} (request none, or a CPU node): its "
        f"{g.n} jobs held {fmt_hours(idle_hours)} GPU-hours at {100 * median(util):.1f}% mean utilization",
        risk + "; nothing it ran used the GPU, so no slowdown is expected", accelerator=acc, owner=g.owner,
        detail=f"idle/{acc}", method=ctx.settings.method, gpu_hours_week=idle_hours * ctx.per_week,
        exceed_probability=est.exceed_probability, below_peak=below, slowdown=0.0, slowdown_low=0.0,
        slowdown_high=0.0,
        evidence={"resource": "gpu", "accelerator": acc, "jobs": g.n, "idle_gpu_hours": idle_hours,
                  "utilization_estimate": est.value, "utilization_peak": est.peak,
                  "current_gpus_median": median(gpus), "recommended_gpus": 0,
                  "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return True


def _count(ctx, g: Group, acc: str, recs: list[Rec], skipped: list[Skipped]) -> None:
    gpus = g.col("gpus")
    busy = gpus * np.clip(g.col("gpu_utilization_peak"), 0, 1)
    current = median(gpus)
    est = estimate(g, busy, "gpu", ctx)
    if est.value is None:
        return  # _idle already said why
    new = max(1, math.ceil(est.value - 1e-9))
    if new > current * (1 - ctx.settings.min_saving) or new >= current:
        return
    nodes = median(g.col("nodes"))
    per_node = max(1.0, current / max(nodes, 1))
    model = ctx.scaling.get((g.workload, acc))
    slow = lo = hi = math.nan
    if model is not None:
        new_nodes = max(1, math.ceil(new / per_node))
        x_new, x_new_lo, x_new_hi = (float(np.ravel(v)[0]) for v in model.predict([new], new_nodes,
                                                                                  return_interval=True))
        x_old, x_old_lo, x_old_hi = (float(np.ravel(v)[0]) for v in model.predict([current], max(nodes, 1),
                                                                                  return_interval=True))
        slow = x_old / x_new - 1
        # unknown interval (no residual freedom): refuse to state a bound rather than a false one
        lo = x_old_lo / x_new_hi - 1 if math.isfinite(x_new_hi) else math.nan
        hi = x_old_hi / x_new_lo - 1 if math.isfinite(x_new_lo) else math.nan
        if not (math.isfinite(hi) and hi <= ctx.settings.max_slowdown):
            skipped.append(Skipped(KIND, "workload", f"{g.workload} on {acc}",
                                   f"GPU count: {new} instead of {current:g} would slow it by {fmt_pct(slow)} "
                                   f"(up to {fmt_pct(hi)}), over the {fmt_pct(ctx.settings.max_slowdown)} budget"))
            return
        cost = f"predicted slowdown {fmt_pct(slow)} (90% interval {fmt_pct(lo)} to {fmt_pct(hi)}, scaling model)"
    else:
        why = ctx.model_reason(f"scaling[{g.workload}/{acc}]")
        cost = f"throughput cost unknown: no scaling model for it on {acc} ({why})"
    freed = float(np.nansum(np.clip(gpus - new, 0, None) * g.hours))
    risk, below = risk_text(est, float(new), busy, "busy GPUs")
    recs.append(Rec(
        KIND, "workload", g.workload,
        f"request {new} GPU{'s' if new > 1 else ''} instead of {current:g} for workload {g.workload}{_owner(g)} "
        f"on {acc}: it used {est.peak:,.1f} at most and {np.nanpercentile(busy, 95):,.1f} at p95 over {g.n} jobs",
        f"{risk}; {cost}", accelerator=acc, owner=g.owner, detail=f"count/{acc}", method=ctx.settings.method,
        gpu_hours_week=freed * ctx.per_week, exceed_probability=est.exceed_probability, below_peak=below,
        slowdown=slow, slowdown_low=lo, slowdown_high=hi,
        evidence={"resource": "gpu", "accelerator": acc, "jobs": g.n, "current_gpus_median": current,
                  "recommended_gpus": new, "busy_gpus_estimate": est.value, "busy_gpus_peak": est.peak,
                  "scaling_model": model is not None, "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _type(ctx, g: Group, acc: str, recs: list[Rec]) -> None:
    m = ctx.throughput
    if m is None or g.workload not in m.matrix_.index or acc not in m.matrix_.columns:
        return
    prices = ctx.settings.prices
    hosts = ctx.host_table()
    memory = hosts.groupby("accelerator")["gpu_memory_bytes"].max() if len(hosts) else {}
    need = float(np.nanmax(g.col("gpu_memory_used_max_bytes"))) if np.isfinite(
        g.col("gpu_memory_used_max_bytes")).any() else math.nan
    util = float(np.nanpercentile(g.col("gpu_utilization_peak"), 95)) if np.isfinite(
        g.col("gpu_utilization_peak")).any() else 1.0
    util = min(max(util, 0.0), 1.0)
    x_a, s_a = m.predict(g.workload, acc, return_std=True)
    gpu_hours = float(np.nansum(g.col("gpus") * g.hours)) * ctx.per_week
    best = None
    for b in m.matrix_.columns:
        if b == acc or prices.gpu_price(b) >= prices.gpu_price(acc):
            continue
        allowed = ctx.settings.allowed_accelerators.get(g.workload)
        if allowed is not None and b not in allowed:
            continue
        cap = float(memory.get(b, math.nan)) if hasattr(memory, "get") else math.nan
        if not (math.isfinite(need) and math.isfinite(cap) and need <= 0.95 * cap):
            continue  # memory unknown or too small: never propose what may not fit
        x_b, s_b = m.predict(g.workload, b, return_std=True)
        sigma = math.sqrt(s_a ** 2 + s_b ** 2)
        r = x_b / x_a  # per-device speed of b relative to acc
        # the job kept acc busy `util` of the time: on b the same work needs util / r of it
        slow = max(1.0, util / r) - 1
        lo, hi = max(1.0, util / (r * math.exp(Z90 * sigma))) - 1, max(1.0, util / (r * math.exp(-Z90 * sigma))) - 1
        if not (hi <= ctx.settings.max_slowdown):
            continue
        saving = gpu_hours * (prices.gpu_price(acc) - prices.gpu_price(b))
        if best is None or saving > best[0]:
            best = (saving, b, r, slow, lo, hi, sigma, cap)
    if best is None:
        return
    saving, b, r, slow, lo, hi, sigma, cap = best
    recs.append(Rec(
        KIND, "workload", g.workload,
        f"run workload {g.workload}{_owner(g)} on {b} instead of {acc}: it kept {acc} at most {100 * util:.0f}% "
        f"busy (p95) and {b} runs it at {r:.2f}x the speed per GPU",
        f"predicted slowdown {fmt_pct(slow)} (90% interval {fmt_pct(lo)} to {fmt_pct(hi)}, throughput matrix, "
        f"log-uncertainty {sigma:.2f}); peak GPU memory {need / 2**30:,.1f} GiB of {cap / 2**30:,.0f}",
        accelerator=acc, owner=g.owner, detail=f"type/{acc}", method="throughput-matrix", money_week=saving,
        slowdown=slow, slowdown_low=lo, slowdown_high=hi,
        evidence={"resource": "gpu_type", "from": acc, "to": b, "jobs": g.n, "speed_ratio": r,
                  "utilization_p95": util, "gpu_hours_week": gpu_hours, "observed_cell": bool(
                      m.observed_.at[g.workload, b]), "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _idle_jobs(ctx, covered: set[str], recs: list[Rec]) -> None:
    j = ctx.jobs
    if len(j) == 0:
        return
    j = j[(j["gpus"] > 0) & ~j["job"].astype(str).isin(covered)]
    share = (j["gpu_idle_seconds"] / j["duration_seconds"]).where(j["duration_seconds"] > 0)
    j = j.assign(idle_share=share, idle_h=j["gpu_idle_seconds"] * j["gpus"] / 3600)
    for r in j[(j["idle_share"] > IDLE_JOB_SHARE) & (j["idle_h"] >= 1.0)].itertuples():
        recs.append(Rec(
            KIND, "job", f"{r.scheduler}/{r.job}",
            f"job {r.job} of {r.user or 'an unknown user'} held {int(r.gpus)} {r.accelerator} GPU"
            f"{'s' if r.gpus > 1 else ''} idle for {100 * r.idle_share:.0f}% of its "
            f"{r.duration_seconds / 3600:,.1f} h: "
            f"cancel it or release them (a one-off; per week at the window's rate)",
            "none for the job's work: its GPUs were below "
            f"{100 * IDLE_UTILIZATION:.0f}% busy in that share of its samples", accelerator=str(r.accelerator),
            owner=str(r.user), detail="idle", method="observed", gpu_hours_week=float(r.idle_h) * ctx.per_week,
            slowdown=0.0, slowdown_low=0.0, slowdown_high=0.0, exceed_probability=0.0,
            evidence={"resource": "gpu", "idle_gpu_hours": float(r.idle_h), "idle_share": float(r.idle_share),
                      "gpus": int(r.gpus), "workload": str(r.workload),
                      "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _owner(g: Group) -> str:
    return f" (run only by {g.owner})" if g.owner else ""
