"""Recover what each occupant of a shared unit contributed from the unit's coarse (e.g. hourly) means.

A GPU is held by one job after another; a host runs several jobs side by side. The store can cheaply give
the unit's mean per hour, not per job. Modelling each occupant's value as constant while it is there (and
the unit's own background as another constant), every observed hour is one linear equation:

    exclusive (a GPU):  mean[u, h] = sum_k frac[u, k, h] * x[k] + (1 - sum_k frac[u, k, h]) * b[u]
    additive (a host):  mean[u, h] = sum_k frac[u, k, h] * x[k] + b[u]

where frac is the share of the hour occupant k was on unit u. Solved per unit by least squares with a weak
ridge towards the naive estimate (the occupant's hours averaged, weighted by its share of them; for an
additive unit, the hour's mean split evenly among its occupants), which only decides what the hours
cannot tell apart (e.g. two short jobs inside one hour). Exact when the values are constant per occupant;
otherwise each x is the occupant's least-squares mean.
"""

from __future__ import annotations

RIDGE = 0.1  # weight of the naive estimate, against 1 per fully observed hour


def unmix(unit, occupant, hour, frac, obs_unit, obs_hour, obs_values, additive: bool, n_occupants: int,
          ridge: float = RIDGE):
    """x (n_occupants x metrics; NaN for an occupant with no observed hour) and b (per unit, dict).

    unit, occupant, hour, frac: one entry per (occupant, hour) it was on its unit (each occupant on one
    unit); obs_unit, obs_hour, obs_values (n x metrics, NaN = not observed): the unit's hourly means."""
    import numpy as np

    values = np.asarray(obs_values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    metrics = values.shape[1]
    x = np.full((n_occupants, metrics), np.nan)
    background: dict[int, np.ndarray] = {}
    if not len(unit) or not len(obs_unit):
        return x, background
    span = int(max(hour.max(), obs_hour.max())) + 1
    obs_key = obs_unit.astype(np.int64) * span + obs_hour
    order = np.argsort(obs_key, kind="stable")
    obs_key, values, obs_unit = obs_key[order], values[order], obs_unit[order]
    key = unit.astype(np.int64) * span + hour
    pos = np.searchsorted(obs_key, key)
    seen = (pos < len(obs_key)) & (obs_key[np.minimum(pos, len(obs_key) - 1)] == key)
    unit, occupant, frac, pos = unit[seen], occupant[seen], frac[seen], pos[seen]
    if not len(unit):
        return x, background
    by_unit = np.argsort(unit, kind="stable")
    unit, occupant, frac, pos = unit[by_unit], occupant[by_unit], frac[by_unit], pos[by_unit]
    occ_bounds = np.flatnonzero(np.diff(unit)) + 1
    obs_first = np.searchsorted(obs_unit, unit[np.r_[0, occ_bounds]])
    obs_last = np.searchsorted(obs_unit, unit[np.r_[0, occ_bounds]], side="right")
    for i, (occ, fr, ps) in enumerate(zip(np.split(occupant, occ_bounds), np.split(frac, occ_bounds),
                                          np.split(pos, occ_bounds), strict=True)):
        lo, hi = obs_first[i], obs_last[i]
        ids, col = np.unique(occ, return_inverse=True)
        a = np.zeros((hi - lo, len(ids)))
        np.add.at(a, (ps - lo, col), fr)
        used = a.sum(axis=1)
        bg = np.ones(hi - lo) if additive else np.clip(1.0 - used, 0.0, None)
        sol = np.full((len(ids) + 1, metrics), np.nan)
        vals = values[lo:hi]
        ok = ~np.isnan(vals)
        # metrics observed in the same hours (the usual case) share one factorization
        patterns: dict[bytes, list[int]] = {}
        for m in range(metrics):
            if ok[:, m].any():
                patterns.setdefault(ok[:, m].tobytes(), []).append(m)
        for ms in patterns.values():
            rows = ok[:, ms[0]]
            sol[:, ms] = _solve(a[rows], bg[rows], used[rows], vals[rows][:, ms], additive, ridge)
        x[ids] = sol[:-1]
        background[int(unit[occ_bounds[i - 1] if i else 0])] = sol[-1]
    return x, background


def _solve(a, bg, used, v, additive: bool, ridge: float):
    """Ridge least squares for one unit: columns of a are occupants, bg the background's coefficients; v has
    one column per metric. Normal equations: the ridge keeps them well conditioned, and they are far cheaper
    than an SVD for the ~200 x ~50 systems of a week."""
    import numpy as np

    share = a.sum(axis=0)
    known = share > 0
    split = v / np.where(used > 0, used, 1.0)[:, None] if additive else v
    naive = np.where(known[:, None], a.T @ split / np.where(known, share, 1.0)[:, None], 0.0)
    # an additive unit's own background starts from nothing; a GPU's from its unoccupied share
    if additive:
        b0 = np.zeros((1, v.shape[1]))
    elif bg.sum() > 0:
        b0 = (bg @ v / bg.sum())[None, :]
    else:
        b0 = v.mean(axis=0, keepdims=True)
    full = np.column_stack([a, bg])
    lhs = full.T @ full + ridge**2 * np.eye(full.shape[1])
    rhs = full.T @ v + ridge**2 * np.vstack([naive, b0])
    s = np.linalg.solve(lhs, rhs)
    s[:-1][~known] = np.nan
    return s
