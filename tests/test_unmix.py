"""analyzer.unmix: per-occupant values recovered from a unit's coarse means, worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.unmix import unmix


def test_exclusive_unit_recovers_each_jobs_constant():
    """One GPU, 4 hours: job 0 holds it for hour 0 and half of hour 1, job 1 for the other half of hour 1
    and a quarter of hour 2; the rest is idle at 60 W. Jobs draw 300 W and 200 W."""
    unit = np.array([0, 0, 0, 0])
    occupant = np.array([0, 0, 1, 1])
    hour = np.array([0, 1, 1, 2])
    frac = np.array([1.0, 0.5, 0.5, 0.25])
    means = np.array([300.0, 250.0, 0.25 * 200 + 0.75 * 60, 60.0])
    x, b = unmix(unit, occupant, hour, frac, np.zeros(4, int), np.arange(4), means, additive=False, n_occupants=3)
    # exact data: the ridge only moves the answer by its weight times the prior's disagreement
    assert x[0, 0] == pytest.approx(300.0, rel=0.01) and x[1, 0] == pytest.approx(200.0, rel=0.02)
    assert b[0][0] == pytest.approx(60.0, rel=0.02)
    assert math.isnan(x[2, 0])  # never on an observed hour


def test_additive_unit_with_an_unobserved_hour_and_two_metrics():
    """A host: job 0 all of hours 0-2 at 100 B/s, job 1 hours 1-2 at 50 B/s, background 10 B/s; hour 2's
    second metric was not observed (NaN) and must not count."""
    unit = np.zeros(5, int)
    occupant = np.array([0, 0, 0, 1, 1])
    hour = np.array([0, 1, 2, 1, 2])
    frac = np.ones(5)
    first = np.array([110.0, 160.0, 160.0])
    second = np.array([11.0, 16.0, np.nan])
    x, b = unmix(unit, occupant, hour, frac, np.zeros(3, int), np.arange(3), np.column_stack([first, second]),
                 additive=True, n_occupants=2)
    # job 1 is always with job 0: x1 is pinned by hour 0 vs hours 1-2 (50 exactly); x0 and b only as a sum
    assert x[1, 0] == pytest.approx(50.0, rel=0.02)
    assert x[0, 0] + b[0][0] == pytest.approx(110.0, rel=0.01)
    assert x[1, 1] == pytest.approx(5.0, rel=0.05) and x[0, 1] + b[0][1] == pytest.approx(11.0, rel=0.02)


def test_nothing_observed_gives_nan():
    x, b = unmix(np.array([0]), np.array([0]), np.array([5]), np.array([1.0]), np.array([1]), np.array([5]),
                 np.array([1.0]), additive=True, n_occupants=1)
    assert math.isnan(x[0, 0]) and b == {}
