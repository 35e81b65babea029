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
