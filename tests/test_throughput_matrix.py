"""ThroughputMatrix: low-rank completion recovers hidden entries; uncertainty; minimum data; pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from analyzer.minimums import InsufficientData
from analyzer.models.observations import observations
from analyzer.models.throughput import ThroughputMatrix

W, A = 12, 6


def _truth(seed=3):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, W)
    b = np.linspace(0, 1.5, A)
    u, v = rng.normal(0, 0.5, W), rng.normal(0, 0.5, A)
    return 2 + a[:, None] + b[None, :] + np.outer(u, v)  # log throughput: effects + a rank-1 interaction


HIDDEN = {(i, (2 * i) % A) for i in range(W)}  # one unobserved type per workload


def _obs(L, noise=0.02, seed=1, hidden=HIDDEN):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(W):
        for j in range(A):
            if (i, j) in hidden:
                continue
            for _ in range(3):
                rows.append({"workload": f"w{i}", "accelerator": f"a{j}", "devices": 1, "power_limit_fraction": 1.0,
                             "throughput": float(np.exp(L[i, j] + rng.normal(0, noise))), "weight": 600.0})
    return pd.DataFrame(rows)


def test_recovers_hidden_entries():
    L = _truth()
    m = ThroughputMatrix().fit(_obs(L))
    assert m.rank_ >= 1  # the interaction is real: cross-validation keeps a factor
    for i, j in HIDDEN:
        got = m.predict(f"w{i}", f"a{j}")
        assert abs(np.log(got) - L[i, j]) < 0.12, (i, j)  # within ~12 %
        assert not m.observed_.at[f"w{i}", f"a{j}"]
    # observed entries stay what was measured (mean of three noisy runs)
    assert abs(np.log(m.matrix_.at["w0", "a1"]) - L[0, 1]) < 0.04


def test_uncertainty_larger_for_completed():
    m = ThroughputMatrix().fit(_obs(_truth()))
    unc, obs = m.uncertainty_.to_numpy(), m.observed_.to_numpy()
    assert unc[~obs].min() > unc[obs].max()
    assert 0.005 < np.median(unc[obs]) < 0.03  # noise 0.02 / sqrt(3) = 0.012
    mean, std = m.predict("w0", "a0", return_std=True)  # hidden: (0, 0)
    lo, hi = m.interval("w0", "a0")
    assert lo < mean < hi and std == m.uncertainty_.at["w0", "a0"] > 0.05


def test_workload_on_one_type_only_gets_completion():
    L = _truth()
    df = _obs(L)
    df = df[(df.workload != "w3") | (df.accelerator == "a2")]  # w3 seen on a2 alone
    m = ThroughputMatrix().fit(df)
    assert m.observed_.loc["w3"].sum() == 1
    for j in range(A):
        mean, std = m.predict("w3", f"a{j}", return_std=True)
        assert np.isfinite(mean)
        if j != 2:
            assert std > m.uncertainty_.at["w3", "a2"]
            assert abs(np.log(mean) - L[3, j]) < 3 * std + 0.05  # the completion is honest about its spread
    # unknown workloads are NaN, not invented
    assert np.isnan(m.predict("nope", "a0"))


def test_other_counts_and_caps_are_not_mixed_in():
    L = _truth()
    df = _obs(L)
    noise = pd.DataFrame({"workload": ["w0", "w0"], "accelerator": ["a1", "a1"], "devices": [8, 1],
                          "power_limit_fraction": [1.0, 0.5], "throughput": [1e6, 1e6], "weight": [1.0, 1.0]})
    m = ThroughputMatrix().fit(pd.concat([df, noise]))
    assert abs(np.log(m.matrix_.at["w0", "a1"]) - L[0, 1]) < 0.04


def test_insufficient_data():
    one_type = pd.DataFrame({"workload": ["a", "b", "c"], "accelerator": ["x", "x", "x"], "throughput": [1, 2, 3]})
    with pytest.raises(InsufficientData, match=r"3 observed .* on 1 accelerator type"):
        ThroughputMatrix().fit(one_type)
    two = pd.DataFrame({"workload": ["a", "a"], "accelerator": ["x", "y"], "throughput": [1.0, 2.0]})
    with pytest.raises(InsufficientData, match="need at least 3 cells"):
        ThroughputMatrix().fit(two)
    assert ThroughputMatrix.MIN_POINTS == 3


def test_pickle_round_trip():
    m = ThroughputMatrix(max_rank=2).fit(_obs(_truth()))
    m2 = pickle.loads(pickle.dumps(m))
    pd.testing.assert_frame_equal(m.matrix_, m2.matrix_)
    pd.testing.assert_frame_equal(m.uncertainty_, m2.uncertainty_)
    assert m2.get_params()["max_rank"] == 2 and m2.rank_ == m.rank_


def test_observations_from_job_table():
    jt = pd.DataFrame({
        "job": ["1", "2", "3", "4"], "workload": ["bert", "bert", "", "bert"],
        "accelerator": ["A100", "V100", "A100", ""], "gpus": [4, 1, 1, 0], "nodes": [1, 1, 1, 1],
        "power_limit_watts": [300.0, 250.0, 400.0, np.nan], "power_limit_max_watts": [400.0, 250.0, 400.0, np.nan],
        "throughput": [120.0, 30.0, 5.0, 9.0], "unit": ["samples", "samples", "samples", "samples"],
        "duration_seconds": [3600.0, 600.0, 60.0, 60.0], "power_watts_mean": [280.0, 240.0, 100.0, np.nan],
    })
    o = observations(jt)
    assert list(o.workload) == ["bert", "bert"]  # no workload / no accelerator: not a speed observation
    assert list(o.devices) == [4, 1] and list(o.nodes) == [1, 1]
    assert list(o.power_limit_fraction) == [0.75, 1.0]
    assert list(o.weight) == [3600.0, 600.0] and list(o.power_watts) == [280.0, 240.0]
    assert observations(jt.iloc[:0]).empty
