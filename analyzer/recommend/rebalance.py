"""Rebalancing recurring workloads across accelerator pools (kind "rebalance", target workload).

A mixed-integer program (scipy.optimize.milp, HiGHS): x[w, p] = 1 when workload w runs in pool p (one pool
each). Each workload's demand d_w is the GPUs it held on average over the window. Objective "throughput":
maximize sum d_w x_wp X_wp / X_w,obs (its throughput relative to where it ran, from the throughput matrix),
each pool holding at most its GPUs minus what the workloads that are not moved (no matrix row) hold there.
Objective "cost": the same work for the least money, sum d_w (X_w,obs / X_wp) price_p x_wp, a pool then
holding the GPU-hours that work needs there. Objective "energy": the same work for the least GPU energy,
sum d_w (X_w,obs / X_wp) P_wp x_wp, P_wp the watts per GPU measured for w on p, or estimated from p's measured
power scaled by w's utilization where w never ran on p (analyzer.recommend.pool_power: the assumption is in the
row's risk and evidence; a pair it cannot estimate is excluded, and listed as skipped).
A workload may only go where it is allowed ([recommend] allowed_accelerators), where one device holds its
peak GPU memory, and where a node has as many GPUs as its jobs used on one; where it ran is always allowed, so
the observed placement is feasible and the optimum is never worse. Reported: the gain against the observed
placement, and the fewest moves (largest first) that get at least MOST of it while keeping every pool within
capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analyzer.recommend import pool_power
from analyzer.recommend.rows import WEEK_HOURS, Rec, Skipped, fmt_pct

KIND = "rebalance"
MOST = 0.8  # share of the optimum's gain the reported moves must reach
Z90 = 1.645


@dataclass
class Problem:
    """workloads x pools: demand (GPUs), observed pool index, value (objective per unit of x), use (capacity
    each x takes), feasible mask and pool capacity; maximize value."""

    workloads: list[str]
    pools: list[str]
    demand: np.ndarray
    observed: np.ndarray
    value: np.ndarray
    use: np.ndarray
    feasible: np.ndarray
    capacity: np.ndarray
    power: np.ndarray | None = None  # objective "energy": watts per GPU, workloads x pools (NaN: unknown)
    notes: dict[tuple[int, int], str] = field(default_factory=dict)  # (w, p) -> power assumption / exclusion
    excluded: list[tuple[int, int]] = field(default_factory=list)  # pairs left out: power unknown

    def objective(self, assign: np.ndarray) -> float:
        return float(self.value[np.arange(len(assign)), assign].sum())

    def fits(self, assign: np.ndarray) -> bool:
        load = np.zeros(len(self.pools))
        np.add.at(load, assign, self.use[np.arange(len(assign)), assign])
        return bool(np.all(load <= self.capacity + 1e-6) and self.feasible[np.arange(len(assign)), assign].all())


def solve(pr: Problem, time_limit: float = 30.0) -> np.ndarray:
    """The MILP optimum: pool index per workload."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n, m = pr.value.shape
    c = -pr.value.ravel()  # milp minimizes
    upper = pr.feasible.astype(float).ravel()
    one = np.zeros((n, n * m))
    for w in range(n):
        one[w, w * m:(w + 1) * m] = 1.0
    cap = np.zeros((m, n * m))
    for p in range(m):
        cap[p, p::m] = pr.use[:, p]
    res = milp(c, integrality=np.ones(n * m), bounds=Bounds(np.zeros(n * m), upper),
               constraints=[LinearConstraint(one, 1, 1), LinearConstraint(cap, -np.inf, pr.capacity)],
               options={"time_limit": time_limit})
    if res.x is None:
        return pr.observed.copy()  # infeasible can only mean the observed placement is over capacity: stay
    return np.argmax(res.x.reshape(n, m), axis=1)


def greedy(pr: Problem) -> np.ndarray:
    """The anchor: from the observed placement, move one workload at a time to the pool that gains most while it
    fits, best gain first, until no move gains (first-improvement local search; always feasible)."""
    n, m = pr.value.shape
    assign = pr.observed.copy()
    load = np.zeros(m)
    np.add.at(load, assign, pr.use[np.arange(n), assign])
    moved = True
    while moved:
        moved = False
        gain = np.where(pr.feasible, pr.value - pr.value[np.arange(n), assign][:, None], -np.inf)
        for k in np.argsort(-gain, axis=None, kind="stable"):
            w, p = divmod(int(k), m)
            g = pr.value[w, p] - pr.value[w, assign[w]]
            if not (g > 1e-12 and pr.feasible[w, p]):
                if gain.flat[k] <= 1e-12:
                    break
                continue
            if load[p] + pr.use[w, p] <= pr.capacity[p] + 1e-9:
                load[assign[w]] -= pr.use[w, assign[w]]
                load[p] += pr.use[w, p]
                assign[w] = p
                moved = True
    return assign


def fewest_moves(pr: Problem, best: np.ndarray) -> list[int]:
    """Workloads to move, largest gain first, until the moves reach MOST of the optimum's gain with every pool
    within capacity (the whole optimum if no shorter prefix does)."""
    base = pr.observed.copy()
    total = pr.objective(best) - pr.objective(base)
    moved = [w for w in range(len(best)) if best[w] != base[w]]
    if total <= 0 or not moved:
        return []
    moved.sort(key=lambda w: -(pr.value[w, best[w]] - pr.value[w, base[w]]))
    cur = base.copy()
    for k, w in enumerate(moved):
        cur[w] = best[w]
        if pr.objective(cur) - pr.objective(base) >= MOST * total - 1e-9 and pr.fits(cur):
            return moved[:k + 1]
    return moved


def problem(ctx) -> tuple[Problem | None, str]:
    """The MILP of the run: (Problem, "") or (None, why not)."""
    m = ctx.throughput
    if m is None:
        return None, f"no throughput matrix: {ctx.model_reason('throughput')}"
    hosts = ctx.host_table()
    hosts = hosts[(hosts["accelerator"].astype(str) != "") & (hosts["gpus"] > 0)]
    if hosts["accelerator"].nunique() < 2:
        return None, "fewer than two accelerator pools"
    pools = sorted(hosts["accelerator"].unique())
    capacity = hosts.groupby("accelerator")["gpus"].sum().reindex(pools).to_numpy(float)
    per_node = hosts.groupby("accelerator")["gpus"].max().reindex(pools).to_numpy(float)
    memory = hosts.groupby("accelerator")["gpu_memory_bytes"].max().reindex(pools).to_numpy(float)
    j = ctx.jobs[(ctx.jobs["gpus"] > 0) & ctx.jobs["accelerator"].isin(pools)]
    j = j.assign(_gh=j["gpus"] * j["duration_seconds"] / 3600, _per_node=j["gpus"] / j["nodes"].clip(lower=1))
    hours = ctx.window_hours
    movable = j["workload"].astype(str).isin(m.matrix_.index) & j["accelerator"].isin(m.matrix_.columns)
    fixed = (j[~movable].groupby("accelerator")["_gh"].sum() / hours).reindex(pools).fillna(0).to_numpy()
    j = j[movable]
    if j.empty:
        return None, "no workload has a throughput-matrix row"
    per_wl = j.groupby(["workload", "accelerator"])["_gh"].sum().reset_index()
    observed_pool = per_wl.sort_values(["workload", "_gh"], ascending=[True, False]).drop_duplicates("workload")
    names = sorted(observed_pool["workload"])
    obs_acc = observed_pool.set_index("workload").loc[names, "accelerator"].to_numpy()
    demand = (j.groupby("workload")["_gh"].sum() / hours).reindex(names).to_numpy()
    need_mem = j.groupby("workload")["gpu_memory_used_max_bytes"].max().reindex(names).to_numpy(float)
    need_node = j.groupby("workload")["_per_node"].max().reindex(names).to_numpy(float)
    X = m.matrix_.reindex(index=names, columns=pools).to_numpy(float)
    observed = np.array([pools.index(a) for a in obs_acc])
    rel = X / X[np.arange(len(names)), observed][:, None]  # throughput relative to where it ran
    feasible = np.isfinite(rel) & (need_node[:, None] <= per_node[None, :])
    feasible &= ~(np.isfinite(need_mem)[:, None] & (need_mem[:, None] > 0.95 * memory[None, :]))
    feasible &= ~(~np.isfinite(need_mem)[:, None] & ~np.isfinite(memory)[None, :])
    for w, name in enumerate(names):
        allowed = ctx.settings.allowed_accelerators.get(name)
        if allowed is not None:
            feasible[w] &= np.isin(pools, allowed)
    feasible[np.arange(len(names)), observed] = True  # where it ran fits by definition
    rel = np.where(np.isfinite(rel), rel, 1.0)
    objective = ctx.settings.rebalance_objective
    power, notes, excluded = None, {}, []
    if objective in ("cost", "energy"):
        use = demand[:, None] / rel  # the GPU-hours the same work needs there
        if objective == "cost":
            unit = np.array([ctx.settings.prices.gpu_price(p) for p in pools])[None, :]
        else:
            pt = pool_power.table(ctx.jobs, names, pools, ctx.settings.gpu_idle_watts)
            power, notes = pt.watts, pt.notes
            known = np.isfinite(power)
            excluded = [(w, p) for w, p in zip(*np.nonzero(feasible & ~known), strict=True) if p != observed[w]]
            feasible &= known
            feasible[np.arange(len(names)), observed] = True
            # a workload whose power is unknown where it ran stays there (only its own pool is feasible), and
            # its energy, unknown, counts 0 in both the observed placement and the optimum
            pinned = ~known[np.arange(len(names)), observed]
            feasible[pinned] = False
            feasible[np.arange(len(names)), observed] = True
            unit = np.where(known, power, 0.0)
        value = -use * unit
    else:
        use = np.repeat(demand[:, None], len(pools), axis=1)
        value = demand[:, None] * rel
    return Problem(names, pools, demand, observed, value, use, feasible, np.clip(capacity - fixed, 0, None),
                   power=power, notes=notes, excluded=excluded), ""


OBJECTIVE_WORDS = {"throughput": "worth {} more normalized throughput than", "cost": "costing {} less than",
                   "energy": "using {} less GPU energy than"}  # the placement's gain against the observed one


def recommend(ctx) -> tuple[list[Rec], list[Skipped]]:
    pr, why = problem(ctx)
    if pr is None:
        return [], [Skipped(KIND, "pool", "fleet", why)]
    objective = ctx.settings.rebalance_objective
    skipped = [Skipped(KIND, "workload", f"{pr.workloads[w]} on {pr.pools[p]}",
                       f"not considered for the energy objective: {pr.notes[(w, p)]}") for w, p in pr.excluded]
    if pr.power is not None:
        skipped += [Skipped(KIND, "workload", name, f"not moved: its energy is unknown where it ran "
                            f"({pr.notes[(w, int(pr.observed[w]))]})")
                    for w, name in enumerate(pr.workloads) if not np.isfinite(pr.power[w, pr.observed[w]])]
    best = solve(pr)
    base = pr.objective(pr.observed)
    gain = pr.objective(best) - base
    ctx.summary["rebalance"] = {"objective": objective, "workloads": len(pr.workloads),
                                "pools": pr.pools, "observed": base, "optimum": pr.objective(best),
                                "gain": gain, "gain_fraction": gain / abs(base) if base else math.nan}
    moves = fewest_moves(pr, best)
    m = ctx.throughput
    recs = []
    prices = ctx.settings.prices
    for w in moves:
        a_i, b_i = int(pr.observed[w]), int(best[w])
        name, a, b = pr.workloads[w], pr.pools[a_i], pr.pools[b_i]
        x_a, s_a = m.predict(name, a, return_std=True)
        x_b, s_b = m.predict(name, b, return_std=True)
        r = x_b / x_a
        sigma = math.sqrt(s_a ** 2 + s_b ** 2)
        d_week = pr.demand[w] * WEEK_HOURS
        money_week = d_week * (prices.gpu_price(a) - prices.gpu_price(b) / r)
        risk = (f"predicted slowdown {fmt_pct(1 / r - 1)} (90% interval {fmt_pct(1 / (r * math.exp(Z90 * sigma)) - 1)}"
                f" to {fmt_pct(1 / (r * math.exp(-Z90 * sigma)) - 1)}, throughput matrix); every pool stays within "
                f"its GPUs, memory and node shape")
        evidence = {"from": a, "to": b, "gpus_held_mean": pr.demand[w], "speed_ratio": r,
                    "objective_observed": base, "objective_optimum": pr.objective(best),
                    "window": [str(ctx.window[0]), str(ctx.window[1])]}
        kwh_week = 0.0
        if pr.power is not None:
            # the same work: GPU-hours there (pr.use) x watts per GPU there, now and after the move
            kwh_week = (pr.use[w, a_i] * pr.power[w, a_i] - pr.use[w, b_i] * pr.power[w, b_i]) * WEEK_HOURS / 1000
            money_week += kwh_week * prices.kwh
            evidence.update(watts_from=pr.power[w, a_i], watts_to=pr.power[w, b_i],
                            watts_from_estimated=(w, a_i) in pr.notes, watts_to_estimated=(w, b_i) in pr.notes,
                            energy_per_work_ratio=pr.power[w, b_i] / (r * pr.power[w, a_i]))
            assumed = [pr.notes[k] for k in ((w, a_i), (w, b_i)) if k in pr.notes]
            risk += "; " + (" ".join(f"Power estimate: {n}." for n in assumed) if assumed else
                            "GPU power measured on both types")
        recs.append(Rec(
            KIND, "workload", name,
            f"move workload {name} from {a} to {b}: {r:.2f}x its throughput per GPU; part of a placement "
            f"{OBJECTIVE_WORDS[objective].format(fmt_pct(gain / abs(base) if base else math.nan))} the observed "
            f"one ({len(moves)} of {int((best != pr.observed).sum())} moves)",
            risk, accelerator=a, detail=f"{a}->{b}", method=f"milp/{objective}",
            gpu_hours_week=d_week * (1 - 1 / r), kwh_week=kwh_week, money_week=money_week,
            slowdown=1 / r - 1, slowdown_low=1 / (r * math.exp(Z90 * sigma)) - 1,
            slowdown_high=1 / (r * math.exp(-Z90 * sigma)) - 1, evidence=evidence))
    return recs, skipped
