"""One leave-one-type-out fold of the Zeus data, and the protocol's random draws of profiled configurations.

A Fold holds everything about the held-out type that does not depend on which K - 1 extra configurations were
profiled: the structural model's time and power for every configuration (it needs only the anchors), the ratio
baselines' raw times, and how far each configuration lies outside what the training types measured. A draw
then only picks rows, so 20 seeds cost 20 boolean masks, not 20 refits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.validate.zeus import held_out, raw_baseline
from analyzer.validate.zeus_model import CrossTypeModel

BUDGET_STEP = 0.1  # relative-limit units that count as one "octave" of extrapolation below the trained caps


@dataclass
class Fold:
    holdout: str
    held: pd.DataFrame  # the held-out type's rows of workloads the training types measured, index 0..n-1
    anchor: np.ndarray  # bool: the K = 1 point of each workload
    struct_time: np.ndarray
    struct_power: np.ndarray
    struct_log_slowdown: np.ndarray  # the structural model's log power-cap slowdown (0 at the highest limit)
    raw: np.ndarray  # ratio baselines before their ratio
    extrapolation: np.ndarray  # octaves of batch size outside the training range + tenths of limit below it
    workload_index: np.ndarray  # int code of each row's workload (sorted names)
    workloads: list[str]

    @property
    def actual(self) -> np.ndarray:
        return self.held.time_per_epoch.to_numpy(float)


def _extrapolation(train: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
    """How far outside the training types' measurements each held-out row is: octaves of batch size beyond the
    range any training type measured for the workload, plus tenths of relative power limit below the lowest
    relative limit any training type was measured at."""
    out = np.zeros(len(held))
    rel_min = float(train.relative_limit.min())
    lb = np.log2(held.batch_size.to_numpy(float))
    for wl, g in train.groupby("workload"):
        m = (held.workload == wl).to_numpy()
        lo, hi = np.log2(g.batch_size.min()), np.log2(g.batch_size.max())
        out[m] = np.maximum(lo - lb[m], 0) + np.maximum(lb[m] - hi, 0)
    return out + np.maximum(rel_min - held.relative_limit.to_numpy(float), 0) / BUDGET_STEP


def make_fold(data: pd.DataFrame, holdout: str, train_types: list[str] | None = None) -> Fold:
    """The fold holding `holdout` out, trained on `train_types` (default: every other type in data)."""
    train, held, anchor = held_out(data, holdout, train_types)
    model = CrossTypeModel().fit(train)
    time, power, log_slowdown = model.predict(held[anchor], held)
    workloads = sorted(set(held.workload))
    return Fold(holdout.lower(), held, anchor, time, power, log_slowdown, raw_baseline(train, held),
                _extrapolation(train, held), held.workload.map({w: i for i, w in enumerate(workloads)}).to_numpy(int),
                workloads)


def draws(fold: Fold, profiled: int, seeds: int) -> list[np.ndarray]:
    """Per workload, a (seeds, K_w) array of row indices profiled in each draw: the anchor first, then
    K - 1 more of the workload's rows at random without replacement (K_w = K, or all but one row where the
    workload has fewer). Seed s draws with numpy's default_rng(s)."""
    if profiled < 1:
        raise ValueError("--profiled must be at least 1")
    rngs = [np.random.default_rng(s) for s in range(seeds)]
    out = []
    for w in range(len(fold.workloads)):
        rows = np.flatnonzero(fold.workload_index == w)
        a = rows[fold.anchor[rows]][0]
        rest = rows[rows != a]
        k = max(0, min(profiled - 1, len(rest) - 1))  # a workload keeps one row to predict, if it has one
        out.append(np.array([[a, *rng.choice(rest, size=k, replace=False)] for rng in rngs], dtype=int))
    return out


def profiled_mask(fold: Fold, picks: list[np.ndarray]) -> np.ndarray:
    """(seeds, n) bool: which rows each draw profiled."""
    seeds = picks[0].shape[0]
    mask = np.zeros((seeds, len(fold.held)), dtype=bool)
    for p in picks:
        np.put_along_axis(mask, p, True, axis=1)
    return mask


def profiled_mean(fold: Fold, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(seeds, n): for each draw and row, the mean of `values` over the profiled rows of the row's workload."""
    onehot = np.eye(len(fold.workloads))[fold.workload_index]  # (n, W)
    m = mask.astype(float)
    per_wl = (m * values) @ onehot / np.maximum(m @ onehot, 1)  # (seeds, W)
    return per_wl[:, fold.workload_index]


def ratio_baselines(fold: Fold, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(global_ratio, per_workload_ratio) predictions, each (seeds, n), from the profiled rows of each draw."""
    lr = np.log(fold.actual / fold.raw)
    glob = (mask * lr).sum(axis=1) / mask.sum(axis=1)
    return fold.raw * np.exp(glob)[:, None], fold.raw * np.exp(profiled_mean(fold, mask, lr))
