"""GPUs per recurring workload and accelerator type (kind "gpu"): how many, which type, and idle holds.

- Idle: a workload whose jobs hold GPUs without using them (the decayed percentile of their mean utilization
  below analyzer.features.IDLE_UTILIZATION) is told to release them all; a job outside such a workload that
  held GPUs idle for most of its run gets its own recommendation. Their GPU-hours are what the recommender
  reports as idle GPU-hours found.
- Count: when every job of the workload held more GPUs than its program ran on (gpus_used), request that
  many: the same program on the same number of GPUs, no slowdown. Otherwise busy GPU-equivalents per job
  (GPUs x the job's peak utilization) sized like CPU cores; a cut needs the workload's scaling model to
  price it (X(now) / X(new), with its bootstrap interval) and is proposed only when the slowdown's upper
  bound is within [recommend] max_slowdown. Without a fitted scaling model the cut is still proposed,
  saying that its throughput cost is unknown.
- Type: a cheaper type (price table) whose predicted speed (throughput matrix, with its uncertainty) keeps
  the workload's slowdown within budget, given how little of the big one it used, and whose memory holds
  its peak GPU memory.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.features import IDLE_UTILIZATION
from analyzer.recommend.rows import Rec, Skipped, fmt_hours, fmt_pct
from analyzer.recommend.usage import Groups, risk_text, split_key

KIND = "gpu"
# MIG GPU-instance profiles (compute slices of 7, memory in GB) from NVIDIA's MIG user guide, per type that has them
MIG_PROFILES = {
    "a100-40gb": ((1, 5), (2, 10), (3, 20), (4, 20), (7, 40)),
    "a100-80gb": ((1, 10), (2, 20), (3, 40), (4, 40), (7, 80)),
    "h100-80gb": ((1, 10), (2, 20), (3, 40), (4, 40), (7, 80)),
    "h100-94gb": ((1, 12), (2, 24), (3, 47), (4, 47), (7, 94)),
    "h200-141gb": ((1, 18), (2, 35), (3, 71), (4, 71), (7, 141)),
}
IDLE_JOB_SHARE = 0.5  # a job idle for more than half its run is reported on its own (jobstats flags far less)
Z90 = 1.645  # two-sided 90% interval, as the scaling model's bootstrap


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    recs: list[Rec] = []
    skipped: list[Skipped] = []
    jobs = ctx.jobs[(ctx.jobs["gpus"] > 0) & (ctx.jobs["accelerator"].astype(str) != "")]
    g = Groups.of(jobs, by_accelerator=True)
    covered: set[str] = set()
    if len(g.jobs):
        util, gpus, hours = g.col("gpu_utilization_mean"), g.col("gpus"), g.hours
        busy = gpus * g.col("gpu_utilization_peak").clip(0, 1)
        idle_est = g.estimate(util, "gpu", ctx)
        busy_est = g.estimate(busy, "gpu", ctx)
        held = g.sum(gpus * hours).to_dict()
        current = g.median(gpus).to_dict()
        med_util = g.median(util).to_dict()
        owners = g.owners().to_dict()
        arrays = {c: g.array(c) for c in ("gpus", "gpus_used", "nodes", "duration_seconds",
                                          "gpu_memory_used_max_bytes", "gpu_utilization_peak",
                                          "gpu_utilization_mean")}
        arrays["busy"] = busy.to_numpy(float)
        job_ids = g.jobs["job"].astype(str).to_numpy(object)
        for key, rows in g.slices().items():
            est = idle_est.get(key)
            workload, acc = split_key(key)
            if est is None or est.value is None:
                reason = est.reason if est is not None else "no utilization measured"
                skipped.append(Skipped(KIND, "workload", f"{workload} on {acc}", f"GPU use: {reason}"))
                continue
            sub = {c: a[rows] for c, a in arrays.items()}
            n = rows.stop - rows.start
            if est.value < IDLE_UTILIZATION:
                over = int((sub["gpu_utilization_mean"] > 1e-9).sum())
                recs.append(_idle(ctx, workload, acc, est, held[key], med_util[key], current[key], n, over,
                                  owners[key]))
                covered.update(job_ids[rows])
                continue
            _count(ctx, workload, acc, busy_est.get(key), sub, owners[key], recs, skipped)
            _type(ctx, workload, acc, sub, owners[key], recs)
            _mig(ctx, workload, acc, sub, owners[key], recs)
    _idle_jobs(ctx, covered, recs)
    return recs, skipped


def _idle(ctx, workload, acc, est, idle_hours, median_util, current, n, over, owner) -> Rec:
    risk, below = risk_text(est, 0.0, over, n, "utilization", lambda v: f"{v:.3f}")
    return Rec(
        KIND, "workload", workload,
        f"release the GPUs of workload {workload}{_who(owner)} on {acc} (request none, or a CPU node): its "
        f"{n} jobs held {fmt_hours(idle_hours)} GPU-hours at {100 * median_util:.1f}% mean utilization",
        risk + "; nothing it ran used the GPU, so no slowdown is expected", accelerator=acc, owner=owner,
        detail=f"idle/{acc}", method=ctx.settings.method, gpu_hours_week=idle_hours * ctx.per_week,
        exceed_probability=est.exceed_probability, below_peak=below, slowdown=0.0, slowdown_low=0.0,
        slowdown_high=0.0,
        evidence={"resource": "gpu", "accelerator": acc, "jobs": n, "idle_gpu_hours": idle_hours,
                  "utilization_estimate": est.value, "utilization_peak": est.peak,
                  "current_gpus_median": current, "recommended_gpus": 0,
                  "window": [str(ctx.window[0]), str(ctx.window[1])]})


def _count(ctx, workload, acc, est, sub: dict, owner, recs, skipped) -> None:
    """sub: the group's rows as arrays (gpus, nodes, duration_seconds, busy, ...)."""
    if est is None or est.value is None:
        return  # the idle check already said why
    gpus = sub["gpus"]
    current = float(np.median(gpus))
    new = max(1, math.ceil(est.value - 1e-9))
    ran_on = int(np.nanmax(sub["gpus_used"])) if np.isfinite(sub["gpus_used"]).any() else 0
    if 1 <= ran_on <= new and ran_on <= current * (1 - ctx.settings.min_saving) and (gpus > ran_on).all():
        _unused(ctx, workload, acc, est, sub, ran_on, current, owner, recs)
        return
    if new > current * (1 - ctx.settings.min_saving) or new >= current:
        return
    nodes = float(np.median(sub["nodes"]))
    per_node = max(1.0, current / max(nodes, 1))
    model = ctx.scaling.get((workload, acc))
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
            skipped.append(Skipped(KIND, "workload", f"{workload} on {acc}",
                                   f"GPU count: {new} instead of {current:g} would slow it by {fmt_pct(slow)} "
                                   f"(up to {fmt_pct(hi)}), over the {fmt_pct(ctx.settings.max_slowdown)} budget"))
            return
        cost = f"predicted slowdown {fmt_pct(slow)} (90% interval {fmt_pct(lo)} to {fmt_pct(hi)}, scaling model)"
    else:
        why = ctx.model_reason(f"scaling[{workload}/{acc}]")
        cost = f"throughput cost unknown: no scaling model for it on {acc} ({why})"
    hours = sub["duration_seconds"] / 3600
    freed = float(np.nansum(np.clip(gpus - new, 0, None) * hours))
    b = sub["busy"]
    risk, below = risk_text(est, float(new), int((b > new + 1e-9).sum()), len(b), "busy GPUs")
    recs.append(Rec(
        KIND, "workload", workload,
        f"request {new} GPU{'s' if new > 1 else ''} instead of {current:g} for workload {workload}{_who(owner)} "
        f"on {acc}: it used {est.peak:,.1f} at most and {np.nanpercentile(b, 95):,.1f} at p95 over {len(b)} jobs",
        f"{risk}; {cost}", accelerator=acc, owner=owner, detail=f"count/{acc}", method=ctx.settings.method,
        gpu_hours_week=freed * ctx.per_week, exceed_probability=est.exceed_probability, below_peak=below,
        slowdown=slow, slowdown_low=lo, slowdown_high=hi,
        evidence={"resource": "gpu", "accelerator": acc, "jobs": len(b), "current_gpus_median": current,
                  "recommended_gpus": new, "busy_gpus_estimate": est.value, "busy_gpus_peak": est.peak,
                  "scaling_model": model is not None, "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _unused(ctx, workload, acc, est, sub: dict, ran_on: int, current: float, owner, recs) -> None:
    """Every job of the workload held more GPUs than its program ran on (gpus_used: GPUs it kept at least
    IDLE_UTILIZATION busy on average). Asking for `ran_on` GPUs gives the program the same GPUs it used,
    so no slowdown is expected and no scaling model is needed; the sizing of busy GPU-equivalents (with
    its margin) already asked for at least that many."""
    gpus, hours = sub["gpus"], sub["duration_seconds"] / 3600
    freed = float(np.nansum(np.clip(gpus - ran_on, 0, None) * hours))
    n = len(gpus)
    recs.append(Rec(
        KIND, "workload", workload,
        f"request {ran_on} GPU{'s' if ran_on > 1 else ''} instead of {current:g} for workload {workload}"
        f"{_who(owner)} on {acc}: each of its {n} jobs ran on at most {ran_on} of the GPUs it held "
        f"(the others stayed below {100 * IDLE_UTILIZATION:.0f}% busy)",
        f"none for the work it ran: no job of the {n} kept more than {ran_on} GPUs busy, so the same program gets "
        f"the same GPUs (busy GPU-equivalents sized at {est.value:,.2f}, peak {est.peak:,.2f}); a job that "
        f"starts more processes than before would need its old request",
        accelerator=acc, owner=owner, detail=f"count/{acc}", method=ctx.settings.method,
        gpu_hours_week=freed * ctx.per_week, exceed_probability=0.0, below_peak=False,
        slowdown=0.0, slowdown_low=0.0, slowdown_high=0.0,
        evidence={"resource": "gpu", "accelerator": acc, "jobs": n, "current_gpus_median": current,
                  "recommended_gpus": ran_on, "gpus_used_max": ran_on, "busy_gpus_estimate": est.value,
                  "busy_gpus_peak": est.peak, "scaling_model": False,
                  "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _type(ctx, workload: str, acc: str, sub: dict, owner: str, recs: list[Rec]) -> None:
    m = ctx.throughput
    if m is None or workload not in m.matrix_.index or acc not in m.matrix_.columns:
        return
    prices = ctx.settings.prices
    hosts = ctx.host_table()
    memory = hosts.groupby("accelerator")["gpu_memory_bytes"].max() if len(hosts) else {}
    mem = sub["gpu_memory_used_max_bytes"]
    need = float(np.nanmax(mem)) if np.isfinite(mem).any() else math.nan
    peaks = sub["gpu_utilization_peak"]
    util = float(np.nanpercentile(peaks, 95)) if np.isfinite(peaks).any() else 1.0
    util = min(max(util, 0.0), 1.0)
    x_a, s_a = m.predict(workload, acc, return_std=True)
    gpu_hours = float(np.nansum(sub["gpus"] * sub["duration_seconds"])) / 3600 * ctx.per_week
    best = None
    for b in m.matrix_.columns:
        if b == acc or prices.gpu_price(b) >= prices.gpu_price(acc):
            continue
        allowed = ctx.settings.allowed_accelerators.get(workload)
        if allowed is not None and b not in allowed:
            continue
        cap = float(memory.get(b, math.nan)) if hasattr(memory, "get") else math.nan
        if not (math.isfinite(need) and math.isfinite(cap) and need <= 0.95 * cap):
            continue  # memory unknown or too small: never propose what may not fit
        x_b, s_b = m.predict(workload, b, return_std=True)
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
        KIND, "workload", workload,
        f"run workload {workload}{_who(owner)} on {b} instead of {acc}: it kept {acc} at most {100 * util:.0f}% "
        f"busy (p95) and {b} runs it at {r:.2f}x the speed per GPU",
        f"predicted slowdown {fmt_pct(slow)} (90% interval {fmt_pct(lo)} to {fmt_pct(hi)}, throughput matrix, "
        f"log-uncertainty {sigma:.2f}); peak GPU memory {need / 2**30:,.1f} GiB of {cap / 2**30:,.0f}",
        accelerator=acc, owner=owner, detail=f"type/{acc}", method="throughput-matrix", money_week=saving,
        slowdown=slow, slowdown_low=lo, slowdown_high=hi,
        evidence={"resource": "gpu_type", "from": acc, "to": b, "jobs": len(sub["gpus"]), "speed_ratio": r,
                  "utilization_p95": util, "gpu_hours_week": gpu_hours, "observed_cell": bool(
                      m.observed_.at[workload, b]), "window": [str(ctx.window[0]), str(ctx.window[1])]}))


def _mig(ctx, workload: str, acc: str, sub: dict, owner: str, recs: list[Rec]) -> None:
    """A MIG slice for a one-GPU workload whose p95 peak utilization and peak memory fit a smaller profile."""
    profiles = MIG_PROFILES.get(acc)
    gpus, peaks, mem = sub["gpus"], sub["gpu_utilization_peak"], sub["gpu_memory_used_max_bytes"]
    if profiles is None or np.any(gpus != 1) or not np.isfinite(peaks).all() or not np.isfinite(mem).all():
        return
    util, need = float(np.percentile(peaks, 95)), float(mem.max())
    fit = [(g, gb) for g, gb in profiles if g / 7 >= util and 0.95 * gb * 1e9 >= need]
    if not fit or fit[0][0] == 7:
        return
    g, gb = fit[0]
    hours = float(np.nansum(sub["duration_seconds"])) / 3600 * ctx.per_week
    recs.append(Rec(
        KIND, "workload", workload,
        f"run workload {workload}{_who(owner)} on a MIG {g}g.{gb}gb slice of {acc} instead of a whole GPU: its "
        f"{len(gpus)} jobs kept the GPU at most {100 * util:.0f}% busy (p95 of their peaks) and used "
        f"{need / 1e9:,.1f} GB of memory at most",
        f"slowdown not modelled: a {g}g slice has {g}/7 of the SMs, {100 * g / 7:.0f}% against the "
        f"{100 * util:.0f}% it used at its p95 peak, and {gb} GB; the job table has no MIG measurements to check "
        "it against", accelerator=acc, owner=owner, detail=f"mig/{acc}", method="mig-profile",
        gpu_hours_week=hours * (1 - g / 7),
        evidence={"resource": "mig", "accelerator": acc, "profile": f"{g}g.{gb}gb", "jobs": len(gpus),
                  "utilization_p95_of_peaks": util, "memory_peak_bytes": need,
                  "window": [str(ctx.window[0]), str(ctx.window[1])]}))


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


def _who(owner: str) -> str:
    return f" (run only by {owner})" if owner else ""
