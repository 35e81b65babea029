"""CapacityForecaster: per-pool demand forecast whose structure each pool earns by cross-validation.

For every pool the estimator scores a grid of structures (analyzer.forecast.structures: flat means of the
whole history and of its last 1/3/7 days, seasonal naive by day and by week, and ridge regressions with no,
linear or damped trend x daily x weekly Fourier orders x ridge strength) by rolling-origin cross-validation
on the training history only (analyzer.forecast.select), keeps the best, preferring fewer coefficients
within `tolerance`, and refits it on the whole history. A pool whose demand has no structure that forecasts
better than a flat mean gets the flat mean, and its summary says so. `select="fixed"` skips the search and
fits exactly trend + daily_order + weekly_order (capped by the history), the forecaster's old behaviour.

Prediction intervals are each structure's own (structures.py). When the chosen structure's intervals covered
less than `interval` of the cross-validation test points, they are widened by the factor that makes them
cover it there (never narrowed: a handful of folds is too little to trust a narrowing).

Minimums (analyzer.minimums): fewer than MIN_HISTORY_DAYS (2) days of history or fewer than MIN_POINTS
non-missing points raise InsufficientData; weekly terms and last week's seasonal naive need WEEKLY_MIN_DAYS
(14) days before the first fold (two weekly cycles, else a weekly term cannot be told from trend or from a
one-off week); daily terms need a sampling step of at most a quarter day.
"""

from __future__ import annotations

import math

from sklearn.base import BaseEstimator

from analyzer.forecast import select as sel
from analyzer.forecast import structures as st
from analyzer.forecast.structures import DAY_NS, PERIOD_DAYS, Structure
from analyzer.minimums import MIN_HISTORY_DAYS, InsufficientData

WEEKLY_MIN_DAYS = sel.WEEKLY_MIN_DAYS
DAILY_MIN_DAYS = sel.DAILY_MIN_DAYS
DAILY_MAX_STEP_DAYS = sel.DAILY_MAX_STEP_DAYS
TRENDS = {None: (None,), "linear": (None, "linear", "damped"), "damped": (None, "damped")}
FLAT = Structure()
MARGIN = 0.15


class CapacityForecaster(BaseEstimator):
    """Fit on a long frame [time, pool, demand(, capacity)]; predict [time, pool, forecast, lower, upper].

    horizon: how far predict() looks ahead by default ("14d", "36h" or a timedelta); also the furthest
        cross-validation folds are scored at.
    seasonalities: which of "daily", "weekly" may be used (each dropped when the history is too short for it).
    interval: central coverage of the prediction interval (0.9 = 5% to 95%).
    daily_order, weekly_order: the highest Fourier harmonics tried (select="cv") or used (select="fixed").
    trend: the most trend allowed: "linear" (tries none, linear and damped), "damped" (none or damped), None.
    alpha: ridge penalty on the seasonal terms (features are O(1), so 1e-3 barely shrinks); cv also tries 1.
    select: "cv" (choose each pool's structure by rolling-origin cross-validation) or "fixed".
    cv_folds: forecast origins in the cross-validation.
    tolerance: a structure with fewer coefficients within this fraction of the best CV error is preferred.

    Fitted: pools_ (per pool: "structure", "model" (its name), "terms", "cv" (WAPE, MAE, coverage, folds,
    the flat mean's and seasonal naive's WAPE, the runner-up), "note", plus the fitted state), structures_
    {pool: name}, scores_ {pool: {structure, cv_wape, cv_wape_flat_mean, ...}}, skipped_, capacity_,
    n_train_, training_window_. score_ = mean over pools of the CV skill 1 - MAE / MAE(flat mean): 0 means
    no better than the flat mean, 1 a perfect forecast.
    """

    MIN_POINTS = 24
    min_points = MIN_POINTS

    def __init__(self, horizon="14d", seasonalities=("daily", "weekly"), interval: float = 0.9,
                 daily_order: int = 4, weekly_order: int = 3, trend: str | None = "linear", alpha: float = 1e-3,
                 select: str = "cv", cv_folds: int = 5, tolerance: float = 0.02):
        self.horizon = horizon
        self.seasonalities = seasonalities
        self.interval = interval
        self.daily_order = daily_order
        self.weekly_order = weekly_order
        self.trend = trend
        self.alpha = alpha
        self.select = select
        self.cv_folds = cv_folds
        self.tolerance = tolerance

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, X, y=None) -> CapacityForecaster:
        """X: long frame with columns time, pool, demand and optionally capacity. Pools below the minimums
        are skipped (reason in skipped_); when every pool is, InsufficientData is raised."""
        import numpy as np
        import pandas as pd

        self._check_params()
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
        self.structures_ = {p: m["model"] for p, m in self.pools_.items()}
        self.scores_ = {p: {"structure": m["model"], **{k: v for k, v in m["cv"].items() if k != "runner_up"}}
                        for p, m in self.pools_.items()}
        skills = [m["cv"]["skill"] for m in self.pools_.values() if m["cv"].get("skill") is not None]
        self.score_ = float(np.mean(skills)) if skills else float(np.mean([m["r2"] for m in self.pools_.values()]))
        self.training_window_ = (df["time"].min(), df["time"].max())
        return self

    def _check_params(self) -> None:
        if not 0 < float(self.interval) < 1:
            raise ValueError(f"interval must be in (0, 1), got {self.interval!r}")
        unknown = set(self.seasonalities) - set(PERIOD_DAYS)
        if unknown:
            raise ValueError(f"unknown seasonalities {sorted(unknown)}: use {sorted(PERIOD_DAYS)}")
        if self.trend not in TRENDS:
            raise ValueError(f"trend must be 'linear', 'damped' or None, got {self.trend!r}")
        if self.select not in ("cv", "fixed"):
            raise ValueError(f"select must be 'cv' or 'fixed', got {self.select!r}")
        if int(self.cv_folds) < 1:
            raise ValueError(f"cv_folds must be at least 1, got {self.cv_folds!r}")

    def _fit_one(self, pool: str, g) -> dict:
        import numpy as np

        from agents.query.base import parse_every

        t_ns = g["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        y = g["demand"].to_numpy(dtype=float)
        if len(y) < self.MIN_POINTS:
            raise InsufficientData(f"{pool}: {len(y)} demand points; need at least {self.MIN_POINTS}")
        span = (t_ns[-1] - t_ns[0]) / DAY_NS
        if span < MIN_HISTORY_DAYS:
            raise InsufficientData(f"{pool}: {span:.2f} days of demand history; need at least {MIN_HISTORY_DAYS:g}")
        step_ns = int(np.median(np.diff(t_ns)))
        horizon_ns = parse_every(self.horizon)
        if self.select == "fixed":
            s, cv = self._fixed_structure(span, step_ns / DAY_NS), {}
            note = "fixed structure (select='fixed')"
        else:
            s, cv, note = self._cross_validate(t_ns, y, span, step_ns, horizon_ns)
        try:
            state = st.fit(s, t_ns, y, self.interval)
        except ValueError as e:
            raise InsufficientData(f"{pool}: {len(y)} demand points for {s.name} ({e})") from None
        widen = cv.get("widen", 1.0)
        if widen > 1.0:
            state["q_lo"] *= widen
            state["q_hi"] *= widen
        return {**state, "structure": s, "model": s.name, "terms": s.terms(), "cv": cv, "note": note,
                "step_ns": step_ns, "last_ns": int(t_ns[-1]), "span_days": span, "y_max": float(y.max())}

    def _fixed_structure(self, span: float, step_days: float) -> Structure:
        daily, weekly = sel.orders_for(step_days, self.daily_order, self.weekly_order)
        use_daily = "daily" in self.seasonalities and span >= DAILY_MIN_DAYS
        use_weekly = "weekly" in self.seasonalities and span >= WEEKLY_MIN_DAYS
        return Structure(trend=self.trend, daily=daily if use_daily else 0, weekly=weekly if use_weekly else 0,
                         alpha=float(self.alpha))

    def _cross_validate(self, t_ns, y, span: float, step_ns: int, horizon_ns: int):
        """(structure, cv facts, note) for one pool."""
        p = sel.plan(span, horizon_ns / DAY_NS, "weekly" in self.seasonalities)
        if p is None:
            return FLAT, {}, f"{span:.1f} days are too few to cross-validate: flat mean"
        min_train, min_test = p
        cands = sel.candidates(min_train, step_ns / DAY_NS, self.seasonalities, self.daily_order,
                               self.weekly_order, TRENDS[self.trend], float(self.alpha))
        masks = sel.folds(t_ns, min_train, min_test, horizon_ns, int(self.cv_folds))
        if not masks:
            return FLAT, {}, "no cross-validation fold: flat mean"
        scores = sel.cross_validate(t_ns, y, cands, masks, self.interval)
        best = sel.choose(scores, float(self.tolerance), MARGIN)
        by_name = {c["structure"].name: c for c in scores}
        flat = by_name[FLAT.name]
        snaive = [c for c in scores if c["structure"].kind == "snaive" and math.isfinite(c["mae"])]
        others = sorted((c for c in scores if c is not best and math.isfinite(c["mae"])), key=lambda c: c["mae"])
        cov = best["coverage"]
        cv = {"wape": best["wape"], "mae": best["mae"], "coverage": cov, "folds": len(masks),
              "candidates": len(cands), "wape_flat_mean": flat["wape"],
              "wape_seasonal_naive": min((c["wape"] for c in snaive), default=None),
              "skill": 1 - best["mae"] / flat["mae"] if flat["mae"] > 0 else 0.0,
              "widen": self._widen(t_ns, y, best["structure"], masks) if cov == cov and cov < self.interval else 1.0,
              "runner_up": others[0]["structure"].name if others else None}
        s = best["structure"]
        if s.is_naive:
            rival = next((c for c in others if not c["structure"].is_naive), None)
            note = f"no structure forecast better than {s.name} in cross-validation"
            if rival is not None:
                note += f" (best structured: {rival['structure'].name}, WAPE {rival['wape']:.3f} vs {best['wape']:.3f})"
        else:
            note = f"beats the flat mean in cross-validation: WAPE {best['wape']:.3f} vs {flat['wape']:.3f}"
        return s, cv, note

    def _widen(self, t_ns, y, s: Structure, masks) -> float:
        """The factor on the interval's half-widths around the forecast that makes it cover `interval` of the
        CV test points (>= 1)."""
        import numpy as np

        need = []
        for tr, te in masks:
            state = st.fit(s, t_ns[tr], y[tr], self.interval)
            mean, lo, hi = st.predict(s, state, t_ns[te])
            e = y[te] - mean
            half = np.where(e >= 0, hi - mean, mean - lo)
            need.append(np.abs(e) / np.maximum(half, 1e-9))
        return float(max(1.0, np.quantile(np.concatenate(need), self.interval)))

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

        mean, lower, upper = st.predict(m["structure"], m, t_ns)
        # Demand is a count of busy devices: never below zero.
        return pd.DataFrame({"time": pd.to_datetime(t_ns, unit="ns", utc=True), "pool": pool,
                             "forecast": np.clip(mean, 0, None), "lower": np.clip(lower, 0, None),
                             "upper": np.clip(upper, 0, None)})

    def summary(self, horizon=None):
        """Per pool: the structure chosen and why, its CV error against the flat mean's and the seasonal naive's,
        peak forecast (and when), capacity, first time the upper bound exceeds capacity (NaT if never within
        the horizon), headroom = capacity - peak forecast, in-sample fit quality."""
        import pandas as pd

        pred = self.predict(horizon)
        rows = []
        for pool, m in self.pools_.items():
            p = pred[pred["pool"] == pool]
            cap = self.capacity_.get(pool, math.nan)
            i = p["forecast"].idxmax()
            over = p[p["upper"] > cap] if cap == cap else p.iloc[0:0]
            cv = m["cv"]
            rows.append({"pool": pool, "structure": m["model"], "seasonalities": ",".join(m["terms"]) or "none",
                         "cv_wape": cv.get("wape"), "cv_wape_flat_mean": cv.get("wape_flat_mean"),
                         "cv_wape_seasonal_naive": cv.get("wape_seasonal_naive"), "note": m["note"],
                         "peak_forecast": float(p.loc[i, "forecast"]), "peak_time": p.loc[i, "time"],
                         "peak_upper": float(p["upper"].max()), "capacity": cap,
                         "shortfall_time": over["time"].iloc[0] if len(over) else pd.NaT,
                         "headroom": cap - float(p.loc[i, "forecast"]), "r2": m["r2"], "mape": m["mape"],
                         "n_train": m["n"], "history_days": m["span_days"]})
        for pool, why in self.skipped_.items():
            rows.append({"pool": pool, "structure": "skipped", "seasonalities": "skipped: " + why,
                         "capacity": self.capacity_.get(pool)})
        return pd.DataFrame(rows)

    def _check_fitted(self) -> None:
        if not hasattr(self, "pools_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("CapacityForecaster is not fitted yet: call fit(demand_frame) first")
