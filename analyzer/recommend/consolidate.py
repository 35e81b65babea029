"""Consolidation: whole nodes of a class that could have been powered down (kind "consolidate").

For each node class, the jobs running at each of the busiest instants of the window are packed first-fit
decreasing (GPUs and CPUs per host) onto as few hosts as possible; the most hosts any instant needed is what
the class needs, and the rest could be powered down for the whole window without delaying a job. Energy
saved is their idle power ([recommend] node_idle_watts + GPUs x gpu_idle_watts) for a week.
"""

from __future__ import annotations

import numpy as np

from analyzer.recommend.occupancy import NO_HOSTS, classes, pack
from analyzer.recommend.rows import WEEK_HOURS, Rec, Skipped

KIND = "consolidate"
INSTANTS = 50  # busiest instants packed per class: the peak decides, the rest only confirm it


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    if ctx.hosts is None:
        return [], [Skipped(KIND, "pool", "fleet", NO_HOSTS)]
    recs = []
    for occ in classes(ctx):
        n = len(occ.hosts)
        if n < 2 or len(occ.dt) == 0:
            continue
        cap_g, cap_c = float(occ.gpus.min()), float(np.nanmin(occ.cpus)) if np.isfinite(occ.cpus).any() else np.nan
        demand = occ.gpu_alloc.sum(axis=0) if occ.is_gpu else occ.cpu_alloc.sum(axis=0)
        needed = 0
        for k in np.argsort(-demand, kind="stable")[:INSTANTS]:
            run = occ.running(int(k))
            if len(run):
                needed = max(needed, pack(run["g"].to_numpy(), run["c"].to_numpy(), cap_g, cap_c))
        if (run_multi := occ.pieces[occ.pieces["nodes"] > 1]).shape[0]:
            needed = max(needed, int(run_multi["nodes"].max()))  # a multi-node job needs that many hosts at once
        freed = n - needed
        if freed < 1:
            continue
        watts = ctx.settings.node_idle_watts + cap_g * ctx.settings.gpu_idle_watts
        kwh = freed * watts * WEEK_HOURS / 1000
        recs.append(Rec(
            KIND, "pool", occ.name,
            f"power down {freed} of the {n} hosts of class {occ.name}: its busiest moment needed {needed} "
            f"hosts when packed, saving {kwh:,.0f} kWh a week of idle power",
            f"jobs would wait for a host to boot if demand rises above the window's peak ({needed} hosts); "
            "packing assumes jobs can be placed on any host of the class",
            accelerator=occ.name.split(" x")[0] if occ.is_gpu else "", detail=occ.name, method="first-fit decreasing",
            kwh_week=kwh,
            evidence={"class": occ.name, "hosts": n, "hosts_needed_at_peak": needed, "peak_demand": float(demand.max()),
                      "idle_watts_per_host": watts, "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return recs, []
