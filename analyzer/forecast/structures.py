"""The model structures a pool's forecast can take, each with fit -> state and predict(state) -> mean, bounds.

Two kinds:

- "regression": ridge (penalty off the level and slope) on
      1, [t or damped t], sin/cos(2 pi k t / 1 day) for k <= daily, sin/cos(2 pi k t / 7 days) for k <= weekly
  with t in days, fitted on the whole history or on its last `window_days`. A flat mean of the last N days is
  the regression with no trend and no seasonal term on a window of N days. A damped trend follows the fitted
  slope at the training end and flattens beyond it: the slope's contribution h days out is
  slope x (1 - phi^h) / -ln(phi) instead of slope x h, so a slope fitted to a swing is not extrapolated for weeks.
  Prediction intervals: empirical quantiles of the in-sample residuals (demand residuals are skewed by job
  start/stop steps, so no normality), scaled up by sqrt(n / (n - p)) for the degrees of freedom used and by
  the regression's leverage at the forecast point, sqrt(1 + s x0' (X'X + aD)^-1 x0), which grows with the
  horizon through the trend term. s = (1 + rho) / (1 - rho) for the residuals' lag-1 autocorrelation rho >= 0:
  correlated residuals pin the coefficients down only as well as n (1 - rho) / (1 + rho) independent ones.
- "snaive": seasonal naive, the last full period (1 or 7 days) repeated. Intervals from the quantiles of the
  history's own one-period-ahead errors y(t) - y(t - period), times sqrt(k) for the k-th period ahead (the
  errors of a seasonal random walk add up period by period).

The state is a plain dict of numpy arrays and floats, so a fitted forecaster pickles without code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_NS = 86_400 * 10**9
PERIOD_DAYS = {"daily": 1.0, "weekly": 7.0}


@dataclass(frozen=True)
class Structure:
    """One candidate model structure; `name` is what a planner reads ("mean(last 7d)", "linear+daily4")."""

    kind: str = "regression"  # "regression" or "snaive"
    trend: str | None = None  # None, "linear" or "damped"
    daily: int = 0
    weekly: int = 0
    alpha: float = 1e-3
    window_days: float | None = None  # regression on the last window_days only (None: all of the history)
    period_days: float = 7.0  # snaive only
    damping: float = 0.9  # per day, damped trend only

    @property
    def name(self) -> str:
        if self.kind == "snaive":
            return f"seasonal naive({self.period_days:g}d)"
        if self.trend is None and not self.daily and not self.weekly:
            return "mean(all)" if self.window_days is None else f"mean(last {self.window_days:g}d)"
        parts = [self.trend or "level"]
        if self.trend == "damped":
            parts[0] = f"damped({self.damping:g}/d)"
        if self.daily:
            parts.append(f"daily{self.daily}")
        if self.weekly:
            parts.append(f"weekly{self.weekly}")
        name = "+".join(parts)
        if self.daily or self.weekly:
            name += f" alpha={self.alpha:g}"
        if self.window_days is not None:
            name += f" last {self.window_days:g}d"
        return name

    @property
    def n_params(self) -> int:
        """Coefficients estimated: the complexity used to prefer the simpler of two equally good structures."""
        if self.kind == "snaive":
            return 1  # copies a period: no estimated coefficient, but no simpler than a mean either
        return 1 + (self.trend is not None) + 2 * self.daily + 2 * self.weekly

    @property
    def is_naive(self) -> bool:
        return self.kind == "snaive" or (self.trend is None and not self.daily and not self.weekly)

    def min_days(self) -> float:
        """History this structure needs before it can be fitted (and its errors measured)."""
        if self.kind == "snaive":
            return 2 * self.period_days  # one period to copy, one more to measure its errors on
        return self.window_days or 0.0

    def terms(self) -> dict:
        return {k: v for k, v in (("daily", self.daily), ("weekly", self.weekly)) if v > 0}


def fit(s: Structure, t_ns, y, interval: float) -> dict:
    """Fit structure s to the (sorted, finite) series; returns the state predict() needs.
    Raises ValueError when the series is too short for s (the caller checks minimums first)."""
    if s.kind == "snaive":
        return _fit_snaive(s, t_ns, y, interval)
    return _fit_regression(s, t_ns, y, interval)


def predict(s: Structure, m: dict, t_ns):
    """(mean, lower, upper) arrays at times t_ns (int64 ns), not clipped."""
    if s.kind == "snaive":
        return _predict_snaive(s, m, t_ns)
    return _predict_regression(s, m, t_ns)


# -- regression ---------------------------------------------------------------------------------------------------

def design(s: Structure, t_ns, origin: int, last_ns: int):
    import numpy as np

    t = (np.asarray(t_ns, dtype=np.int64) - origin) / DAY_NS
    cols = [np.ones_like(t)]
    if s.trend is not None:
        tt = t
        if s.trend == "damped":
            h = np.clip((np.asarray(t_ns, dtype=np.int64) - last_ns) / DAY_NS, 0, None)
            t_last = (last_ns - origin) / DAY_NS
            tt = np.where(h > 0, t_last + (1 - s.damping ** h) / -math.log(s.damping), t)
        cols.append(tt / 7.0)  # per week: keeps the column O(1) like the Fourier terms
    for name, order in s.terms().items():
        w = 2 * np.pi * t / PERIOD_DAYS[name]
        for k in range(1, order + 1):
            cols += [np.sin(k * w), np.cos(k * w)]
    return np.column_stack(cols)


def _fit_regression(s: Structure, t_ns, y, interval: float) -> dict:
    import numpy as np

    t_ns = np.asarray(t_ns, dtype=np.int64)
    y = np.asarray(y, dtype=float)
    if s.window_days is not None:
        keep = t_ns > t_ns[-1] - int(s.window_days * DAY_NS)
        t_ns, y = t_ns[keep], y[keep]
    origin, last = int(t_ns[0]), int(t_ns[-1])
    A = design(s, t_ns, origin, last)
    n, p = A.shape
    if n < max(2 * p, 2):
        raise ValueError(f"{n} points for {p} coefficients")
    pen = np.full(p, float(s.alpha))
    pen[: 2 if s.trend is not None else 1] = 0.0  # shrinking level or slope would bias every forecast
    gram_inv = np.linalg.pinv(A.T @ A + np.diag(pen * n))
    coef = gram_inv @ (A.T @ y)
    fitted = A @ coef
    resid = (y - fitted) * math.sqrt(n / max(n - p, 1))  # fit residuals understate the noise
    a = (1 - float(interval)) / 2
    q_lo, q_hi = np.quantile(resid, [a, 1 - a])
    rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if n > 2 and resid.std() > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95) if rho == rho else 0.0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - fitted) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    mape = float(np.mean(np.abs(y - fitted)[y != 0] / np.abs(y[y != 0]))) if np.any(y != 0) else math.nan
    return {"coef": coef, "gram_inv": gram_inv, "origin": origin, "last_ns": last, "q_lo": float(q_lo),
            "q_hi": float(q_hi), "lev_scale": (1 + rho) / (1 - rho), "rho": rho, "r2": r2, "mape": mape, "n": n}


def _predict_regression(s: Structure, m: dict, t_ns):
    import numpy as np

    A = design(s, t_ns, m["origin"], m["last_ns"])
    mean = A @ m["coef"]
    lev = np.einsum("ij,jk,ik->i", A, m["gram_inv"], A)
    widen = np.sqrt(1.0 + np.clip(lev, 0, None) * m["lev_scale"])
    return mean, mean + m["q_lo"] * widen, mean + m["q_hi"] * widen


# -- seasonal naive -----------------------------------------------------------------------------------------------

def _fit_snaive(s: Structure, t_ns, y, interval: float) -> dict:
    import numpy as np

    t_ns = np.asarray(t_ns, dtype=np.int64)
    y = np.asarray(y, dtype=float)
    period = int(s.period_days * DAY_NS)
    last = int(t_ns[-1])
    if last - t_ns[0] < 2 * period - DAY_NS // 24:  # an hour's slack: hourly buckets end one step short
        raise ValueError(f"{(last - t_ns[0]) / DAY_NS:.2f} days for a {s.period_days:g}-day seasonal naive")
    # The template: the last period on the series' own grid (gaps filled by interpolation), so that a
    # missing bucket last week does not become a missing forecast.
    step = int(np.median(np.diff(t_ns)))
    grid = last - period + step * np.arange(1, period // step + 1, dtype=np.int64)
    template = np.interp(grid, t_ns, y)
    later = t_ns >= t_ns[0] + period
    errors = y[later] - np.interp(t_ns[later] - period, t_ns, y)
    a = (1 - float(interval)) / 2
    q_lo, q_hi = np.quantile(errors, [a, 1 - a])
    fitted = np.interp(t_ns[later] - period, t_ns, y)
    yl = y[later]
    ss_tot = float(np.sum((yl - yl.mean()) ** 2))
    r2 = 1 - float(np.sum((yl - fitted) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    mape = float(np.mean(np.abs(errors)[yl != 0] / np.abs(yl[yl != 0]))) if np.any(yl != 0) else math.nan
    return {"template": template, "grid0": int(grid[0]), "step_ns": step, "period_ns": period, "last_ns": last,
            "q_lo": float(q_lo), "q_hi": float(q_hi), "r2": r2, "mape": mape, "n": len(y)}


def _predict_snaive(s: Structure, m: dict, t_ns):
    import numpy as np

    t_ns = np.asarray(t_ns, dtype=np.int64)
    period = m["period_ns"]
    idx = np.round(((t_ns - m["grid0"]) % period) / m["step_ns"]).astype(np.int64) % len(m["template"])
    mean = m["template"][idx]
    k = np.maximum(1, np.ceil((t_ns - m["last_ns"]) / period))
    return mean, mean + m["q_lo"] * np.sqrt(k), mean + m["q_hi"] * np.sqrt(k)
