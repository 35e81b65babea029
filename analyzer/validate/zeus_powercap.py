"""The power-cap decision on the held-out type, scored with its measurements.

For each (workload, batch size) the decision takes the power limit with the least predicted energy per epoch
(predicted time x predicted average power) among those whose predicted slowdown against the type's highest limit
is within the budget, less a safety margin in log slowdown chosen by nested leave-one-type-out (zeus_stack). It is
scored on the measurements: the energy saving it obtains, the best saving any limit within the true budget gives
(the oracle), and the share of choices whose true slowdown exceeds the budget. Savings are fractions of the
energy at the highest limit, averaged over (workload, batch size) and draws.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.validate.zeus_fold import Fold

SLOWDOWN_BUDGET = 0.10
MARGINS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07)  # log-slowdown margins the nested choice tries, smallest first


def _groups(fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """(rows, ref): the rows of (workload, batch size) groups measured at the type's highest limit, and for each
    of them the index (into rows) of its group's highest-limit configuration."""
    h = fold.held
    key = (h.workload + "/" + h.batch_size.astype(str)).to_numpy()
    top_rows = np.flatnonzero(h.power_limit.to_numpy() == h.power_limit.max())
    top = dict(zip(key[top_rows], top_rows, strict=True))
    rows = np.array([i for i in range(len(h)) if key[i] in top], dtype=int)
    pos = np.full(len(h), -1)
    pos[rows] = np.arange(len(rows))
    return rows, pos[[top[k] for k in key[rows]]]


def decide(fold: Fold, time: np.ndarray, power: np.ndarray, margin: float = 0.0) -> dict:
    """time, power: (seeds, n) predictions. Returns slowdown_budget, energy_saving, oracle_energy_saving,
    over_budget_share and n_decisions (groups)."""
    rows, ref = _groups(fold)
    g = np.unique(ref, return_inverse=True)[1]  # group id 0..G-1 of each row
    t_true = fold.actual[rows]
    e_true = t_true * fold.held.average_power.to_numpy(float)[rows]
    slow_true = t_true / t_true[ref]
    save_true = 1 - e_true / e_true[ref]
    is_top = np.arange(len(rows)) == ref
    n_groups = int(g.max()) + 1
    # the oracle: the best measured saving within the true budget (the highest limit itself saves 0)
    oracle = np.zeros(n_groups)
    within = slow_true <= 1 + SLOWDOWN_BUDGET + 1e-12
    np.maximum.at(oracle, g[within], save_true[within])
    limit = math.log(1 + SLOWDOWN_BUDGET) - margin
    savings, over = [], []
    for t, p in zip(time, power, strict=True):
        t, p = t[rows], p[rows]
        slow = np.log(t / t[ref])
        energy = np.where((slow <= limit) | is_top, t * p, np.inf)
        order = np.lexsort((energy, g))
        first = order[np.r_[True, g[order][1:] != g[order][:-1]]]  # least predicted energy per group
        savings.append(save_true[first])
        over.append(slow_true[first] > 1 + SLOWDOWN_BUDGET + 1e-12)
    return {"slowdown_budget": SLOWDOWN_BUDGET, "energy_saving": float(np.mean(savings)),
            "oracle_energy_saving": float(oracle.mean()), "over_budget_share": float(np.mean(over)),
            "n_decisions": n_groups}


CEILING_THRESHOLDS = tuple(np.round(np.arange(0.6, 1.401, 0.025), 3))  # caps as fractions of the uncapped draw
NO_BIND = 1.1  # a cap this far above the uncapped draw cannot bind: any measured saving there is noise


def ceiling(fold: Fold, max_over: float = 0.05) -> dict:
    """What a decision that sets the cap at a fraction x* of each (workload, batch size)'s uncapped draw could
    reach at best, scored like `decide`: the draw is the *measured* power at the highest limit (no prediction
    error) and x* is chosen on the held-out type itself (in-sample, so optimistic): one x* for the type, and one
    per workload, each as the largest saving with at most max_over of all choices over budget. The rule takes the
    lowest limit at or above x* times the draw, and stays at the highest limit where that limit is NO_BIND times
    the draw or more. Also returns the oracle's saving from groups where no limit below the highest can bind
    (the oracle picks the luckiest of their noisy measurements)."""
    rows, ref = _groups(fold)
    g = np.unique(ref, return_inverse=True)[1]
    h = fold.held
    t = fold.actual[rows]
    pw = h.average_power.to_numpy(float)[rows]
    slow, save = t / t[ref], 1 - t * pw / (t[ref] * pw[ref])
    x = h.power_limit.to_numpy(float)[rows] / pw[ref]
    wl = h.workload.to_numpy()[rows]
    within = slow <= 1 + SLOWDOWN_BUDGET + 1e-12
    n = int(g.max()) + 1
    oracle = np.zeros(n)
    np.maximum.at(oracle, g[within], save[within])
    lower = np.arange(len(rows)) != ref
    can_bind = np.zeros(n, dtype=bool)
    np.logical_or.at(can_bind, g[lower], x[lower] < NO_BIND)

    def rule(xs: float) -> tuple[np.ndarray, np.ndarray]:
        """Per group: (saving, over budget) of the lowest limit with x >= xs."""
        key = np.where((x >= xs) | ~lower, x, np.inf)
        order = np.lexsort((key, g))
        first = order[np.r_[True, g[order][1:] != g[order][:-1]]]
        first = np.where(x[first] >= NO_BIND, ref[first], first)
        return save[first], ~within[first]

    def best(groups: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        scored = [(rule(xs), xs) for xs in CEILING_THRESHOLDS]
        ok = [(float(r[0][groups].sum()), xs) for r, xs in scored if r[1][groups].mean() <= max_over]
        xs = max(ok)[1] if ok else math.inf
        return xs, *(r[groups] for r in rule(xs))

    xs, s1, o1 = best(np.arange(n))
    # per workload: the thresholds with the largest total saving and at most max_over of all choices over budget
    # (a knapsack over the over-budget count, solved exactly by dynamic programming across workloads)
    group_wl = wl[ref[np.unique(g, return_index=True)[1]]]
    cap = math.floor(max_over * n + 1e-9)
    table = {0: 0.0}  # over-budget count -> best total saving so far
    for w in sorted(set(group_wl)):
        m = group_wl == w
        options = {}
        for xs_w in (*CEILING_THRESHOLDS, math.inf):
            s, o = rule(xs_w)
            k = int(o[m].sum())
            options[k] = max(options.get(k, -math.inf), float(s[m].sum()))
        table = _merge(table, options, cap)
    return {"oracle_energy_saving": float(oracle.mean()),
            "oracle_from_groups_no_cap_binds": float(oracle[~can_bind].sum() / n),
            "type_threshold": float(xs), "type_threshold_saving": float(s1.mean()),
            "type_threshold_over": float(o1.mean()),
            "workload_threshold_saving": max(table.values()) / n, "n_decisions": n}


def _merge(table: dict[int, float], options: dict[int, float], cap: int) -> dict[int, float]:
    """One knapsack step: every (count, saving) of the table combined with every option of the next workload."""
    out: dict[int, float] = {}
    for c, v0 in table.items():
        for k, v1 in options.items():
            if c + k <= cap:
                out[c + k] = max(out.get(c + k, -math.inf), v0 + v1)
    return out
