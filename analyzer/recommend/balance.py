"""Hot and cold nodes of one class, and the moves that even them out (kind "rebalance", target node).

Per node class (analyzer.recommend.occupancy: same accelerator type and GPU count, or same CPU count, so a job
runs the same on any of its hosts), each host's allocated share over the window (GPUs for GPU classes, CPUs
for CPU classes). While the busiest and the idlest host differ by SPREAD or more, the jobs of the hot host are
replayed on the cold one, one unit at a time: a recurring workload (its jobs on the hot host) or a one-off
job. A job is only moved when, at every instant it ran, the cold host still had the GPUs and CPUs free (CPU
count unknown: not checked, and the risk says so) and a device large enough for its peak GPU memory; a
workload's jobs are replayed in start order and those that would not have fit stay (a soft affinity: "prefer
the cold host"; "pin" when all fit). Multi-node jobs are never moved (their placement is the scheduler's gang
decision). Of the units that fit, the one that
leaves the two hosts closest is taken; the next round starts from the new shares, at most MAX_MOVES rounds.
The action names the unit and the two hosts (pin the workload, or steer the job, to the cold host); the gain is
the evening-out (shares before and after, resource-hours a week moved). It frees nothing, so its freed-resource
columns are zero; it spreads heat, wear and failure risk. A hot host with no unit that fits is listed as skipped.
"""

from __future__ import annotations

import numpy as np

from analyzer.recommend.occupancy import NO_HOSTS, classes
from analyzer.recommend.rows import Rec, Skipped

KIND = "rebalance"
SPREAD = 0.3  # busiest minus idlest allocated share worth acting on
MAX_MOVES = 10  # rounds per class: each move is a change an operator makes by hand
MEMORY_HEADROOM = 0.95  # a device must hold the peak GPU memory with this share of its memory (as the MILP)


def _units(occ, host: str) -> dict[str, object]:
    """The movable units on a host: 'workload W' (all its single-node pieces there) or 'job J' (a one-off)."""
    p = occ.pieces
    p = p[(p["host"] == host) & (p["nodes"] == 1)]
    key = np.where(p["workload"] != "", "workload " + p["workload"], "job " + p["job"])
    return {str(k): g for k, g in p.groupby(key, sort=True)}


def _blocker(occ, piece, g_cold: np.ndarray, c_cold: np.ndarray, cold: int) -> str:
    """Why a job piece does not fit on the cold host over its intervals ("" when it does)."""
    if np.any(g_cold + piece.g > occ.gpus[cold] + 1e-9):
        return f"{occ.hosts[cold]} lacks the GPUs at some instant it ran"
    if np.isfinite(occ.cpus[cold]) and np.any(c_cold + piece.c > occ.cpus[cold] + 1e-9):
        return f"{occ.hosts[cold]} lacks the CPUs at some instant it ran"
    dev = occ.gpu_memory[cold]
    if np.isfinite(dev) and np.isfinite(piece.gpu_mem) and piece.gpu_mem > MEMORY_HEADROOM * dev:
        return f"its peak GPU memory does not fit a device of {occ.hosts[cold]}"
    return ""


def _replay(occ, grp, g_alloc: np.ndarray, c_alloc: np.ndarray, cold: int):
    """A unit's jobs replayed, in start order, on the cold host where each fits at every instant it ran (the
    rest stay): (GPUs and CPUs added per interval, the jobs that moved, why the first that did not could not)."""
    n = len(occ.dt)
    add_g, add_c = np.zeros(n), np.zeros(n)
    moved, why = [], ""
    for piece in grp.sort_values(["start_s", "job"]).itertuples():
        a, b = np.searchsorted(occ.times, [piece.start_s, piece.end_s])
        reason = _blocker(occ, piece, g_alloc[cold, a:b] + add_g[a:b], c_alloc[cold, a:b] + add_c[a:b], cold)
        if reason:
            why = why or reason
            continue
        add_g[a:b] += piece.g
        add_c[a:b] += piece.c
        moved.append(piece.job)
    return add_g, add_c, moved, why


def _even_out(occ, span: float) -> tuple[list[dict], list[Skipped]]:
    is_gpu = occ.is_gpu
    cap = occ.gpus if is_gpu else occ.cpus
    g_alloc, c_alloc = occ.gpu_alloc.copy(), occ.cpu_alloc.copy()
    moved_units: set[tuple[str, str]] = set()
    moves, skipped = [], []
    for _ in range(MAX_MOVES):
        share = ((g_alloc if is_gpu else c_alloc) * occ.dt).sum(axis=1) / (cap * span)
        hot, cold = int(np.argmax(share)), int(np.argmin(share))
        spread = float(share[hot] - share[cold])
        if spread < SPREAD:
            break
        best, blocked = None, []
        for key, grp in _units(occ, occ.hosts[hot]).items():
            if (occ.hosts[hot], key) in moved_units:
                continue
            add_g, add_c, jobs, why = _replay(occ, grp, g_alloc, c_alloc, cold)
            amount = float(((add_g if is_gpu else add_c) * occ.dt).sum())  # resource-seconds it moves
            new_hot, new_cold = share[hot] - amount / (cap[hot] * span), share[cold] + amount / (cap[cold] * span)
            after = abs(new_hot - new_cold)
            if why and not jobs:
                blocked.append([key, why])
            if not (amount > 0 and after < spread - 1e-9):
                continue
            if best is None or after < best["after"] - 1e-12:
                best = {"unit": key, "jobs": jobs, "of_jobs": int(grp["job"].nunique()), "stayed": why,
                        "after": after, "amount": amount,
                        "add": (add_g, add_c), "hot": hot, "cold": cold, "hot_share": float(share[hot]),
                        "cold_share": float(share[cold]), "hot_after": new_hot, "cold_after": new_cold}
        if best is None:
            skipped.append(Skipped(KIND, "node", occ.hosts[hot],
                                   f"hot ({100 * share[hot]:.0f}% allocated) beside {occ.hosts[cold]} "
                                   f"({100 * share[cold]:.0f}%) in class {occ.name}, but no single-node job or "
                                   f"workload of it fits there: " + ("; ".join(f"{k}: {w}" for k, w in blocked)
                                                                     or "none that evens them out")))
            break
        add_g, add_c = best.pop("add")
        g_alloc[hot] -= add_g
        c_alloc[hot] -= add_c
        g_alloc[cold] += add_g
        c_alloc[cold] += add_c
        moved_units.add((occ.hosts[hot], best["unit"]))  # the pieces stay listed on the hot host: not twice
        best["blocked"] = blocked
        moves.append(best)
    return moves, skipped


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    if ctx.hosts is None:
        return [], [Skipped(KIND, "pool", "fleet", NO_HOSTS)]
    recs, skipped = [], []
    for occ in classes(ctx):
        if len(occ.hosts) < 2:
            continue
        cap = occ.gpus if occ.is_gpu else occ.cpus
        span = float(occ.dt.sum())
        if not (span > 0) or not np.all(cap > 0):
            continue
        moves, skip = _even_out(occ, span)
        skipped += skip
        unit_name = "GPU" if occ.is_gpu else "core"
        for mv in moves:
            hot, cold = occ.hosts[mv["hot"]], occ.hosts[mv["cold"]]
            hours = mv["amount"] / 3600 * ctx.per_week
            k, n = len(mv["jobs"]), mv["of_jobs"]
            if not mv["unit"].startswith("workload"):
                what = f"steer {mv['unit']}"
            elif k == n:
                what = f"pin {mv['unit']} ({n} job{'s' if n != 1 else ''} in the window)"
            else:  # a soft affinity: the jobs that would not have fit at their time stay where they ran
                what = f"prefer the cold host for {mv['unit']} ({k} of its {n} jobs in the window fit there)"
            unchecked = "" if np.isfinite(occ.cpus[mv["cold"]]) else f"; the CPU count of {cold} is unknown: " \
                "its CPUs were not checked"
            recs.append(Rec(
                KIND, "node", hot,
                f"{what} from hot host {hot} to cold host {cold} (class {occ.name}): moves {hours:,.0f} "
                f"{unit_name}-hours a week; {hot} {100 * mv['hot_share']:.0f}% -> {100 * mv['hot_after']:.0f}% "
                f"allocated, {cold} {100 * mv['cold_share']:.0f}% -> {100 * mv['cold_after']:.0f}%",
                "none to the jobs' speed (same hardware); at every instant the moved jobs ran in the window, "
                + cold + " had their GPUs, CPUs and GPU memory free" + unchecked
                + (f"; the other {n - k} would not have ({mv['stayed']}) and stay" if k < n else "")
                + "; it frees no capacity, it evens out heat and wear",
                accelerator=occ.name.split(" x")[0] if occ.is_gpu else "", detail=f"{mv['unit']}->{cold}",
                method="occupancy replay",
                evidence={"class": occ.name, "hosts": len(occ.hosts), "unit": mv["unit"], "jobs": mv["jobs"][:20],
                          "jobs_moved": k, "jobs_on_hot_host": n,
                          "from": hot, "to": cold, "resource_hours_week": hours, "hot_share": mv["hot_share"],
                          "hot_share_after": mv["hot_after"], "cold_share": mv["cold_share"],
                          "cold_share_after": mv["cold_after"], "not_fitting": mv["blocked"],
                          "window": [str(ctx.window[0]), str(ctx.window[1])]}))
    return recs, skipped
