"""choose_every: the nice bucket width a figure asks the store for."""

from __future__ import annotations

import datetime as dt

import pytest

from agents.query import choose_every, parse_every

T0 = "2026-11-26T00:00:00Z"


def _after(seconds: float) -> str:
    return (dt.datetime(2026, 11, 26, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(("span_s", "max_points", "expect"), [
    (3600, 1000, "10s"),        # 1 h / 1000 = 3.6 s: the 10 s floor
    (3600, 360, "10s"),         # exactly 360 buckets of 10 s fit
    (3600, 359, "30s"),         # one fewer does not: the next rung
    (86_400, 1000, "5m"),       # 86.4 s -> 1m is too narrow (1440 > 1000), 5m gives 288
    (86_400, 1440, "1m"),       # exactly 1440 minutes
    (7 * 86_400, 800, "15m"),   # 756 s needed: 15m gives 672
    (7 * 86_400, 100, "3h"),    # 6048 s needed: 1h too narrow (168), 3h gives 56
    (30 * 86_400, 100, "12h"),  # 25920 s needed: 12h gives 60
    (30 * 86_400, 20, "2d"),    # 1.5 d needed
    (365 * 86_400, 60, "1w"),   # 6.08 d needed: 52.1 weeks
    (365 * 86_400, 20, "4w"),   # 18.25 d needed: 2w too narrow, 4w gives 13
    (3 * 365 * 86_400, 10, "16w"),  # 109.5 d needed, beyond the ladder: 4 x 28 d = 16 weeks
])
def test_nice_widths(span_s, max_points, expect):
    got = choose_every(T0, _after(span_s), max_points)
    assert got == expect
    assert span_s * 10**9 / parse_every(got) <= max_points


def test_min_every_is_a_floor_and_returned_when_wide_enough():
    assert choose_every(T0, _after(60), 1000, min_every="15s") == "15s"  # not on the ladder, still enough
    assert choose_every(T0, _after(3600), 100, min_every="15s") == "1m"  # 36 s needed: next rung above 15s
    assert choose_every(T0, _after(60), 1000, min_every=dt.timedelta(seconds=1)) == "1s"
    assert choose_every(T0, _after(3600), 1000, min_every="1h") == "1h"


def test_every_answer_is_the_narrowest_rung():
    """For many spans, the answer fits and the rung below it (when above the floor) would not."""
    from agents.query.downsample import NICE_NS

    floor = 10 * 10**9
    for span_s in (1, 59, 61, 999, 10_007, 99_991, 1_000_003, 9_999_991):
        for max_points in (1, 7, 100, 1920):
            every = parse_every(choose_every(T0, _after(span_s), max_points))
            assert span_s * 10**9 / every <= max_points
            lower = [n for n in (floor, *NICE_NS) if floor <= n < every]
            if lower and every in NICE_NS:
                assert span_s * 10**9 / max(lower) > max_points


@pytest.mark.parametrize(("kw", "problem"), [
    (dict(max_points=0), "positive integer"),
    (dict(max_points=True), "positive integer"),
    (dict(max_points=10.5), "positive integer"),
    (dict(max_points=10, min_every="ten seconds"), "bad interval"),
    (dict(max_points=10, end=T0), "not after"),
])
def test_bad_arguments(kw, problem):
    kw = {"start": T0, "end": _after(60), **kw}
    with pytest.raises(ValueError, match=problem):
        choose_every(**kw)
