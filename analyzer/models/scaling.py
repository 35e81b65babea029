"""ScalingModel: throughput vs. number of accelerators (and nodes) for one workload on one accelerator type.

Three parametric forms, fitted to the jobs' mean throughputs and chosen by leave-one-count-out
cross-validation (each distinct (devices, multi-node) shape is held out in turn and predicted):

- "amdahl":  X(n) = X1 / (s + (1 - s)/n), s = s_intra + s_net * [nodes > 1]
             i.e. n / X(n) = (1 + s (n-1)) / X1 - the Optimus form with c = 0, b = s;
- "optimus": X(n) = X1 * n / (1 + b (n-1) + c (n-1)^2), b = b_intra + b_net * [nodes > 1]   (Peng et al.,
             EuroSys'18: data-parallel training with all-reduce; c >= 0 is contention growing with the ring);
- "power":   X(n) = X1 * n^k, 0 <= k <= K_MAX.

amdahl and optimus are linear once inverted: n / X(n) = a0 + a1 (n-1) + a2 (n-1)^2 + a3 (n-1) [nodes>1] with
a0 = 1/X1, a1 = b/X1, a2 = c/X1, a3 = b_net/X1, all >= 0, so scipy's NNLS fits them exactly (no starting
point, no local minima). Rows are divided by the observed n/X so that residuals are relative errors, which
keeps a 1-device job and a 64-device job on the same footing. The net term is fitted only when the data
has both single- and multi-node jobs; the b_net it reports is for the fabric those jobs ran on.

Ties go to the simpler form: a form with more parameters must beat the best simpler one's CV error by
more than `tie_tolerance` (relative), because on a handful of counts the extra parameter mostly fits noise.

Intervals: residual bootstrap in log space (`n_bootstrap` refits on fitted * exp(resampled residuals),
residuals inflated by sqrt(N / (N - p)) for the degrees of freedom the fit used). With no residual
degrees of freedom (as many distinct shapes as parameters) there is nothing to resample and the
intervals are NaN rather than falsely tight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from analyzer.minimums import InsufficientData

FORMS = ("amdahl", "power", "optimus")  # simplest first: the order ties are broken in
N_PARAMS = {"amdahl": 2, "power": 2, "optimus": 3}  # plus one for the net term when fitted
K_MAX = 1.5  # power-law exponent bound: superlinear beyond 1.5 is a measurement problem, not scaling


@dataclass(frozen=True)
class _Fit:
    form: str
    x1: float
    b: float = 0.0  # amdahl: s; optimus: b_intra
    b_net: float = 0.0
    c: float = 0.0
    k: float = 1.0
    net: bool = False  # whether the net term was fitted

    def predict(self, n: np.ndarray, multi: np.ndarray) -> np.ndarray:
        n = np.asarray(n, dtype=float)
        if self.form == "power":
            return self.x1 * n ** self.k
        m = n - 1.0
        denom = 1.0 + (self.b + self.b_net * multi) * m + self.c * m * m
        return self.x1 * n / denom

    def n_params(self) -> int:
        return N_PARAMS[self.form] + int(self.net and self.form != "power")


def _fit_form(form: str, n: np.ndarray, multi: np.ndarray, y: np.ndarray, w: np.ndarray, net: bool) -> _Fit:
    from scipy.optimize import lsq_linear, nnls

    sw = np.sqrt(w / w.mean())
    if form == "power":
        a = np.column_stack([np.ones_like(n), np.log(n)]) * sw[:, None]
        r = lsq_linear(a, np.log(y) * sw, bounds=([-np.inf, 0.0], [np.inf, K_MAX]))
        return _Fit("power", float(math.exp(r.x[0])), k=float(r.x[1]))
    m = n - 1.0
    cols = [np.ones_like(n), m]
    if form == "optimus":
        cols.append(m * m)
    if net:
        cols.append(m * multi)
    target = n / y
    a = np.column_stack(cols) / target[:, None] * sw[:, None]
    coef, _ = nnls(a, sw.copy())  # each row: prediction / observed = 1
    a0 = coef[0]
    if a0 <= 0:  # every point explained by overhead alone: no finite single-device speed
        return _Fit(form, math.inf, net=net)
    b = coef[1] / a0
    c = coef[2] / a0 if form == "optimus" else 0.0
    b_net = coef[-1] / a0 if net else 0.0
    return _Fit(form, float(1.0 / a0), b=float(b), b_net=float(b_net), c=float(c), net=net)


def _log_error(fit: _Fit, n: np.ndarray, multi: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pred = fit.predict(n, multi)
        err = np.log(pred / y)
    return np.where(np.isfinite(err), err, 10.0)  # a useless prediction, not a crash


class ScalingModel(BaseEstimator):
    """Throughput vs. device count for one (workload, accelerator type): fit, select the form, predict.

    fit(devices, throughput, nodes=None, sample_weight=None); needs MIN_COUNTS distinct device counts and
    MIN_POINTS observations (finite, positive), else InsufficientData. Fitted: form_, params_ (X1, b_intra,
    b_net, c, s, k as applicable), param_intervals_ {name: (lo, hi)}, cv_errors_ {form: RMSE of log
    throughput}, score_ (the chosen form's CV RMSE of log throughput: ~relative error; lower is better),
    n_train_, min_points, net_fitted_.
    """

    MIN_COUNTS = 3  # three parameters (X1 plus two shape terms) need three distinct counts
    MIN_POINTS = 4  # and one more observation than that to cross-validate anything

    def __init__(self, forms: tuple[str, ...] = FORMS, n_bootstrap: int = 200, confidence: float = 0.9,
                 tie_tolerance: float = 0.1, random_state: int = 0) -> None:
        self.forms = forms
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.tie_tolerance = tie_tolerance
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, devices, throughput, nodes=None, sample_weight=None) -> ScalingModel:
        unknown = [f for f in self.forms if f not in FORMS]
        if unknown or not self.forms:
            raise ValueError(f"unknown scaling forms {unknown}; known: {', '.join(FORMS)}")
        n = np.asarray(devices, dtype=float).ravel()
        y = np.asarray(throughput, dtype=float).ravel()
        nd = np.ones_like(n) if nodes is None else np.asarray(nodes, dtype=float).ravel()
        w = np.ones_like(n) if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if not (len(n) == len(y) == len(nd) == len(w)):
            raise ValueError(f"devices, throughput, nodes and sample_weight differ in length: "
                             f"{len(n)}, {len(y)}, {len(nd)}, {len(w)}")
        ok = (np.isfinite(n) & np.isfinite(y) & np.isfinite(nd) & np.isfinite(w) & (n >= 1) & (y > 0) & (nd >= 1)
              & (w > 0))
        self.n_dropped_ = int((~ok).sum())
        n, y, nd, w = n[ok], y[ok], nd[ok], w[ok]
        counts = len(np.unique(n))
        self.min_points = self.MIN_POINTS
        if counts < self.MIN_COUNTS or len(n) < self.MIN_POINTS:
            raise InsufficientData(
                f"{counts} distinct device counts in {len(n)} usable observations ({self.n_dropped_} dropped as "
                f"non-finite or non-positive); need at least {self.MIN_COUNTS} counts and {self.MIN_POINTS} "
                f"observations")
        multi = (nd > 1).astype(float)
        # The net term needs multi-node jobs beside single-node ones, and a multi-node job with n > 1.
        net = bool(multi.any() and (multi == 0).any())
        self.net_fitted_ = net

        shapes = np.array([f"{a:g}/{b:g}" for a, b in zip(n, multi, strict=True)])
        cv: dict[str, float] = {}
        for form in self.forms:
            errs, wts = [], []
            for s in np.unique(shapes):
                test = shapes == s
                train = ~test
                # Holding out the only multi-node shape tests nothing but "no net term" for every form alike.
                if len(np.unique(n[train])) < 2 or (net and not multi[train].any()):
                    continue
                f = _fit_form(form, n[train], multi[train], y[train], w[train],
                              net and bool(multi[train].any() and (multi[train] == 0).any()))
                errs.append(_log_error(f, n[test], multi[test], y[test]))
                wts.append(w[test])
            if not errs:  # every fold was skipped: nothing held out, so use the in-sample error
                f = _fit_form(form, n, multi, y, w, net)
                errs, wts = [_log_error(f, n, multi, y)], [w]
            e, ww = np.concatenate(errs), np.concatenate(wts)
            cv[form] = float(np.sqrt(np.average(e * e, weights=ww)))
        self.cv_errors_ = cv
        best = min(cv.values())
        # Simplest form within the tolerance of the best (absolute floor: noise-free data has best == 0).
        chosen = next(f for f in FORMS if f in cv and cv[f] <= best * (1 + self.tie_tolerance) + 1e-4)
        self.form_ = chosen
        fit = _fit_form(chosen, n, multi, y, w, net)
        self._fit = fit
        self.params_ = self._params(fit)
        self.n_train_ = len(n)
        self.score_ = cv[chosen]
        self.counts_ = sorted(float(v) for v in np.unique(n))
        self._bootstrap(fit, n, multi, y, w, net, shapes)
        return self

    def fit_frame(self, frame, devices: str = "devices", throughput: str = "throughput", nodes: str = "nodes",
                  weight: str | None = "weight") -> ScalingModel:
        """fit() on columns of an observations DataFrame (nodes and weight optional)."""
        return self.fit(frame[devices].to_numpy(), frame[throughput].to_numpy(),
                        frame[nodes].to_numpy() if nodes in frame else None,
                        frame[weight].to_numpy() if weight and weight in frame else None)

    @staticmethod
    def _params(fit: _Fit) -> dict[str, float]:
        if fit.form == "power":
            return {"X1": fit.x1, "k": fit.k}
        out = {"X1": fit.x1}
        if fit.form == "amdahl":
            out["s"] = fit.b
            out["b_intra"] = fit.b  # the same thing in Optimus terms (c = 0)
            out["c"] = 0.0
        else:
            out["b_intra"] = fit.b
            out["c"] = fit.c
        out["b_net"] = fit.b_net if fit.net else math.nan
        return out

    def _bootstrap(self, fit: _Fit, n, multi, y, w, net: bool, shapes) -> None:
        self._draws: list[_Fit] = []
        dof = len(np.unique(shapes)) - fit.n_params()
        names = list(self.params_)
        self.param_intervals_ = {k: (math.nan, math.nan) for k in names}
        if dof <= 0 or self.n_bootstrap <= 0 or not math.isfinite(fit.x1):
            return
        rng = np.random.default_rng(self.random_state)
        fitted = fit.predict(n, multi)
        resid = np.log(y / fitted)
        resid = (resid - np.average(resid, weights=w)) * math.sqrt(len(n) / max(len(n) - fit.n_params(), 1))
        for _ in range(self.n_bootstrap):
            y_star = fitted * np.exp(rng.choice(resid, size=len(n), replace=True))
            self._draws.append(_fit_form(fit.form, n, multi, y_star, w, net))
        tail = (1 - self.confidence) / 2
        for k in names:
            vals = np.array([self._params(d)[k] for d in self._draws], dtype=float)
            vals = vals[np.isfinite(vals)]
            if len(vals):
                self.param_intervals_[k] = (float(np.quantile(vals, tail)), float(np.quantile(vals, 1 - tail)))

    # -- using the fit ------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "form_"):
            raise RuntimeError("ScalingModel is not fitted yet: call fit() first")

    def predict(self, n_devices, nodes=1, return_interval: bool = False):
        """Throughput at n_devices (on `nodes` nodes); with return_interval, (pred, lo, hi) at `confidence`."""
        self._check()
        n = np.asarray(n_devices, dtype=float)
        multi = (np.broadcast_to(np.asarray(nodes, dtype=float), n.shape) > 1).astype(float)
        if multi.any() and not self.net_fitted_ and self.form_ != "power":
            # No multi-node job was seen: predict with the intra-node terms alone, an optimistic bound.
            multi = np.zeros_like(multi)
        pred = self._fit.predict(n, multi)
        if not return_interval:
            return pred
        if not self._draws:
            nan = np.full(np.shape(pred), math.nan)
            return pred, nan, nan.copy()
        sims = np.array([d.predict(n, multi) for d in self._draws])
        tail = (1 - self.confidence) / 2
        return pred, np.nanquantile(sims, tail, axis=0), np.nanquantile(sims, 1 - tail, axis=0)

    def efficiency(self, n_devices, nodes=1):
        """X(n) / (n * X1): 1 is perfect linear scaling."""
        self._check()
        n = np.asarray(n_devices, dtype=float)
        return self.predict(n, nodes) / (n * self._fit.x1)

    def speedup(self, n_devices, nodes=1):
        """X(n) / X(1)."""
        self._check()
        return self.predict(n_devices, nodes) / self._fit.x1


def _fit_one(key, frame, params: dict):
    try:
        return key, ScalingModel(**params).fit_frame(frame), None
    except InsufficientData as e:
        return key, None, str(e)


def fit_per_workload(observations, by: tuple[str, ...] = ("workload", "accelerator"), n_jobs: int = -1,
                     min_power_fraction: float | None = 0.99, **params) -> tuple[dict, dict]:
    """One ScalingModel per (workload, accelerator) group, fitted in parallel with joblib.

    observations: the agreed table (workload, accelerator, devices, nodes, power_limit_fraction, throughput,
    weight). Rows capped below `min_power_fraction` of the maximum power limit are left out (a cap slows a job
    down by a factor the scaling curve must not absorb; None keeps all). Returns (models, skipped): key ->
    fitted model, and key -> the InsufficientData message for groups below the minimum.
    """
    from joblib import Parallel, delayed

    obs = observations
    if min_power_fraction is not None and "power_limit_fraction" in obs:
        frac = obs["power_limit_fraction"]
        obs = obs[frac.isna() | (frac >= min_power_fraction)]
    groups = [(k if isinstance(k, tuple) else (k,), g) for k, g in obs.groupby(list(by), sort=True)]
    if not groups:
        return {}, {}
    results = Parallel(n_jobs=n_jobs, prefer="processes" if len(groups) > 8 else "threads")(
        delayed(_fit_one)(k, g, params) for k, g in groups)
    models = {k: m for k, m, _ in results if m is not None}
    skipped = {k: why for k, m, why in results if m is None}
    return models, skipped
