"""GPU power caps per (workload, accelerator type) from the power-cap model (kind "powercap").

The cap is PowerCapModel.energy_optimal_cap for the slowdown budget ([recommend] max_slowdown, 5% by
default): the cap fraction, within the caps observed, that minimizes energy per unit of work while
time(f) / time(1) stays within budget. Each job that ran above that cap saves its energy times
1 - E(f) / E(f_job), at the fleet's observed usage, per week; its time grows by
T(f) / T(f_job) <= T(f) / T(1).
The interval widens the predicted slowdown by the fit's log-time RMSE over sqrt(jobs - 3). No model, no
recommendation: the pair's (or the model's) reason is listed instead.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.recommend.rows import Rec, Skipped, fmt_pct

KIND = "powercap"
Z90 = 1.645
J_PER_KWH = 3.6e6


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    model = ctx.power
    if model is None:
        return [], [Skipped(KIND, "pool", "fleet", f"no power-cap model: {ctx.model_reason('power')}")]
    recs: list[Rec] = []
    skipped = [Skipped(KIND, "workload", f"{w} on {a}", f"power-cap model not fitted: {why}")
               for (w, a), why in sorted(getattr(model, "skipped_", {}).items())]
    budget = ctx.settings.max_slowdown
    jobs = ctx.jobs
    for (wl, acc), p in model.params_.iterrows():
        if model.power_curves_.get((wl, acc)) is None:
            skipped.append(Skipped(KIND, "workload", f"{wl} on {acc}", "no average power observed at its caps"))
            continue
        f = float(model.energy_optimal_cap(budget, wl, acc))
        slow = float(model.slowdown(f, wl, acc)) - 1
        sel = jobs[(jobs["workload"].astype(str) == wl) & (jobs["accelerator"].astype(str) == acc)]
        frac = (sel["power_limit_watts"] / sel["power_limit_max_watts"]).clip(upper=1.0).to_numpy(float)
        energy = sel["energy_joules"].to_numpy(float)
        ok = np.isfinite(frac) & np.isfinite(energy) & (frac > f + 1e-6)
        if f >= 1.0 - 1e-9 or not ok.any():
            continue
        e_new = float(model.energy(f, wl, acc))
        saved = energy[ok] * (1 - e_new / np.asarray(model.energy(frac[ok], wl, acc), float))
        kwh = float(np.clip(saved, 0, None).sum()) / J_PER_KWH * ctx.per_week
        if not kwh > 0:
            continue
        # the curve's own uncertainty: the fit's log-time residual over the jobs it rests on (beyond the 3
        # parameters), not one job's scatter around it
        widen = math.exp(Z90 * float(p.rmse_log) / math.sqrt(max(int(p.n) - 3, 1)))
        lo, hi = (1 + slow) / widen - 1, (1 + slow) * widen - 1
        cap_w = float(np.nanmedian(sel["power_limit_max_watts"])) * f
        recs.append(Rec(
            KIND, "workload", wl,
            f"cap the {acc} GPUs of workload {wl} at {cap_w:,.0f} W ({100 * f:.0f}% of the maximum): "
            f"{kwh:,.1f} kWh saved per week at the observed usage",
            f"predicted slowdown {fmt_pct(slow)} at most (90% interval {fmt_pct(max(lo, 0.0))} to {fmt_pct(hi)}), "
            f"within the {fmt_pct(budget)} budget; fitted on {int(p.n)} jobs at {int(p.caps)} caps",
            accelerator=acc, detail=acc, method="power-cap model", kwh_week=kwh, slowdown=slow,
            slowdown_low=max(lo, 0.0), slowdown_high=hi,
            evidence={"cap_fraction": f, "cap_watts": cap_w, "jobs_above_cap": int(ok.sum()),
                      "energy_saving_fraction": 1 - e_new / float(model.energy(1.0, wl, acc)),
                      "rmse_log": float(p.rmse_log), "lowest_cap_observed": float(p.min_fraction),
                      "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return recs, skipped
