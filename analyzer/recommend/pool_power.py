"""GPU power per (workload, accelerator type), for the pool MILP's energy objective.

Measured where the workload ran on the type: the GPU-hour-weighted mean of its jobs' `power_watts_mean` (mean
board power per GPU, from the job table). Where it never ran there, estimated from what the type measured with
other workloads, assuming board power is affine in utilization between the idle power ([recommend]
gpu_idle_watts) and the type's observed draw, and that the workload keeps its own mean utilization on that type:

    P(w, p) = idle + (P_p - idle) * u_w / u_p,   clipped to [idle, the highest job mean power seen on p]

with P_p and u_p the type's GPU-hour-weighted mean power and utilization over every job that ran on it, and u_w
the workload's mean utilization over all its jobs. A pair where that cannot be worked out (the type measured no
power, or the workload no utilization) is excluded, with the reason; a pair is never given a silent number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PowerTable:
    watts: np.ndarray  # workloads x pools, NaN where unknown
    estimated: np.ndarray  # True where watts is the utilization-scaled estimate, not a measurement
    notes: dict[tuple[int, int], str]  # (w, p) -> the assumption behind an estimate, or why the pair is unknown


def _weighted_mean(values, weights) -> float:
    v = np.asarray(values, float)
    wt = np.asarray(weights, float)
    ok = np.isfinite(v) & np.isfinite(wt) & (wt > 0)
    return float((v[ok] * wt[ok]).sum() / wt[ok].sum()) if ok.any() else float("nan")


def table(jobs, workloads: list[str], pools: list[str], idle_watts: float) -> PowerTable:
    """Power per GPU of each workload on each pool (see the module doc for measured vs estimated)."""
    j = jobs[jobs["gpus"] > 0]
    j = j.assign(_gh=j["gpus"] * j["duration_seconds"] / 3600.0, _w=j["workload"].astype(str),
                 _a=j["accelerator"].astype(str))
    n, m = len(workloads), len(pools)
    watts = np.full((n, m), np.nan)
    estimated = np.zeros((n, m), bool)
    notes: dict[tuple[int, int], str] = {}
    measured = {key: _weighted_mean(g["power_watts_mean"], g["_gh"]) for key, g in j.groupby(["_w", "_a"])}
    util = {w: _weighted_mean(g["gpu_utilization_mean"], g["_gh"]) for w, g in j.groupby("_w")}
    for p, pool in enumerate(pools):
        on = j[j["_a"] == pool]
        power_ok = np.isfinite(on["power_watts_mean"].to_numpy(float))
        type_power = _weighted_mean(on["power_watts_mean"], on["_gh"])
        both = on[power_ok & np.isfinite(on["gpu_utilization_mean"].to_numpy(float))]
        type_util = _weighted_mean(both["gpu_utilization_mean"], both["_gh"])
        type_power_u = _weighted_mean(both["power_watts_mean"], both["_gh"])  # over the same jobs as type_util
        top = float(on["power_watts_mean"].max()) if power_ok.any() else float("nan")
        for w, name in enumerate(workloads):
            got = measured.get((name, pool), float("nan"))
            if np.isfinite(got):
                watts[w, p] = got
                continue
            u = util.get(name, float("nan"))
            if not np.isfinite(type_power):
                notes[(w, p)] = f"no GPU power measured on {pool}"
            elif not (np.isfinite(type_util) and type_util > 0):
                notes[(w, p)] = f"no GPU utilization measured beside the power on {pool} to scale it by"
            elif not np.isfinite(u):
                notes[(w, p)] = f"workload {name} has no measured GPU utilization to scale {pool}'s power by"
            else:
                est = idle_watts + (type_power_u - idle_watts) * u / type_util
                watts[w, p] = float(np.clip(est, min(idle_watts, top), top))
                estimated[w, p] = True
                notes[(w, p)] = (f"{name} never ran on {pool}: its power there is estimated at {watts[w, p]:,.0f} W "
                                 f"= {idle_watts:g} W idle + ({type_power_u:,.0f} W {pool} mean - idle) x its "
                                 f"utilization {u:.2f} / {pool}'s {type_util:.2f}, at most {top:,.0f} W (the "
                                 f"highest measured there); assumes power affine in utilization and the same "
                                 f"utilization on {pool}")
    return PowerTable(watts, estimated, notes)
