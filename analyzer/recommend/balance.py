"""Hot and cold nodes of one class (kind "rebalance", target node).

Per node class (analyzer.recommend.occupancy), each host's allocated share over the window (GPUs for GPU
classes, CPUs for CPU classes). When the busiest and the idlest host differ by SPREAD or more, the
recommendation is to steer that class's jobs from the hot host to the cold one (a scheduler weight, or
draining the hot host for maintenance); the amount is what evens the two out. It frees nothing, so its gain
is zero; it spreads heat, wear and failure risk.
"""

from __future__ import annotations

import numpy as np

from analyzer.recommend.occupancy import NO_HOSTS, classes
from analyzer.recommend.rows import Rec, Skipped

KIND = "rebalance"
SPREAD = 0.3  # busiest minus idlest allocated share worth acting on


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    if ctx.hosts is None:
        return [], [Skipped(KIND, "pool", "fleet", NO_HOSTS)]
    recs = []
    for occ in classes(ctx):
        if len(occ.hosts) < 2:
            continue
        cap = occ.gpus if occ.is_gpu else occ.cpus
        alloc = occ.gpu_alloc if occ.is_gpu else occ.cpu_alloc
        span = float(occ.dt.sum())
        if not (span > 0) or not np.all(cap > 0):
            continue
        share = (alloc * occ.dt).sum(axis=1) / (cap * span)
        hot, cold = int(np.argmax(share)), int(np.argmin(share))
        spread = float(share[hot] - share[cold])
        if spread < SPREAD:
            continue
        unit = "GPU" if occ.is_gpu else "core"
        move = spread / 2 * cap[hot] * span / 3600 * ctx.per_week
        recs.append(Rec(
            KIND, "node", occ.hosts[hot],
            f"steer about {move:,.0f} {unit}-hours a week of class {occ.name} from hot host {occ.hosts[hot]} "
            f"({100 * share[hot]:.0f}% allocated) to cold host {occ.hosts[cold]} ({100 * share[cold]:.0f}%)",
            "none to the jobs' speed (same hardware); it frees no capacity, it evens out heat and wear",
            detail=occ.name, method="occupancy",
            evidence={"class": occ.name, "hosts": len(occ.hosts), "hot_share": float(share[hot]),
                      "cold_share": float(share[cold]), "mean_share": float(share.mean()),
                      "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return recs, []
