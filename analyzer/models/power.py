"""PowerCapModel: time and energy vs. GPU power limit, per workload and accelerator type.

time(f) / time(1) = 1 + alpha * max(1/f - 1, 0) ** p   (f = power limit / the type's maximum; alpha, p >= 0)
energy(f) = power(f) * time(f), with power(f) interpolated from the observed average power at each cap.
The form is 1 at f = 1, grows without bound as f -> 0 and can stay flat for a memory- or input-bound job
(alpha ~ 0), which covers what Zeus measured without one parameter per cap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from analyzer.minimums import MIN_DISTINCT_CAPS, InsufficientData

ALPHA_BOUNDS = (0.0, 50.0)
P_BOUNDS = (0.05, 6.0)  # p -> 0 makes u**p a step at f = 1; keep it away from the degenerate end


def relative_slowdown(f: float | np.ndarray, alpha: float, p: float) -> float | np.ndarray:
    """time(f) / time(1) of the power-cap form; 1 wherever the cap does not bind (f >= 1)."""
    u = np.maximum(1.0 / np.asarray(f, dtype=float) - 1.0, 0.0)
    out = 1.0 + alpha * u ** p
    return float(out) if np.ndim(out) == 0 else out


def _fit(f: np.ndarray, t: np.ndarray, w: np.ndarray | None, free_scale: bool) -> tuple[float, float, float, float]:
    """(t1, alpha, p, rmse of log t) by bounded least squares on log time, from a few starts."""
    from scipy.optimize import least_squares

    u = np.maximum(1.0 / f - 1.0, 0.0)
    lt = np.log(t)
    sw = np.sqrt(w / w.mean()) if w is not None else np.ones_like(lt)

    def resid(theta: np.ndarray) -> np.ndarray:
        lt1 = theta[2] if free_scale else 0.0
        return sw * (lt1 + np.log1p(theta[0] * u ** theta[1]) - lt)

    lo = [ALPHA_BOUNDS[0], P_BOUNDS[0]] + ([-np.inf] if free_scale else [])
    hi = [ALPHA_BOUNDS[1], P_BOUNDS[1]] + ([np.inf] if free_scale else [])
    start_t1 = float(np.min(lt))
    best = None
    for a0, p0 in ((0.1, 1.0), (1.0, 0.5), (0.5, 2.0)):
        x0 = [a0, p0] + ([start_t1] if free_scale else [])
        r = least_squares(resid, x0, bounds=(lo, hi), method="trf")
        if best is None or r.cost < best.cost:
            best = r
    a, p = float(best.x[0]), float(best.x[1])
    t1 = math.exp(best.x[2]) if free_scale else 1.0
    rmse = float(np.sqrt(np.mean((best.fun / sw) ** 2)))
    return t1, a, p, rmse


def fit_slowdown(f: np.ndarray, slowdown: np.ndarray) -> tuple[float, float]:
    """(alpha, p) of time(f)/time(1) from already-normalized slowdowns."""
    f, s = np.asarray(f, float), np.asarray(slowdown, float)
    ok = np.isfinite(f) & np.isfinite(s) & (f > 0) & (s > 0)
    _, a, p, _ = _fit(f[ok], s[ok], None, free_scale=False)
    return a, p


class PowerCapModel(BaseEstimator):
    """Per (workload, accelerator): time vs. power-limit fraction and energy-optimal caps.

    fit(X) takes the observation table (analyzer.models.observations): workload, accelerator,
    power_limit_fraction, and throughput (time per unit = 1 / throughput) or a ``time`` column; optional
    power_watts (average power) and weight. A pair needs MIN_POINTS distinct caps (three parameters).
    """

    MIN_POINTS = MIN_DISTINCT_CAPS

    def __init__(self, time_column: str = "auto", grid_step: float = 0.01):
        self.time_column = time_column
        self.grid_step = grid_step

    def _times(self, X: pd.DataFrame) -> pd.Series:
        col = self.time_column
        if col == "auto":
            col = "time" if "time" in X.columns else "throughput"
        if col not in X.columns:
            raise ValueError(f"observations need a {col!r} column")
        v = pd.to_numeric(X[col], errors="coerce")
        return 1.0 / v if col == "throughput" else v

    def fit(self, X: pd.DataFrame, y: None = None) -> PowerCapModel:
        df = pd.DataFrame({
            "workload": X["workload"].astype(str), "accelerator": X["accelerator"].astype(str),
            "f": pd.to_numeric(X["power_limit_fraction"], errors="coerce"), "t": self._times(X),
            "power": pd.to_numeric(X["power_watts"], errors="coerce") if "power_watts" in X else np.nan,
            "weight": pd.to_numeric(X["weight"], errors="coerce") if "weight" in X else 1.0,
        })
        df = df[np.isfinite(df.f) & np.isfinite(df.t) & (df.f > 0) & (df.f <= 1.0 + 1e-9) & (df.t > 0)]
        df["weight"] = df.weight.fillna(1.0).clip(lower=1e-9)
        self.min_points = self.MIN_POINTS
        params, curves, skipped = [], {}, {}
        for (wl, acc), g in df.groupby(["workload", "accelerator"], sort=True):
            caps = g.f.round(4).nunique()
            if caps < self.MIN_POINTS:
                skipped[(wl, acc)] = f"{caps} distinct power caps; need at least {self.MIN_POINTS}"
                continue
            t1, a, p, rmse = _fit(g.f.to_numpy(), g.t.to_numpy(), g.weight.to_numpy(), free_scale=True)
            pw = g.dropna(subset=["power"]).groupby(g.f.round(4))["power"].mean()
            curves[(wl, acc)] = (pw.index.to_numpy(float), pw.to_numpy(float)) if len(pw) else None
            params.append({"workload": wl, "accelerator": acc, "time_at_full_power": t1, "alpha": a, "p": p,
                           "rmse_log": rmse, "n": len(g), "caps": caps, "min_fraction": float(g.f.min())})
        if not params:
            raise InsufficientData(f"no (workload, accelerator) pair has {self.MIN_POINTS} distinct power caps"
                                   f" ({len(skipped)} pair(s) had fewer)")
        self.params_ = pd.DataFrame(params).set_index(["workload", "accelerator"])
        self.power_curves_ = curves
        self.skipped_ = skipped
        self.n_train_ = int(self.params_.n.sum())
        self.score_ = float(np.sqrt(np.average(self.params_.rmse_log ** 2, weights=self.params_.n)))
        return self

    def _key(self, workload: str | None, accelerator: str | None) -> tuple[str, str]:
        if workload is None and accelerator is None and len(self.params_) == 1:
            return self.params_.index[0]
        key = (str(workload), str(accelerator))
        if key not in self.params_.index:
            raise KeyError(f"no power-cap fit for workload {workload!r} on {accelerator!r}")
        return key

    def slowdown(self, fraction: float | np.ndarray, workload: str | None = None,
                 accelerator: str | None = None) -> float | np.ndarray:
        """time(f) / time(1)."""
        r = self.params_.loc[self._key(workload, accelerator)]
        return relative_slowdown(fraction, r.alpha, r.p)

    def predict_time(self, fraction: float | np.ndarray, workload: str | None = None,
                     accelerator: str | None = None) -> float | np.ndarray:
        r = self.params_.loc[self._key(workload, accelerator)]
        return r.time_at_full_power * relative_slowdown(fraction, r.alpha, r.p)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Time per unit of work for each row (workload, accelerator, power_limit_fraction); NaN when unfitted."""
        out = np.full(len(X), np.nan)
        for i, (wl, acc, f) in enumerate(zip(X["workload"], X["accelerator"], X["power_limit_fraction"], strict=True)):
            if (str(wl), str(acc)) in self.params_.index:
                out[i] = self.predict_time(float(f), str(wl), str(acc))
        return out

    def power(self, fraction: float | np.ndarray, workload: str | None = None,
              accelerator: str | None = None) -> float | np.ndarray:
        """Average power at cap fraction f, interpolated between observed caps (flat beyond them)."""
        curve = self.power_curves_.get(self._key(workload, accelerator))
        if curve is None:
            raise ValueError(f"no average power was observed for {workload!r} on {accelerator!r}")
        out = np.interp(np.asarray(fraction, float), curve[0], curve[1])
        return float(out) if np.ndim(out) == 0 else out

    def energy(self, fraction: float | np.ndarray, workload: str | None = None,
               accelerator: str | None = None) -> float | np.ndarray:
        """Energy per unit of work (J when time is s and power W)."""
        return self.power(fraction, workload, accelerator) * self.predict_time(fraction, workload, accelerator)

    def energy_optimal_cap(self, max_slowdown: float = 0.05, workload: str | None = None,
                           accelerator: str | None = None) -> float | pd.DataFrame:
        """The cap fraction (within the observed range) that minimizes energy while time(f)/time(1) stays
        within 1 + max_slowdown. Without a workload and accelerator (and more than one fitted pair): a table
        with one row per pair: cap, slowdown, energy_saving (fraction of the full-power energy)."""
        if max_slowdown < 0:
            raise ValueError("max_slowdown must be >= 0")
        if workload is None and accelerator is None and len(self.params_) > 1:
            rows = []
            for wl, acc in self.params_.index:
                if self.power_curves_.get((wl, acc)) is None:
                    continue
                f = self.energy_optimal_cap(max_slowdown, wl, acc)
                rows.append({"workload": wl, "accelerator": acc, "cap": f,
                             "slowdown": float(self.slowdown(f, wl, acc)) - 1.0,
                             "energy_saving": 1.0 - self.energy(f, wl, acc) / self.energy(1.0, wl, acc)})
            return pd.DataFrame(rows)
        key = self._key(workload, accelerator)
        lo = float(self.params_.loc[key].min_fraction)
        grid = np.unique(np.append(np.arange(1.0, lo - 1e-12, -self.grid_step), [lo, 1.0]))
        ok = self.slowdown(grid, *key) <= 1.0 + max_slowdown + 1e-12
        grid = grid[ok]
        e = self.energy(grid, *key)
        return float(grid[int(np.argmin(e))])
