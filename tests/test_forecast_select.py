"""Structure selection for the capacity forecast: candidate structures computed by hand, the rolling-origin
folds, the choice rule, and a pool without structure getting the flat mean and saying so."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from analyzer.forecast import CapacityForecaster
from analyzer.forecast import select as sel
from analyzer.forecast import structures as st
from analyzer.forecast.structures import DAY_NS, Structure

HOUR_NS = DAY_NS // 24


def test_seasonal_naive_repeats_the_last_day_with_growing_intervals():
    # 6-hourly, three days each one higher than the day before: every one-day-ahead error is exactly +1.
    t = np.arange(12, dtype=np.int64) * 6 * HOUR_NS
    y = np.array([1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6], dtype=float)
    s = Structure(kind="snaive", period_days=1.0)
    m = st.fit(s, t, y, 0.9)
    future = t[-1] + 6 * HOUR_NS * np.arange(1, 9)
    mean, lo, hi = st.predict(s, m, future)
    assert mean.tolist() == [3, 4, 5, 6, 3, 4, 5, 6]
    # The error quantiles are both +1; the second day ahead carries two days' errors: x sqrt(2).
    assert lo[:4].tolist() == hi[:4].tolist() == [4, 5, 6, 7]
    assert hi[4:] == pytest.approx(np.array([3, 4, 5, 6]) + math.sqrt(2))
    with pytest.raises(ValueError, match="seasonal naive"):
        st.fit(s, t[:6], y[:6], 0.9)  # 1.25 days: nothing left to measure the errors on


def test_damped_trend_flattens_beyond_the_training_end():
    t = np.arange(72, dtype=np.int64) * HOUR_NS
    y = 10 + t / DAY_NS  # +1 per day, no noise
    lin, damped = Structure(trend="linear"), Structure(trend="damped", damping=0.5)
    ml, md = st.fit(lin, t, y, 0.9), st.fit(damped, t, y, 0.9)
    one_day, far = t[-1] + DAY_NS, t[-1] + 60 * DAY_NS
    y_last = 10 + 71 / 24
    assert st.predict(lin, ml, [one_day])[0][0] == pytest.approx(y_last + 1)
    # slope x (1 - 0.5^1) / ln 2 = 0.7213 after a day; at most slope / ln 2 = 1.4427 ever.
    assert st.predict(damped, md, [one_day])[0][0] == pytest.approx(y_last + 0.5 / math.log(2))
    assert st.predict(damped, md, [far])[0][0] == pytest.approx(y_last + 1 / math.log(2), abs=1e-6)
    # In-sample the two are the same line.
    assert st.predict(damped, md, t[:3])[0] == pytest.approx(st.predict(lin, ml, t[:3])[0])


def test_structure_names_and_sizes():
    assert Structure().name == "mean(all)" and Structure().n_params == 1
    assert Structure(window_days=7).name == "mean(last 7d)"
    assert Structure(kind="snaive", period_days=7).name == "seasonal naive(7d)"
    s = Structure(trend="linear", daily=2, weekly=1, alpha=1)
    assert s.name == "linear+daily2+weekly1 alpha=1" and s.n_params == 8 and not s.is_naive


def test_plan_and_folds_by_hand():
    # 21 days: the first origin 14 days in (weekly structures judged), the last a tenth of the history before
    # the end.
    assert sel.plan(21.0, 7.0) == (14.0, pytest.approx(2.1))
    # 10 days: no weekly fold; halfway, at most 7 days; 1 day (a tenth) left at the end.
    assert sel.plan(10.0, 7.0) == (4.5, 1.0)
    assert sel.plan(2.0, 7.0) is None  # 2 days: too short to cross-validate
    t = np.arange(241, dtype=np.int64) * HOUR_NS  # 10 days hourly
    folds = sel.folds(t, 4.5, 1.0, 7 * DAY_NS, 4)
    # Origins at 108, 144, 180, 216 h; each trains on what precedes it and tests up to 7 days on, or to the end.
    assert [int(tr.sum()) for tr, _ in folds] == [108, 144, 180, 216]
    assert [int(te.sum()) for _, te in folds] == [133, 97, 61, 25]  # the history ends at 240 h
    assert all(not (tr & te).any() and t[tr].max() < t[te].min() for tr, te in folds)


def test_candidates_respect_the_shortest_fold():
    short = sel.candidates(4.5, 1 / 24, ("daily", "weekly"), 4, 3, (None, "linear"), 1e-3)
    names = {c.name for c in short}
    assert {"mean(all)", "seasonal naive(1d)", "linear", "level+daily4 alpha=1"} <= names
    assert not any(c.weekly for c in short) and "seasonal naive(7d)" not in names
    assert "mean(last 7d)" not in names  # a 7-day window needs more than the 4.5-day first fold
    long = sel.candidates(14, 1 / 24, ("daily", "weekly"), 4, 3, (None, "linear", "damped"), 1e-3)
    assert {"seasonal naive(7d)", "mean(last 7d)", "damped(0.9/d)+daily2+weekly1 alpha=0.001"} <= {
        c.name for c in long}
    assert len({c for c in long}) == len(long)  # no candidate twice


def _score(s: Structure, mae: float) -> dict:
    return {"structure": s, "mae": mae, "wape": mae / 100}


def test_choice_rule():
    flat, trend = Structure(), Structure(trend="linear")
    seasonal = Structure(trend="linear", daily=4)
    # The best beats the flat mean by 10% only: under the 15% margin, the flat mean stays.
    assert sel.choose([_score(flat, 10.0), _score(trend, 9.0)], 0.02, 0.15)["structure"] == flat
    # By 20%: it wins; a simpler structure within 2% of it wins over it.
    got = sel.choose([_score(flat, 10.0), _score(trend, 8.1), _score(seasonal, 8.0)], 0.02, 0.15)
    assert got["structure"] == trend
    got = sel.choose([_score(flat, 10.0), _score(trend, 8.5), _score(seasonal, 8.0)], 0.02, 0.15)
    assert got["structure"] == seasonal


def test_pool_without_structure_gets_the_flat_mean_and_says_so():
    rng = np.random.default_rng(4)
    t = pd.date_range("2026-10-01", periods=21 * 24, freq="h", tz="UTC")
    # Level 50 with noise that persists for hours (AR(1), rho 0.9): nothing to forecast but the level.
    e = np.zeros(len(t))
    for i in range(1, len(t)):
        e[i] = 0.9 * e[i - 1] + rng.normal(0, 2)
    df = pd.DataFrame({"time": t, "pool": "gpu:H100", "demand": 50 + e, "capacity": 64.0})
    model = CapacityForecaster(horizon="7d").fit(df)
    m = model.pools_["gpu:H100"]
    assert m["model"] == "mean(all)" and m["note"].startswith("no structure forecast better than mean(all)")
    assert m["cv"]["skill"] == 0.0 and model.score_ == 0.0
    p = model.predict("7d")
    assert p["forecast"].to_numpy() == pytest.approx(np.full(168, df["demand"].mean()))
    s = model.summary("7d").iloc[0]
    assert s["structure"] == "mean(all)" and s["cv_wape"] == s["cv_wape_flat_mean"]
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.predict("7d"), p)


def test_trend_pool_gets_a_trend():
    rng = np.random.default_rng(5)
    t = pd.date_range("2026-10-01", periods=21 * 24, freq="h", tz="UTC")
    d = np.asarray((t - t[0]) / pd.Timedelta(days=1), dtype=float)
    df = pd.DataFrame({"time": t, "pool": "cpu:x86_64", "demand": 1000 + 20 * d + rng.normal(0, 20, len(d))})
    m = CapacityForecaster(horizon="7d").fit(df).pools_["cpu:x86_64"]
    assert m["structure"].trend in ("linear", "damped") and m["note"].startswith("beats the flat mean")
    # The flat mean trails a +20/day ramp by ~10.5 days x 20 = 210 on average over the folds' tests.
    assert m["cv"]["wape"] < 0.3 * m["cv"]["wape_flat_mean"]


def test_models_show_lists_each_pools_structure():
    from analyzer.show import _structures

    scores = {"gpu:A100": {"structure": "mean(all)", "wape": 0.2301, "wape_flat_mean": 0.2301},
              "cpu:x86_64": {"structure": "damped(0.9/d)", "wape": 0.104, "wape_flat_mean": 0.14}}
    assert _structures(scores, "  ") == ["  gpu:A100: mean(all) (CV WAPE 0.23, flat mean 0.23)",
                                         "  cpu:x86_64: damped(0.9/d) (CV WAPE 0.104, flat mean 0.14)"]
    assert _structures({"r2": 0.9}, "  ") == [] and _structures(None, "  ") == []
