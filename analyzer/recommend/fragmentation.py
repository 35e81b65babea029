"""GPU fragmentation: free GPUs scattered over partly used hosts, so a whole-node job cannot start though the
class has that many GPUs free (kind "fragmentation").

Stranded GPU-hours of a class: over the window, the free GPUs on partly used hosts in the intervals when no
host of the class was entirely free but the free GPUs together would have made one. At the end of the window
(the state an operator can act on) the single-node jobs on the least used hosts are moved, best fit, to
other partly used hosts of the same class with room for their GPUs and CPUs, until a host is entirely free;
a host is only proposed when every job on it has such a place (a multi-node job is never moved).
"""

from __future__ import annotations

import numpy as np

from analyzer.recommend.occupancy import NO_HOSTS, classes, fits
from analyzer.recommend.rows import Rec, Skipped

KIND = "fragmentation"


def stranded_hours(occ) -> float:
    cap = occ.gpus[:, None]
    free = np.clip(cap - occ.gpu_alloc, 0, None)
    partial = (occ.gpu_alloc > 1e-9) & (free > 1e-9)
    whole_free = (occ.gpu_alloc <= 1e-9).any(axis=0)
    blocked = ~whole_free & (free.sum(axis=0) >= occ.gpus.min())
    return float(((free * partial).sum(axis=0) * blocked * occ.dt).sum() / 3600)


def moves(occ, k: int) -> list[tuple[str, list[tuple[str, float, str]]]]:
    """[(host freed, [(job, gpus, to host), ...]), ...] at interval k; never overfills a host."""
    free_g = occ.gpus - occ.gpu_alloc[:, k]
    free_c = occ.cpus - occ.cpu_alloc[:, k]
    run = occ.running(k)
    out = []
    if (occ.gpu_alloc[:, k] <= 1e-9).any():
        return out
    order = [i for i in np.argsort(occ.gpu_alloc[:, k], kind="stable") if occ.gpu_alloc[i, k] > 1e-9]
    emptied: set[int] = set()
    for src in order:
        pieces = run[run["host"] == occ.hosts[src]]
        if (pieces["nodes"] > 1).any():
            continue
        g, c = free_g.copy(), free_c.copy()
        plan = []
        for p in pieces.sort_values("g", ascending=False).itertuples():
            ok = fits(p.g, p.c, g, c)
            ok[src] = False
            ok[list(emptied)] = False
            ok &= occ.gpu_alloc[:, k] > 1e-9  # onto partly used hosts only: never start fragmenting a free one
            if not ok.any():
                plan = None
                break
            dst = int(np.flatnonzero(ok)[np.argmin(g[ok] - p.g)])  # best fit: least left over
            g[dst] -= p.g
            c[dst] -= p.c
            plan.append((p.job, float(p.g), occ.hosts[dst]))
        if plan:
            free_g, free_c = g, c
            free_g[src], free_c[src] = occ.gpus[src], occ.cpus[src]
            emptied.add(src)
            out.append((occ.hosts[src], plan))
            break  # one whole host is what a whole-node job waits for; more moves cost more disruption
    return out


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    if ctx.hosts is None:
        return [], [Skipped(KIND, "pool", "fleet", NO_HOSTS)]
    recs = []
    for occ in classes(ctx):
        if not occ.is_gpu or len(occ.hosts) < 2 or len(occ.dt) == 0:
            continue
        stranded = stranded_hours(occ)
        last = len(occ.dt) - 1
        for host, plan in moves(occ, last):
            what = "; ".join(f"job {j} ({g:g} GPU{'s' if g != 1 else ''}) to {to}" for j, g, to in plan)
            recs.append(Rec(
                KIND, "node", host,
                f"move {what}: frees all {int(occ.gpus.max())} GPUs of {host} for whole-node jobs of class {occ.name}"
                f" ({stranded:,.0f} GPU-hours were stranded this way in the window)",
                "a restart of the moved jobs (checkpoint first); the targets have room for their GPUs and CPUs",
                accelerator=occ.name.split(" x")[0], detail=occ.name, method="best fit",
                gpu_hours_week=stranded * ctx.per_week,
                evidence={"class": occ.name, "stranded_gpu_hours": stranded, "moves": plan,
                          "at": float(occ.times[last]), "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return recs, []
