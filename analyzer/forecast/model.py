"""CapacityForecaster: per-pool demand forecast from trend + daily and weekly seasonality.

The model per pool is a linear regression (ridge, penalty off the intercept) on
    1, t, sin/cos(2 pi k t / 1 day) for k <= daily_order, sin/cos(2 pi k t / 7 days) for k <= weekly_order
with t in days since the first training point. Prediction intervals come from the empirical quantiles of
the in-sample residuals (no normality assumed: demand residuals are skewed by job start/stop steps),
inflated by the degrees of freedom used and by the regression's own leverage at the forecast point,
sqrt(1 + s x0' (X'X + aD)^-1 x0), which grows with the horizon through the trend term: the further out,
the wider. s = (1 + rho) / (1 - rho) for the residuals' lag-1 autocorrelation rho (>= 0): correlated
residuals carry less information about the coefficients than as many independent ones.

Minimums (analyzer.minimums): fewer than MIN_HISTORY_DAYS (2) days of history or fewer than MIN_POINTS
non-missing points raise InsufficientData; weekly terms need WEEKLY_MIN_DAYS (14: two full weekly
cycles, otherwise a weekly term cannot be told apart from trend and from a one-off week); daily terms need
2 days and a sampling step of at most a quarter day (a daily cycle needs several points per day).
"""

from __future__ import annotations

import math

from sklearn.base import BaseEstimator

from analyzer.minimums import MIN_HISTORY_DAYS, InsufficientData

DAY_NS = 86_400 * 10**9
PERIOD_DAYS = {"daily": 1.0, "weekly": 7.0}
WEEKLY_MIN_DAYS = 14.0
DAILY_MIN_DAYS = 2.0
DAILY_MAX_STEP_DAYS = 0.25


class CapacityForecaster(BaseEstimator):
    """Fit on a long frame [time, pool, demand(, capacity)]; predict [time, pool, forecast, lower, upper].

    horizon: how far predict() looks ahead by default ("14d", "36h" or a timedelta).
    seasonalities: which of "daily", "weekly" to try (each dropped when the history is too short for it).
    interval: central coverage of the prediction interval (0.9 = 5% to 95%).
    daily_order, weekly_order: Fourier harmonics per seasonality.
    trend: "linear" or None (a flat level).
    alpha: ridge penalty on every term but the intercept (features are O(1), so 1e-3 barely shrinks).
    """

    MIN_POINTS = 24
    min_points = MIN_POINTS

    def __init__(self, horizon="14d", seasonalities=("daily", "weekly"), interval: float = 0.9,
                 daily_order: int = 4, weekly_order: int = 3, trend: str | None = "linear", alpha: float = 1e-3):
        self.horizon = horizon
        self.seasonalities = seasonalities
        self.interval = interval
        self.daily_order = daily_order
        self.weekly_order = weekly_order
        self.trend = trend
        self.alpha = alpha

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, X, y=None) -> CapacityForecaster:
        """X: long frame with columns time, pool, demand and optionally capacity. Pools below the minimums
        are skipped (reason in skipped_); when every pool is, InsufficientData is raised."""
        import numpy as np
        import pandas as pd

        if not 0 < float(self.interval) < 1:
            raise ValueError(f"interval must be in (0, 1), got {self.interval!r}")
        unknown = set(self.seasonalities) - set(PERIOD_DAYS)
        if unknown:
            raise ValueError(f"unknown seasonalities {sorted(unknown)}: use {sorted(PERIOD_DAYS)}")
        if self.trend not in ("linear", None):
            raise ValueError(f"trend must be 'linear' or None, got {self.trend!r}")
        missing = {"time", "pool", "demand"} - set(X.columns)
        if missing:
            raise ValueError(f"demand frame lacks columns {sorted(missing)}; expected time, pool, demand")
        df = X.copy()
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df["demand"] = pd.to_numeric(df["demand"], errors="coerce")
        self.pools_, self.skipped_, self.capacity_, self.n_train_ = {}, {}, {}, 0
        for pool, g in df.groupby("pool", sort=True):
            g = g.sort_values("time")
            if "capacity" in g:
                cap = pd.to_numeric(g["capacity"], errors="coerce")
                last_day = g["time"] >= g["time"].max() - pd.Timedelta(days=1)
                # The most present in the last day: a node rebooting at the end is not lost capacity.
                self.capacity_[pool] = float(cap[last_day].max()) if cap[last_day].notna().any() else math.nan
            g = g[np.isfinite(g["demand"].to_numpy(dtype=float))]
            try:
                self.pools_[pool] = self._fit_one(pool, g)
                self.n_train_ += len(g)
            except InsufficientData as e:
                self.skipped_[pool] = str(e)
        if not self.pools_:
            reasons = "; ".join(self.skipped_.values()) or "no pools in the demand frame"
            raise InsufficientData(f"no pool has enough demand history to forecast ({reasons})")
        self.score_ = float(np.mean([p["r2"] for p in self.pools_.values()]))
        self.training_window_ = (df["time"].min(), df["time"].max())
        return self

    def _fit_one(self, pool: str, g) -> dict:
        import numpy as np

        t_ns = g["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        y = g["demand"].to_numpy(dtype=float)
        if len(y) < self.MIN_POINTS:
            raise InsufficientData(f"{pool}: {len(y)} demand points; need at least {self.MIN_POINTS}")
        span = (t_ns[-1] - t_ns[0]) / DAY_NS
        if span < MIN_HISTORY_DAYS:
            raise InsufficientData(f"{pool}: {span:.2f} days of demand history; need at least {MIN_HISTORY_DAYS:g}")
        step_ns = int(np.median(np.diff(t_ns)))
        terms = self._terms(span, step_ns / DAY_NS)
        origin = int(t_ns[0])
        A = self._design(t_ns, origin, terms)
        if len(y) < 2 * A.shape[1]:
            raise InsufficientData(f"{pool}: {len(y)} demand points for {A.shape[1]} terms; "
                                   f"need at least {2 * A.shape[1]}")
        pen = np.full(A.shape[1], float(self.alpha))
        pen[: 2 if self.trend == "linear" else 1] = 0.0  # shrinking level or slope would bias every forecast
        gram = A.T @ A + np.diag(pen * len(y))
        gram_inv = np.linalg.pinv(gram)
        coef = gram_inv @ (A.T @ y)
        fitted = A @ coef
        resid = y - fitted
        n, p = A.shape
        # Residuals of a fit are smaller than the noise by about sqrt((n - p) / n): undo that.
        resid = resid * math.sqrt(n / max(n - p, 1))
        a = (1 - float(self.interval)) / 2
        q_lo, q_hi = np.quantile(resid, [a, 1 - a])
        # Demand residuals are autocorrelated (a job holds its GPUs for hours): n such points pin the
        # coefficients down only as well as n (1 - rho) / (1 + rho) independent ones would, so the
        # leverage (parameter uncertainty, which grows with the horizon through the trend) is scaled up.
        rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if len(resid) > 2 and resid.std() > 0 else 0.0
        rho = min(max(rho, 0.0), 0.95) if rho == rho else 0.0
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        r2 = 1 - float(np.sum((y - fitted) ** 2)) / ss_tot if ss_tot > 0 else 1.0
        mape = float(np.mean(np.abs(y - fitted)[y != 0] / np.abs(y[y != 0]))) if np.any(y != 0) else math.nan
        return {"coef": coef, "gram_inv": gram_inv, "origin": origin, "terms": terms, "step_ns": step_ns,
                "last_ns": int(t_ns[-1]), "q_lo": float(q_lo), "q_hi": float(q_hi),
                "lev_scale": (1 + rho) / (1 - rho), "rho": rho, "r2": r2, "mape": mape,
                "n": n, "span_days": span, "y_max": float(y.max())}

    def _terms(self, span_days: float, step_days: float) -> dict:
        """Which seasonal terms this history supports: {"daily": order, "weekly": order}."""
        terms = {}
        if "daily" in self.seasonalities and span_days >= DAILY_MIN_DAYS and step_days <= DAILY_MAX_STEP_DAYS:
            # No harmonic above the Nyquist rate of the sampling step.
            terms["daily"] = max(0, min(int(self.daily_order), int(1.0 / step_days / 2) - 1 or 1))
        if "weekly" in self.seasonalities and span_days >= WEEKLY_MIN_DAYS:
            terms["weekly"] = max(0, min(int(self.weekly_order), int(7.0 / step_days / 2) - 1 or 1))
        return {k: v for k, v in terms.items() if v > 0}

    def _design(self, t_ns, origin: int, terms: dict):
        import numpy as np

        t = (np.asarray(t_ns, dtype=np.int64) - origin) / DAY_NS
        cols = [np.ones_like(t)]
        if self.trend == "linear":
            cols.append(t / 7.0)  # per week: keeps the column O(1) like the Fourier terms
        for name, order in terms.items():
            w = 2 * np.pi * t / PERIOD_DAYS[name]
            for k in range(1, order + 1):
                cols += [np.sin(k * w), np.cos(k * w)]
        return np.column_stack(cols)

    # -- prediction ---------------------------------------------------------------------------------------------
    def predict(self, horizon=None):
        """Frame [time, pool, forecast, lower, upper] for every fitted pool, at its own sampling step, from one
        step after its last training point up to `horizon` (default: the estimator's horizon)."""
        import numpy as np
        import pandas as pd

        from agents.query.base import parse_every

        self._check_fitted()
        h_ns = parse_every(self.horizon if horizon is None else horizon)
        frames = []
        for pool, m in self.pools_.items():
            steps = max(1, h_ns // m["step_ns"])
            t_ns = m["last_ns"] + m["step_ns"] * np.arange(1, steps + 1, dtype=np.int64)
            frames.append(self._predict_at(pool, m, t_ns))
        out = pd.concat(frames, ignore_index=True)
        return out[["time", "pool", "forecast", "lower", "upper"]]

    def predict_at(self, times, pool: str):
        """Forecast for one pool at given times (back-tests, dashboards)."""
        import numpy as np
        import pandas as pd

        self._check_fitted()
        if pool not in self.pools_:
            raise KeyError(f"no model for pool {pool!r} (fitted: {sorted(self.pools_)}; skipped: {self.skipped_})")
        t_ns = pd.to_datetime(pd.Series(times), utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return self._predict_at(pool, self.pools_[pool], t_ns)

    def _predict_at(self, pool, m, t_ns):
        import numpy as np
        import pandas as pd

        A = self._design(t_ns, m["origin"], m["terms"])
        mean = A @ m["coef"]
        lev = np.einsum("ij,jk,ik->i", A, m["gram_inv"], A)
        widen = np.sqrt(1.0 + np.clip(lev, 0, None) * m["lev_scale"])
        lower = mean + m["q_lo"] * widen
        upper = mean + m["q_hi"] * widen
        # Demand is a count of busy devices: never below zero.
        return pd.DataFrame({"time": pd.to_datetime(t_ns, unit="ns", utc=True), "pool": pool,
                             "forecast": np.clip(mean, 0, None), "lower": np.clip(lower, 0, None),
                             "upper": np.clip(upper, 0, None)})

    def summary(self, horizon=None):
        """Per pool: terms used, peak forecast (and when), capacity, first time the upper bound exceeds
        capacity (NaT if never within the horizon), headroom = capacity - peak forecast, fit quality."""
        import pandas as pd

        pred = self.predict(horizon)
        rows = []
        for pool, m in self.pools_.items():
            p = pred[pred["pool"] == pool]
            cap = self.capacity_.get(pool, math.nan)
            i = p["forecast"].idxmax()
            over = p[p["upper"] > cap] if cap == cap else p.iloc[0:0]
            rows.append({"pool": pool, "seasonalities": ",".join(m["terms"]) or "none",
                         "peak_forecast": float(p.loc[i, "forecast"]), "peak_time": p.loc[i, "time"],
                         "peak_upper": float(p["upper"].max()), "capacity": cap,
                         "shortfall_time": over["time"].iloc[0] if len(over) else pd.NaT,
                         "headroom": cap - float(p.loc[i, "forecast"]), "r2": m["r2"], "mape": m["mape"],
                         "n_train": m["n"], "history_days": m["span_days"]})
        for pool, why in self.skipped_.items():
            rows.append({"pool": pool, "seasonalities": "skipped: " + why, "capacity": self.capacity_.get(pool)})
        return pd.DataFrame(rows)

    def _check_fitted(self) -> None:
        if not hasattr(self, "pools_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("CapacityForecaster is not fitted yet: call fit(demand_frame) first")
