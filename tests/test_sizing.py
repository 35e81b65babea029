"""Sizing estimators (analyzer.recommend.sizing): fleetwise, KRR and VPA on histories worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.recommend.sizing import (
    METHODS,
    SizingSettings,
    VpaBuckets,
    estimate_size,
    estimate_sizes,
    grouped_weighted_quantile,
)

MINUTE = 60.0
NO_DECAY = 1e9  # hours: every sample weighs 1


def test_methods_are_the_three_named():
    assert METHODS == ("fleetwise", "krr", "vpa")


def test_grouped_weighted_quantile_is_the_inverse_weighted_cdf():
    # group 0: x 1..4 weights 1 each (total 4); group 1: x 10, 20 with weights 3, 1 (total 4).
    code = np.array([0, 0, 0, 0, 1, 1])
    x = np.array([3.0, 1.0, 4.0, 2.0, 20.0, 10.0])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0])
    # q=0.5: cumulative weight must reach 2 -> group 0 reaches it at x=2; group 1 reaches 3 >= 2 at x=10.
    assert grouped_weighted_quantile(code, x, w, 0.5, 2).tolist() == [2.0, 10.0]
    # q=0.8: reach 3.2 -> x=4 in group 0 (cum 4); group 1 needs 20 (cum 3 < 3.2).
    assert grouped_weighted_quantile(code, x, w, 0.8, 2).tolist() == [4.0, 20.0]
    assert grouped_weighted_quantile(code, x, w, 1.0, 2).tolist() == [4.0, 20.0]
    # An empty group gives NaN.
    assert math.isnan(grouped_weighted_quantile(code, x, w, 0.5, 3)[2])


def test_krr_memory_is_max_plus_15_percent():
    t = np.arange(100) * MINUTE
    v = np.arange(1, 101, dtype=float)            # max 100
    est = estimate_size(t, v, "krr", "memory")
    assert est.value == pytest.approx(115.0)
    assert est.peak == 100.0 and est.n == 100
    assert est.exceed_probability == 0.0


def test_krr_cpu_is_the_linear_95th_percentile():
    t = np.arange(100) * MINUTE
    v = np.arange(100, dtype=float)               # 0..99: rank 0.95 * 99 = 94.05 -> 94 + 0.05 * (95 - 94)
    est = estimate_size(t, v, "krr", "cpu")
    assert est.value == pytest.approx(94.05)
    # 5 of 100 samples (95..99) lie above 94.05
    assert est.exceed_probability == pytest.approx(0.05)
    assert "below observed peak" in est.reason


def test_krr_needs_100_points():
    est = estimate_size(np.arange(99) * MINUTE, np.ones(99), "krr", "cpu")
    assert est.value is None
    assert "100" in est.reason


def test_vpa_buckets_follow_the_exponential_scheme():
    b = VpaBuckets(1000.0, 0.01)
    # numBuckets = ceil(log(1000 * 0.05 / 0.01 + 1) / log 1.05) + 1 = ceil(174.56) + 1 = 176
    assert b.num == 176
    # bucket 1 starts at 0.01, bucket 2 at 0.01 * (1.05^2 - 1) / 0.05 = 0.0205
    assert b.start(np.array([0, 1, 2])).tolist() == pytest.approx([0.0, 0.01, 0.0205])
    # 1.0 core: floor(log(1 * 0.05 / 0.01 + 1) / log 1.05) = floor(36.72) = 36
    assert b.find(np.array([0.005, 0.01, 1.0])).tolist() == [0, 1, 36]


def test_vpa_cpu_target_is_the_end_of_the_p90_bucket_plus_15_percent():
    t = np.arange(20) * MINUTE
    v = np.full(20, 1.0)                          # every sample in bucket 36
    est = estimate_size(t, v, "vpa", "cpu")
    end = 0.01 * (1.05 ** 37 - 1) / 0.05          # the end of bucket 36 = the start of bucket 37
    assert est.value == pytest.approx(end * 1.15)
    assert end == pytest.approx(1.0163, abs=1e-4)  # 1.05^37 = 6.0814


def test_vpa_memory_uses_one_decayed_peak_per_day():
    day = 86400.0
    # Day 1 peaks at 1e9 bytes, day 2 at 2e9. Peaks are stamped at their window's end (t0+1d, t0+2d),
    # so with a 24 h half-life day 2 weighs twice day 1: weights 1 and 2 of 3; the 90th percentile
    # needs 2.7 and is reached in 2e9's bucket: floor(log(2e9 * 0.05 / 1e7 + 1) / log 1.05) = 49.
    t = np.concatenate([np.arange(0, day, 600.0), np.arange(day, 2 * day, 600.0)])
    v = np.where(t < day, 5e8, 1.5e9)
    v[10] = 1e9
    v[-5] = 2e9
    est = estimate_size(t, v, "vpa", "memory")
    end = 1e7 * (1.05 ** 50 - 1) / 0.05
    assert est.value == pytest.approx(end * 1.15)
    # Had VPA used every sample rather than daily peaks, p90 would sit in 1.5e9's bucket instead.
    assert end > 2e9


def test_vpa_applies_its_minimum_memory():
    est = estimate_size(np.arange(20) * MINUTE, np.full(20, 1e6), "vpa", "memory")
    assert est.value == 250 * 1024 * 1024


def test_fleetwise_on_a_flat_series_is_level_times_margin_and_short_history_widening():
    s = SizingSettings(half_life_hours=NO_DECAY, margin=0.5, spread_weight=0.25, short_history=1.0)
    est = estimate_size(np.arange(100) * MINUTE, np.full(100, 10.0), "fleetwise", "memory", s)
    # sustained = peak = 10; n_eff = 100 -> widening 1 + 1/10; size = 1.5 * 10 * 1.1
    assert est.value == pytest.approx(16.5)
    assert est.reason is None


def test_fleetwise_blends_sustained_level_and_peak_geometrically():
    v = np.ones(100)
    v[50] = 16.0
    s = SizingSettings(half_life_hours=NO_DECAY, margin=0.0, spread_weight=0.5, short_history=0.0)
    est = estimate_size(np.arange(100) * MINUTE, v, "fleetwise", "memory", s)
    # sustained mean = (99 + 16) / 100 = 1.15; size = sqrt(1.15 * 16) = 4.2895
    assert est.value == pytest.approx(math.sqrt(1.15 * 16))
    assert est.exceed_probability == pytest.approx(0.01)   # only the 16 lies above
    assert "below observed peak" in est.reason


def test_fleetwise_decay_weighs_recent_samples_more():
    # Two samples a half-life apart: the older weighs 1/2. Mean = (4 * 0.5 + 1 * 1) / 1.5 = 2.
    s = SizingSettings(half_life_hours=1.0, margin=0.0, spread_weight=0.0, short_history=0.0, min_points=2)
    est = estimate_size([0.0, 3600.0], [4.0, 1.0], "fleetwise", "memory", s)
    assert est.value == pytest.approx(2.0)
    # P_w(usage > 2) = weight of the 4 = 0.5 / 1.5
    assert est.exceed_probability == pytest.approx(1 / 3)


def test_too_little_history_gives_no_size_and_the_minimum():
    est = estimate_size(np.arange(9) * MINUTE, np.ones(9))
    assert est.value is None and est.n == 9
    assert "10" in est.reason


def test_batch_matches_one_series_at_a_time():
    rng = np.random.default_rng(3)
    ids = np.repeat(["a", "b", "c"], 150)
    t = np.tile(np.arange(150) * MINUTE, 3)
    v = rng.gamma(2.0, 1.0, 450)
    for method in METHODS:
        batch = estimate_sizes(ids, t, v, method, "cpu")
        for k, label in enumerate(batch["series"]):
            one = estimate_size(t[ids == label], v[ids == label], method, "cpu")
            assert batch["value"][k] == pytest.approx(one.value)


def test_defaults_per_resource_are_the_nested_validation_choices():
    from analyzer.recommend.sizing import default_settings

    assert (default_settings("memory").spread_weight, default_settings("memory").margin) == (0.25, 0.55)
    assert (default_settings("gpu").spread_weight, default_settings("gpu").margin) == (1.0, -0.475)
    assert default_settings("cpu") == default_settings("memory") == SizingSettings()
    # a GPU duty cycle sized at half its decayed peak: say so
    t = np.arange(50) * MINUTE
    est = estimate_size(t, np.where(np.arange(50) % 10 == 0, 80.0, 0.0), "fleetwise", "gpu",
                        default_settings("gpu"))
    assert est.value < 80.0 and "below observed peak" in est.reason


def test_bad_settings_and_names_are_refused():
    with pytest.raises(ValueError, match="spread_weight"):
        SizingSettings(spread_weight=2.0)
    with pytest.raises(ValueError, match="unknown sizing method"):
        estimate_size([0.0], [1.0], method="p99")
    with pytest.raises(ValueError, match="unknown resource"):
        estimate_size([0.0], [1.0], resource="disk")
