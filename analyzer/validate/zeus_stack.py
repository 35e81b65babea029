"""The cross-type estimator that validate zeus scores: a blend of the structural model and the per-workload-ratio
baseline, corrected on the profiled points by a small Gaussian process, with every setting chosen by nested
leave-one-type-out on the training types.

log t = w_eff * log t_structural + (1 - w_eff) * log t_per_workload_ratio + c(b, P)

- w_eff = weight * exp(-fade * e): the structural model's weight, faded toward the baseline with e, how far the
  configuration lies outside what the training types measured (zeus_fold: octaves of batch size, tenths of
  relative limit). With weight 0 the estimator is the baseline; the structural model has to earn its weight on
  types it was not tuned on.
- c(b, P): the posterior mean of a Gaussian process fitted to the blend's log errors at the K profiled points of
  the workload, with the kernel offset_sd^2 + local_sd^2 * exp(-d^2 / 2) over d^2 = (dlog2 b / batch_scale)^2 +
  (d relative limit / limit_scale)^2, and NOISE_SD measurement noise. The constant part is a per-workload speed
  correction learnt from all K points; the local part corrects near the profiled points only. Both shrink to 0
  (the blend) when the points are few or noisy. With K = 1 the blend already passes through the anchor, so c = 0.
- The stated 90 % interval: log t +- q * sqrt(gp variance + NOISE_SD^2 + (spread * e)^2); spread and q are
  chosen on the inner folds (the narrowest interval that covers 90 % there), so it widens where the model
  extrapolates.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, astuple, dataclass

import numpy as np
import pandas as pd

from analyzer.validate.zeus import ZeusDataError
from analyzer.validate.zeus_fold import Fold, draws, make_fold, profiled_mask, profiled_mean, ratio_baselines

NOISE_SD = 0.05  # log-time noise between neighbouring configurations (Zeus: +-5 % between adjacent caps, no trend)
COVERAGE = 0.9


@dataclass(frozen=True)
class Params:
    weight: float = 1.0
    fade: float = 0.0
    offset_sd: float = 0.0
    local_sd: float = 0.0
    batch_scale: float = 2.0
    limit_scale: float = 0.3
    spread: float = 0.0
    q: float = 1.645


# The candidates nested leave-one-type-out chooses among: the blend first, the correction second.
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
FADES = (0.0, 0.5, 2.0)
OFFSET_SDS = (0.0, 0.1, 0.3, 1.0)
LOCAL_SDS = (0.0, 0.1, 0.3, 1.0)
BATCH_SCALES = (1.0, 3.0)
LIMIT_SCALES = (0.15, 0.5)
SPREADS = (0.0, 0.05, 0.1, 0.2)


class Design:
    """A fold's profiled draws, with the squared distances the Gaussian process needs, computed once."""

    def __init__(self, fold: Fold, profiled: int, seeds: int):
        self.fold = fold
        # with K = 1 every draw profiles the same anchors: one draw stands for all of them
        self.picks = draws(fold, profiled, seeds if profiled > 1 else 1)
        self.mask = profiled_mask(fold, self.picks)
        self.global_ratio, self.per_workload_ratio = ratio_baselines(fold, self.mask)
        self.log_struct, self.log_ratio = np.log(fold.struct_time), np.log(self.per_workload_ratio)
        self.log_actual = np.log(fold.actual)
        lb = np.log2(fold.held.batch_size.to_numpy(float))
        rel = fold.held.relative_limit.to_numpy(float)
        self.parts = []
        for w, p in enumerate(self.picks):
            rows = np.flatnonzero(fold.workload_index == w)
            pp = [(x[p][:, :, None] - x[p][:, None, :]) ** 2 for x in (lb, rel)]  # picks x picks
            rp = [(x[rows][None, :, None] - x[p][:, None, :]) ** 2 for x in (lb, rel)]  # rows x picks
            self.parts.append((rows, p, *pp, *rp))

    def correction(self, params: Params) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per workload (rows, profiled picks, H, var): the Gaussian process's posterior mean at the workload's
        rows is H @ (errors at the picks), its variance var; both depend on the kernel only, not on the blend."""
        c2, l2 = params.offset_sd ** 2, params.local_sd ** 2
        out = []
        for rows, p, db_pp, dp_pp, db_rp, dp_rp in self.parts:
            if c2 + l2 == 0:
                out.append((rows, p, None, np.zeros((p.shape[0], len(rows)))))
                continue
            scale = (params.batch_scale ** 2, params.limit_scale ** 2)
            kpp = c2 + l2 * np.exp(-0.5 * (db_pp / scale[0] + dp_pp / scale[1])) + NOISE_SD ** 2 * np.eye(p.shape[1])
            ks = c2 + l2 * np.exp(-0.5 * (db_rp / scale[0] + dp_rp / scale[1]))  # (seeds, rows, K)
            h = np.linalg.solve(kpp, ks.transpose(0, 2, 1)).transpose(0, 2, 1)  # kpp symmetric: ks @ inv(kpp)
            out.append((rows, p, h, c2 + l2 - np.einsum("snk,snk->sn", h, ks)))
        return out

    def predict(self, params: Params, correction: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(log time, log sd), each (seeds, n); `correction` is self.correction(params), passed in to reuse."""
        f = self.fold
        w_eff = params.weight * np.exp(-params.fade * f.extrapolation)
        blend = w_eff * self.log_struct + (1 - w_eff) * self.log_ratio
        resid = self.log_actual - blend
        seeds = np.arange(blend.shape[0])[:, None]
        var = np.zeros_like(blend)
        for rows, p, h, v in correction if correction is not None else self.correction(params):
            if h is not None:
                blend[:, rows] += np.einsum("snk,sk->sn", h, resid[seeds, p])
                var[:, rows] = v
        sd = np.sqrt(np.maximum(var, 0) + NOISE_SD ** 2 + (params.spread * f.extrapolation) ** 2)
        return blend, sd

    def power(self) -> np.ndarray:
        """(seeds, n) average power: the structural model's, times each workload's geometric-mean ratio of
        measured to predicted power at its profiled points."""
        f = self.fold
        lr = np.log(f.held.average_power.to_numpy(float) / f.struct_power)
        return f.struct_power * np.exp(profiled_mean(f, self.mask, lr))


def seed_mape(pred: np.ndarray, actual: np.ndarray, test: np.ndarray) -> np.ndarray:
    """MAPE of each draw (row of pred) over its test (unprofiled) configurations."""
    err = np.abs(pred - actual) / actual
    return (err * test).sum(axis=1) / test.sum(axis=1)


def _blend_grid() -> list[tuple[float, float]]:
    # fading the baseline toward itself changes nothing: weight 0 needs no fade
    return [(w, f) for w, f in itertools.product(WEIGHTS, FADES) if w > 0 or f == 0]


def _kernel_grid() -> list[Params]:
    out = []
    for c, loc in itertools.product(OFFSET_SDS, LOCAL_SDS):
        scales = itertools.product(BATCH_SCALES, LIMIT_SCALES) if loc > 0 else [(2.0, 0.3)]
        out += [Params(0.0, 0.0, c, loc, bs, ls) for bs, ls in scales]
    return out


@dataclass
class Choice:
    params: Params
    margin: float  # log-slowdown margin of the power-cap decision
    inner: dict  # what the inner folds scored with the choice


def choose(data: pd.DataFrame, train_types: list[str], profiled: int, seeds: int,
           designs: dict | None = None) -> Choice:
    """Every setting by leave-one-type-out among train_types only: the blend and the correction by the inner
    folds' mean MAPE; the interval's spread and q by the narrowest interval covering 90 % of the inner folds'
    errors; the power-cap margin by the largest inner saving with at most 5 % of choices over budget on every
    inner fold. With fewer than two training types there is nothing to nest: the defaults stand."""
    from analyzer.validate.zeus_powercap import MARGINS, decide

    if len(train_types) < 2:
        return Choice(Params(), 0.0, {})
    designs = {} if designs is None else designs
    inner = []
    for t in train_types:
        key = (tuple(sorted(train_types)), t, profiled, seeds)
        if key not in designs:
            try:
                designs[key] = Design(make_fold(data[data.gpu.isin(train_types)], t), profiled, seeds)
            except ZeusDataError:  # a training type with no anchor cannot be an inner fold
                continue
        inner.append(designs[key])
    if not inner:
        return Choice(Params(), 0.0, {})
    tests = [~d.mask for d in inner]

    scores: dict[Params, float] = {}
    # With K = 1 the kernel cannot move the mean (the blend passes through the one point), so the blend is
    # scored once and every kernel ties; the interval step below chooses among them.
    for kernel in _kernel_grid() if profiled > 1 else [Params()]:
        corrections = [d.correction(kernel) for d in inner]
        for weight, fade in _blend_grid():
            p = Params(weight, fade, *astuple(kernel)[2:])
            scores[p] = float(np.mean([seed_mape(np.exp(d.predict(p, c)[0]), d.fold.actual, t).mean()
                                       for d, c, t in zip(inner, corrections, tests, strict=True)]))
    best = min(scores, key=scores.get)
    inner_mape = scores[best]
    # The interval: among the settings whose inner MAPE ties the best (with K = 1 every kernel does: the blend
    # already passes through the anchor) and each spread, the q that covers 90 % of the inner folds' errors;
    # keep the narrowest such interval.
    cal = []
    tied_best = [p for p, v in scores.items() if v <= inner_mape + 1e-12]
    if profiled == 1:
        tied_best = [Params(best.weight, best.fade, *astuple(k)[2:]) for k in _kernel_grid()]
    for tied in tied_best:
        fits = [d.predict(Params(**{**asdict(tied), "spread": 0.0})) for d in inner]
        for spread in SPREADS:
            z, sds = [], []
            for d, t, (lm, sd0) in zip(inner, tests, fits, strict=True):
                sd = np.sqrt(sd0 ** 2 + (spread * d.fold.extrapolation) ** 2)
                z.append((np.abs(d.log_actual - lm) / sd)[t])
                sds.append(sd[t])
            q = float(np.quantile(np.concatenate(z), COVERAGE))
            cal.append((q * float(np.mean(np.concatenate(sds))), len(cal),
                        Params(**{**asdict(tied), "spread": spread, "q": q})))
    best = min(cal)[2]
    # power-cap margin
    preds = [(d, np.exp(d.predict(best)[0]), d.power()) for d in inner]
    feasible = []
    for margin in MARGINS:
        res = [decide(d.fold, t, pw, margin) for d, t, pw in preds]
        if max(r["over_budget_share"] for r in res) <= 0.05:
            feasible.append((float(np.mean([r["energy_saving"] for r in res])), -margin, margin))
    margin = max(feasible)[2] if feasible else MARGINS[-1]
    return Choice(best, margin, {"mape": inner_mape, "folds": [d.fold.holdout for d in inner]})
