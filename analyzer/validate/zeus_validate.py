"""`fleetwise validate zeus`: leave one GPU type out, profile K configurations per workload on it, predict the rest.

Everything the estimator uses is chosen by nested leave-one-type-out on the other types (zeus_stack.choose);
the held-out type is only scored. Figures are averaged over `seeds` draws of the K - 1 extra profiled points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from analyzer.validate.zeus import load
from analyzer.validate.zeus_fold import make_fold
from analyzer.validate.zeus_powercap import decide
from analyzer.validate.zeus_stack import Design, choose, seed_mape


def validate(data_dir: str | Path, holdout: str, profiled: int = 1, seeds: int = 20, detail: bool = False,
             data=None, progress: Callable[[str], None] | None = None) -> dict:
    """{"holdout", "profiled", "seeds", "n", "mape": {"model", "global_ratio", "per_workload_ratio"},
    "power_cap": {...}}; with detail also per-workload MAPEs, the 90 % interval's coverage, power MAPE and
    what nested validation chose."""
    if profiled < 1:
        raise ValueError(f"--profiled must be at least 1, got {profiled}")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    data = load(data_dir) if data is None else data
    fold = make_fold(data, holdout)
    train_types = sorted(set(data.gpu) - {fold.holdout})
    choice = choose(data, train_types, profiled, seeds, progress=progress)
    design = Design(fold, profiled, seeds)
    log_t, sd = design.predict(choice.params)
    pred = np.exp(log_t)
    actual = fold.actual
    test = ~design.mask
    preds = {"model": pred, "global_ratio": design.global_ratio, "per_workload_ratio": design.per_workload_ratio}
    power = design.power()
    result = {
        "holdout": fold.holdout,
        "profiled": profiled,
        "seeds": seeds,
        "n": round(float(test.sum(axis=1).mean())),
        "mape": {k: float(seed_mape(v, actual, test).mean()) for k, v in preds.items()},
        "power_cap": {k: v for k, v in decide(fold, pred, power, choice.margin).items() if k != "n_decisions"},
    }
    if not detail:
        return result
    inside = np.abs(np.log(actual) - log_t) <= choice.params.q * sd
    per_workload = {}
    for w, name in enumerate(fold.workloads):
        t = test & (fold.workload_index == w)[None, :]
        if not t.any():  # measured only at its anchor: nothing to predict
            continue
        per_workload[name] = {"n": round(float(t.sum(axis=1).mean()))} | {
            k: float(seed_mape(v, actual, t).mean()) for k, v in preds.items()} | {
            "coverage_90": float(inside[t].mean())}
    return result | {
        "per_workload": per_workload,
        "coverage_90": float(inside[test].mean()),
        "power_mape": float(seed_mape(power, fold.held.average_power.to_numpy(float), test).mean()),
        "chosen": asdict(choice.params) | {"power_cap_margin": choice.margin, "inner_mape": choice.inner.get("mape"),
                                           "inner_folds": choice.inner.get("folds")},
    }
