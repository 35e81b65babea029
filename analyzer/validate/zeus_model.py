"""Step-time curve of one workload on one GPU type at full power, for moving it to another type.

Time per epoch over batch size b follows T(b) = A/b + B + C*b: A/b is the fixed per-step overhead (launches,
host work, synchronisation) spread over the epoch's S/b steps, B the per-sample compute, and C*b the penalty
that makes some curves U-shaped at large batches (cache and memory pressure). It is fitted by non-negative
least squares on relative error; what it misses at the measured batches is kept as a multiplicative residual,
interpolated in log2 batch size and held flat beyond the measured range, so the form only decides how the
curve is extrapolated.

On another type the per-sample terms scale with that workload's speed s on that type, and the overhead with
o, a speed shared by every workload of the type: per-step overhead is host, driver and launch work, which is
the same machine whatever the model trains. Each workload's profiled point gives its s for a given o, and o is
their geometric mean (`pooled_speeds`), so one workload's odd large-batch point moves its own compute speed
but not the overhead every workload shares.
"""

from __future__ import annotations

import math

import numpy as np


class StepTimeCurve:
    """T(b) = (A/b + B + C*b) * residual(b), fitted on one type's full-power times."""

    def __init__(self, batch: np.ndarray, time: np.ndarray):
        from scipy.optimize import nnls

        order = np.argsort(batch)
        self.batch = np.asarray(batch, float)[order]
        self.time = np.asarray(time, float)[order]
        b, t = self.batch, self.time
        X = np.column_stack([1.0 / b, np.ones_like(b), b])
        (self.A, self.B, self.C), _ = nnls(X / t[:, None], np.ones_like(t))
        self.log_residual = np.log(t / np.maximum(self._form(b, 1.0, 1.0), 1e-12))

    def _form(self, b: np.ndarray, s: float, o: float) -> np.ndarray:
        return o * self.A / b + s * (self.B + self.C * b)

    def _residual(self, batch: float | np.ndarray) -> np.ndarray:
        return np.exp(np.interp(np.log2(batch), np.log2(self.batch), self.log_residual))

    def at(self, batch: float | np.ndarray, s: float = 1.0, o: float = 1.0) -> np.ndarray:
        """Time per epoch at batch on a type whose per-sample compute is s times and per-step overhead o times
        this one's."""
        b = np.asarray(batch, float)
        return np.maximum(self._form(b, s, o), 1e-12) * self._residual(b)

    def speed_from(self, batch: float, time: float, o: float) -> float:
        """The compute speed s for which at(batch, s, o) == time, given the overhead speed o (floored at 1e-3
        where the overhead alone already exceeds time)."""
        compute = self.B + self.C * batch
        left = time / float(self._residual(batch)) - o * self.A / batch
        if compute <= 0:  # a pure-overhead fit has no compute term to solve for: the plain time ratio
            return float(time / self.at(batch))
        return max(left / compute, 1e-3)


def pooled_speeds(curves: dict[str, StepTimeCurve], profiled: dict[str, tuple[float, float]]
                  ) -> tuple[float, dict[str, float]]:
    """(o, {workload: s}): the type-level overhead speed and each workload's compute speed on the profiled type
    relative to the curves' type, from one profiled (batch, time) per workload. o is the geometric mean of the
    s it implies: log o - mean(log s(o)) increases with o (a faster overhead leaves more of each profiled time
    to compute), so its one root is found by bisection in log o."""
    names = [w for w in profiled if w in curves]
    if not names:
        return 1.0, {}

    def speeds(o: float) -> dict[str, float]:
        return {w: curves[w].speed_from(*profiled[w], o) for w in names}

    lo, hi = math.log(1e-4), math.log(1e4)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid - float(np.mean(np.log(list(speeds(math.exp(mid)).values())))) < 0:
            lo = mid
        else:
            hi = mid
    o = math.exp(0.5 * (lo + hi))
    return o, speeds(o)


# ---------------------------------------------------------------- the structural cross-type model

def interp_log2(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Piecewise-linear in log2(x); beyond the ends, continue the last segment's slope at half strength
    (a batch-size curve flattens, it does not keep bending)."""
    order = np.argsort(x)
    lx, y = np.log2(np.asarray(x, float)[order]), np.asarray(y, float)[order]
    t = np.log2(np.asarray(at, float))
    if len(lx) == 1:
        return np.full(t.shape, float(y[0]))
    out = np.interp(t, lx, y)
    s_lo = (y[1] - y[0]) / (lx[1] - lx[0])
    s_hi = (y[-1] - y[-2]) / (lx[-1] - lx[-2])
    out = np.where(t < lx[0], y[0] + 0.5 * s_lo * (t - lx[0]), out)
    return np.where(t > lx[-1], y[-1] + 0.5 * s_hi * (t - lx[-1]), out)


def profiled_floor(g) -> float:
    """The lowest average power among a type's profiled-like points (largest batch, highest limit): the same
    estimate of static power that the held-out type allows."""
    top = g[g.power_limit == g.power_limit.max()]
    top = top[top.batch_size == top.groupby("workload").batch_size.transform("max")]
    return float(top.average_power.min())


class CrossTypeModel:
    """log t(w, H, b, P) = log t_anchor(w, H) + g_w(b) + log s(x), and average power min(demand, rho * P).

    g_w(b): log uncapped time at batch b relative to the anchor batch (the profiled point at the type's highest
    limit), averaged over the other types; each type's curve is a StepTimeCurve, moved to the held-out type with
    the workload's own compute speed and the type's pooled overhead speed (pooled_speeds).
    s(x): power-cap slowdown as a function of the dynamic power fraction x = (P - floor) / (demand - floor),
    where floor is the type's static power (the lowest average power among its anchors) and demand the
    uncapped average power of (w, b); s is the PowerCapModel form fitted on the other types. The demand at
    other batch sizes follows the other types' dynamic-power curve, scaled to the anchor's power.
    Average power: the demand where the cap does not bind, else rho * P, rho the median share of the cap that
    capped training configurations drew (a capped GPU runs just under its limit).
    """

    def __init__(self, floor_scale: float = 1.0):
        self.floor_scale = floor_scale

    def fit(self, train) -> CrossTypeModel:
        from analyzer.models.power import fit_slowdown

        x, s, share = [], [], []
        for _gpu, g in train.groupby("gpu"):
            floor = self.floor_scale * profiled_floor(g)
            pmax = g.power_limit.max()
            for _, gb in g.groupby(["workload", "batch_size"]):
                top = gb[gb.power_limit == pmax]
                if top.empty:
                    continue
                demand = float(top.average_power.iloc[0])
                t1 = float(top.time_per_epoch.iloc[0])
                x.extend((gb.power_limit.to_numpy() - floor) / max(demand - floor, 1e-9))
                s.extend(gb.time_per_epoch.to_numpy() / t1)
                capped = gb[gb.power_limit * 1.1 <= demand]
                share.extend(capped.average_power.to_numpy() / capped.power_limit.to_numpy())
        self.alpha_, self.p_ = fit_slowdown(np.clip(np.array(x), 0.02, None), np.array(s))
        self.rho_ = float(np.nanmedian(share)) if share else 1.0
        self.train_ = train
        return self

    def predict(self, anchors, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time_per_epoch, average_power, log power-cap slowdown) for every row of `rows` (workload, batch_size,
        power_limit) on the held-out type, from `anchors`: one measured row per workload at the type's highest
        power limit."""
        from analyzer.models.power import relative_slowdown

        floor_h = self.floor_scale * float(anchors.average_power.min())
        sources = []
        for _gpu, g in self.train_.groupby("gpu"):
            top = g[g.power_limit == g.power_limit.max()]
            floor = self.floor_scale * profiled_floor(g)
            curves, dyn = {}, {}
            for wl, t in top.groupby("workload"):
                bs = t.batch_size.to_numpy(float)
                curves[wl] = StepTimeCurve(bs, t.time_per_epoch.to_numpy(float))
                dyn[wl] = (bs, (t.average_power.to_numpy() - floor) / (top.power_limit.max() - floor))
            prof = {r.workload: (float(r.batch_size), float(r.time_per_epoch)) for r in anchors.itertuples()}
            o, speeds = pooled_speeds(curves, prof)
            sources.append((curves, dyn, o, speeds))
        time = np.full(len(rows), np.nan)
        power = np.full(len(rows), np.nan)
        log_slow = np.full(len(rows), np.nan)
        wl_rows = rows.workload.to_numpy()
        for a in anchors.itertuples():
            m = wl_rows == a.workload
            if not m.any():
                continue
            b = rows.batch_size.to_numpy(float)[m]
            b0 = float(a.batch_size)
            gs, ds = [], []
            for curves, dyn, o, speeds in sources:
                if a.workload not in curves:
                    continue
                c = curves[a.workload]
                s_w = speeds[a.workload]
                gs.append(np.log(c.at(b, s_w, o) / float(c.at(b0, s_w, o))))
                bs, ld = dyn[a.workload]
                ds.append(interp_log2(bs, ld, b) - interp_log2(bs, ld, np.array([b0]))[0])
            g_logt, g_dyn = np.mean(gs, axis=0), np.mean(ds, axis=0)
            span = float(a.power_limit) - floor_h
            d0 = (float(a.average_power) - floor_h) / span
            demand_dyn = np.maximum((d0 + g_dyn) * span, 1e-3)
            p = rows.power_limit.to_numpy(float)[m]
            x = np.maximum((p - floor_h) / demand_dyn, 0.02)
            x0 = max((float(a.power_limit) - floor_h) / max(d0 * span, 1e-3), 0.02)
            slow = relative_slowdown(x, self.alpha_, self.p_) / relative_slowdown(x0, self.alpha_, self.p_)
            time[m] = float(a.time_per_epoch) * np.exp(g_logt) * slow
            power[m] = np.minimum(floor_h + demand_dyn, self.rho_ * p)
            log_slow[m] = np.log(slow)
        return time, power, log_slow
