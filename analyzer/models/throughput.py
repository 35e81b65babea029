"""ThroughputMatrix: workload x accelerator-type throughput, observed where seen, completed elsewhere.

Entries are log per-device throughput at the reference configuration (``reference_devices`` accelerators,
uncapped power). The log matrix is modelled as  mu + a_w + b_t + U_w . V_t  (workload and type effects plus a
low-rank interaction, as in Gavel) and fitted by ridge alternating least squares on the observed cells only;
the rank is chosen by K-fold cross-validation over observed cells. Rank 0 is "every workload gains the same
factor from a faster type", which is what a workload seen on one type alone can be predicted from.

Uncertainty (log units, ~ relative standard error): observed cells get their standard error of the mean
(pooled within-cell spread / sqrt(n)); completed cells get the cross-validated completion error, inflated
when their row or column has few observations, plus that measurement noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from analyzer.minimums import InsufficientData

FULL_POWER = 0.95  # power_limit_fraction at or above this counts as uncapped


def _ridge(factors: np.ndarray, y: np.ndarray, bias_reg: float, reg: float) -> tuple[float, np.ndarray]:
    """One ALS half-step for a row or column: its effect and factor vector by ridge regression."""
    X = np.hstack([np.ones((len(y), 1)), factors])
    R = np.diag([bias_reg] + [reg] * factors.shape[1])
    sol = np.linalg.solve(X.T @ X + R, X.T @ y)
    return sol[0], sol[1:]

def _als(Y: np.ndarray, mask: np.ndarray, rank: int, reg: float, iters: int,
         seed: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit Y ~ mu + a[:, None] + b[None, :] + U @ V.T on mask; returns (mu, a, b, U, V)."""
    n, m = Y.shape
    rng = np.random.default_rng(seed)
    mu = float(Y[mask].mean())
    a, b = np.zeros(n), np.zeros(m)
    U = 0.1 * rng.standard_normal((n, rank))
    V = 0.1 * rng.standard_normal((m, rank))
    bias_reg = reg * 0.01  # effects are what the data is mostly about; shrink them far less than interactions
    for _ in range(iters):
        for i in range(n):
            cols = mask[i]
            if not cols.any():
                a[i], U[i] = 0.0, 0.0
                continue
            a[i], U[i] = _ridge(V[cols], Y[i, cols] - mu - b[cols], bias_reg, reg)
        for j in range(m):
            rows = mask[:, j]
            if not rows.any():
                b[j], V[j] = 0.0, 0.0
                continue
            b[j], V[j] = _ridge(U[rows], Y[rows, j] - mu - a[rows], bias_reg, reg)
        mu_shift = float((Y - (mu + a[:, None] + b[None, :] + U @ V.T))[mask].mean())
        mu += mu_shift
    return mu, a, b, U, V


class ThroughputMatrix(BaseEstimator):
    """Workload x accelerator throughput with low-rank completion and a per-entry uncertainty.

    Minimum: MIN_POINTS observed (workload, accelerator) cells over at least MIN_ACCELERATORS types;
    below that fit() raises InsufficientData.
    """

    MIN_POINTS = 3
    MIN_ACCELERATORS = 2

    def __init__(self, max_rank: int = 3, reg: float = 0.1, n_folds: int = 5, iters: int = 60,
                 reference_devices: int = 1, random_state: int = 0):
        self.max_rank = max_rank
        self.reg = reg
        self.n_folds = n_folds
        self.iters = iters
        self.reference_devices = reference_devices
        self.random_state = random_state

    # ---------------------------------------------------------------- data

    def _cells(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.reset_index(drop=True)
        df = pd.DataFrame({"workload": X["workload"].astype(str), "accelerator": X["accelerator"].astype(str),
                           "throughput": pd.to_numeric(X["throughput"], errors="coerce")})
        df["weight"] = pd.to_numeric(X["weight"], errors="coerce").fillna(1.0) if "weight" in X else 1.0
        keep = np.ones(len(df), dtype=bool)
        if "devices" in X:
            # per-device throughput at the reference count; other counts belong to the scaling model
            keep &= (pd.to_numeric(X["devices"], errors="coerce") == self.reference_devices).to_numpy()
        if "power_limit_fraction" in X:
            f = pd.to_numeric(X["power_limit_fraction"], errors="coerce")
            keep &= (f.isna() | (f >= FULL_POWER)).to_numpy()
        df = df[keep]
        df = df[(df.workload != "") & (df.accelerator != "") & np.isfinite(df.throughput) & (df.throughput > 0)]
        df = df.assign(y=np.log(df.throughput / self.reference_devices), weight=df.weight.clip(lower=1e-9))

        def agg(g: pd.DataFrame) -> pd.Series:
            w = g.weight.to_numpy()
            mean = float(np.average(g.y, weights=w))
            var = float(np.average((g.y - mean) ** 2, weights=w)) * len(g) / (len(g) - 1) if len(g) > 1 else np.nan
            return pd.Series({"y": mean, "n": len(g), "var": var})

        return df.groupby(["workload", "accelerator"]).apply(agg, include_groups=False).reset_index()

    # ---------------------------------------------------------------- fit

    def _cv_rmse(self, Y: np.ndarray, mask: np.ndarray, rank: int) -> float:
        idx = np.argwhere(mask)
        rng = np.random.default_rng(self.random_state)
        folds = rng.permutation(len(idx)) % max(2, min(self.n_folds, len(idx)))
        errs = []
        for k in np.unique(folds):
            test = idx[folds == k]
            m = mask.copy()
            m[test[:, 0], test[:, 1]] = False
            if not m.any():
                continue
            mu, a, b, U, V = _als(Y, m, rank, self.reg, self.iters, self.random_state)
            pred = mu + a[test[:, 0]] + b[test[:, 1]] + np.sum(U[test[:, 0]] * V[test[:, 1]], axis=1)
            errs.extend(pred - Y[test[:, 0], test[:, 1]])
        return float(np.sqrt(np.mean(np.square(errs)))) if errs else float("inf")

    def fit(self, X: pd.DataFrame, y: None = None) -> ThroughputMatrix:
        cells = self._cells(X)
        self.min_points = self.MIN_POINTS
        n_acc = cells.accelerator.nunique() if len(cells) else 0
        if len(cells) < self.MIN_POINTS or n_acc < self.MIN_ACCELERATORS:
            raise InsufficientData(
                f"{len(cells)} observed (workload, accelerator) cell(s) on {n_acc} accelerator type(s) at "
                f"{self.reference_devices} device(s) and full power; need at least {self.MIN_POINTS} cells on "
                f"{self.MIN_ACCELERATORS} types")
        self.workloads_ = sorted(cells.workload.unique())
        self.accelerators_ = sorted(cells.accelerator.unique())
        wi = {w: i for i, w in enumerate(self.workloads_)}
        ai = {a: j for j, a in enumerate(self.accelerators_)}
        n, m = len(self.workloads_), len(self.accelerators_)
        Y = np.zeros((n, m))
        mask = np.zeros((n, m), dtype=bool)
        counts = np.zeros((n, m), dtype=int)
        for r in cells.itertuples():
            i, j = wi[r.workload], ai[r.accelerator]
            Y[i, j], mask[i, j], counts[i, j] = r.y, True, int(r.n)

        ranks = range(0, max(0, min(self.max_rank, n - 1, m - 1)) + 1)
        self.cv_rmse_ = {r: self._cv_rmse(Y, mask, r) for r in ranks} if mask.sum() >= 2 else {0: float("nan")}
        finite = {r: e for r, e in self.cv_rmse_.items() if np.isfinite(e)}
        # smallest rank within 2% of the best: extra factors must earn their keep
        best = min(finite.values()) if finite else float("nan")
        self.rank_ = min(r for r, e in finite.items() if e <= best * 1.02) if finite else 0
        mu, a, b, U, V = _als(Y, mask, self.rank_, self.reg, self.iters, self.random_state)
        full = mu + a[:, None] + b[None, :] + U @ V.T
        full[mask] = Y[mask]  # an observed cell is its own best estimate

        # measurement noise: pooled within-cell variance of log throughput
        var = cells["var"].dropna()
        dof = cells.loc[var.index, "n"] - 1
        noise = math.sqrt(float((var * dof).sum() / dof.sum())) if len(var) and dof.sum() > 0 else 0.0
        completion = finite.get(self.rank_, float("nan")) if finite else float("nan")
        if not np.isfinite(completion):
            completion = float(np.std(Y[mask])) if mask.sum() > 1 else 1.0
        row_n, col_n = mask.sum(axis=1), mask.sum(axis=0)
        unc = np.empty((n, m))
        for i in range(n):
            for j in range(m):
                if mask[i, j]:
                    unc[i, j] = noise / math.sqrt(counts[i, j]) if noise > 0 else 0.0
                else:
                    inflate = 1.0 + 1.0 / max(row_n[i], 0.5) + 1.0 / max(col_n[j], 0.5)
                    unc[i, j] = math.sqrt(completion ** 2 * inflate + noise ** 2)
        self.log_matrix_ = pd.DataFrame(full, index=self.workloads_, columns=self.accelerators_)
        self.matrix_ = np.exp(self.log_matrix_)
        self.uncertainty_ = pd.DataFrame(unc, index=self.workloads_, columns=self.accelerators_)
        self.observed_ = pd.DataFrame(mask, index=self.workloads_, columns=self.accelerators_)
        self.noise_ = noise
        self.n_train_ = int(cells.n.sum())
        self.score_ = completion  # cross-validated RMSE of log throughput on held-out observed cells
        return self

    # ---------------------------------------------------------------- predict

    def predict(self, workload: str | pd.DataFrame, accelerator: str | None = None,
                return_std: bool = False) -> float | np.ndarray | tuple:
        """Per-device throughput of workload on accelerator (units/s), with its log-scale standard error when
        return_std. Given a DataFrame with workload and accelerator columns, arrays; unknown entries are NaN."""
        if isinstance(workload, pd.DataFrame):
            pairs = list(zip(workload["workload"].astype(str), workload["accelerator"].astype(str), strict=True))
            res = [self._one(w, a) for w, a in pairs]
            mean = np.array([r[0] for r in res])
            std = np.array([r[1] for r in res])
            return (mean, std) if return_std else mean
        mean, std = self._one(str(workload), str(accelerator))
        return (mean, std) if return_std else mean

    def _one(self, workload: str, accelerator: str) -> tuple[float, float]:
        if workload not in self.matrix_.index or accelerator not in self.matrix_.columns:
            return float("nan"), float("nan")
        return float(self.matrix_.at[workload, accelerator]), float(self.uncertainty_.at[workload, accelerator])

    def interval(self, workload: str, accelerator: str, z: float = 1.96) -> tuple[float, float]:
        """Approximate (low, high) throughput interval: log-normal with the entry's uncertainty."""
        mean, std = self._one(workload, accelerator)
        return mean * math.exp(-z * std), mean * math.exp(z * std)

    def speed_ratio(self, workload: str, accelerator: str, reference: str) -> float:
        """How many times faster `accelerator` runs `workload` than `reference` does."""
        return self._one(workload, accelerator)[0] / self._one(workload, reference)[0]
