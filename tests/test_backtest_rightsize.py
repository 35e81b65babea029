"""Right-sizing backtest (analyzer.validate.rightsize, `fleetwise backtest rightsize`)."""

from __future__ import annotations

import functools
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from analyzer.recommend.sizing import SizingSettings
from analyzer.validate.rightsize import Case, backtest, split
from analyzer.validate.series import SeriesTable, read_series
from fleetwise.cli import main
from tests.conftest import require_data

MEMORY = "pod_gpu_memory_used_bytes_anon.csv.gz"
DUTY = "pod_gpu_duty_cycle_anon.csv.gz"


def _table(rows: list[tuple[str, float, float]]) -> SeriesTable:
    ids, t, v = zip(*rows, strict=True)
    codes, names = pd.factorize(np.array(ids))
    return SeriesTable(codes.astype(np.int64), np.array(t, float), np.array(v, float), np.asarray(names))


def test_split_cuts_each_series_at_its_own_fraction_and_drops_short_ones():
    rows = [("a", float(t), 1.0) for t in range(0, 100)]          # span 0..99: cut at 69.3
    rows += [("b", float(t), 2.0) for t in range(1000, 1030)]     # span 29: cut at 1020.3 -> 21 / 9 rows
    train, test = split(_table(rows), 0.7, min_points=10)
    assert set(np.unique(train.ids)) == {0}                       # b has only 9 later rows
    assert (train.times <= 69.3).all() and len(train.times) == 70 and len(test.times) == 30


def test_score_slack_and_exceedance_by_hand():
    # Two series, sizes 10 and 0. Series 0 later uses 5, 10, 12: terms 0.5, 0, 0 -> slack 1/6; it exceeds.
    # Series 1 (size 0) later uses 0, 0, 3: the limit of (rec - used)+ / rec as rec -> 0 is 1, 1, 0.
    c = Case(np.array([0, 1]), np.array([0, 0, 0, 1, 1, 1]), np.array([5.0, 10.0, 12.0, 0.0, 0.0, 3.0]),
             (), {})
    slack, exceed = c.score(np.array([10.0, 0.0]))
    assert slack == pytest.approx((1 / 6 + 2 / 3) / 2)
    assert exceed == 1.0
    slack, exceed = c.score(np.array([20.0, 4.0]))
    # series 0: (15 + 10 + 8) / 20 / 3 = 0.55; series 1: (1 + 1 + 0.25) / 3 = 0.75; nobody exceeds
    assert slack == pytest.approx((0.55 + 0.75) / 2)
    assert exceed == 0.0


def test_score_matches_the_row_by_row_formula_with_ties_and_zero_sizes():
    # Case.score searches each series' sorted later usage; worked out here row by row instead, on values with
    # ties at the size (not below it, so no slack and no exceedance), zero sizes and zero / negative usage.
    rng = np.random.default_rng(7)
    k = 40
    code = np.sort(rng.integers(0, k, 2000))
    code[:k] = np.arange(k)  # every series has later points
    code.sort()
    used = rng.choice(np.array([0.0, -1.0, 1.0, 2.0, 3.5, 7.0, 10.0]), len(code))
    c = Case(np.arange(k), code, used, (), {})
    for rec in (rng.choice(np.array([0.0, 1.0, 2.0, 3.5, 5.0, 10.0]), k), np.zeros(k), rng.uniform(0, 12, k)):
        r = rec[code]
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(r > 0, np.clip(r - used, 0, None) / r, (used <= 0).astype(float))
        slack = np.mean([term[code == i].mean() for i in range(k)])
        exceed = np.mean([used[code == i].max() > rec[i] for i in range(k)])
        assert c.score(rec) == pytest.approx((slack, exceed), rel=1e-12, abs=1e-12)


def test_backtest_on_a_flat_series_that_steps_up_later():
    # 300 one-minute samples at 10, the last 5 at 12. The cut falls at 0.7 * 299 min: 210 history points.
    rows = [("pod", 60.0 * i, 12.0 if i >= 295 else 10.0) for i in range(300)]
    r = backtest(_table(rows), 0.7, "memory")
    assert r["series"] == 1
    krr = r["methods"]["krr"]
    # KRR: 10 * 1.15 = 11.5; later: 85 points at 10 (slack 1.5/11.5), 5 at 12 (exceed, slack 0)
    assert krr["slack"] == pytest.approx(85 * (1.5 / 11.5) / 90)
    assert krr["exceedance"] == 1.0
    fw = r["methods"]["fleetwise"]
    assert 0.0 <= fw["slack"] <= 1.0 and fw["exceedance"] in (0.0, 1.0)
    assert r["nested_validation"]["inner_series"] == [1, 1, 1]


def test_backtest_without_long_enough_series_says_why():
    rows = [("pod", 60.0 * i, 1.0) for i in range(15)]
    r = backtest(_table(rows), 0.7, "cpu", SizingSettings())
    assert r["series"] == 0 and r["methods"]["krr"]["slack"] is None
    assert "10 points" in r["note"]


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_cli_missing_column_is_one_line_and_exit_2(tmp_path, capsys):
    f = _write(tmp_path / "s.csv", "ts,value,pod\n1,2,a\n")
    rc = main(["backtest", "rightsize", "--series", f, "--id-col", "pod", "--time-col", "timestamp",
               "--value-col", "value"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f in err and "'timestamp'" in err


def test_cli_unparsable_value_names_file_column_and_line(tmp_path, capsys):
    f = _write(tmp_path / "s.csv", "ts,value,pod\n1,2,a\n2,oops,a\n")
    rc = main(["backtest", "rightsize", "--series", f, "--id-col", "pod", "--time-col", "ts",
               "--value-col", "value"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f in err and "'value'" in err and "line 3" in err


def test_cli_json_on_a_small_gzipped_file(tmp_path, capsys):
    lines = ["t,v,id"] + [f"{60 * i},{10 + (i % 7)},p{k}" for k in range(3) for i in range(200)]
    f = tmp_path / "mem.csv.gz"
    f.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    rc = main(["backtest", "rightsize", "--series", str(f), "--id-col", "id", "--time-col", "t",
               "--value-col", "v", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["series"] == 3 and out["resource"] == "memory"
    assert set(out["methods"]) == {"fleetwise", "krr", "vpa"}
    # values cycle 10..16, so KRR memory = 16 * 1.15 and no later point exceeds it
    assert out["methods"]["krr"]["exceedance"] == 0.0


def _krr_memory_by_pandas(path) -> tuple[int, float, float]:
    """KRR on the memory trace worked out independently: max * 1.15 of each series' first 70% of span."""
    df = pd.read_csv(path)
    slacks, exceeds = [], []
    for _, s in df.groupby("container_ip"):
        t, v = s["timestamp_anon"].to_numpy(), s["value"].to_numpy()
        cut = t.min() + 0.7 * (t.max() - t.min())
        train, test = v[t <= cut], v[t > cut]
        if len(train) < 100 or len(test) < 10:   # KRR's 100 points; 10 later points
            continue
        rec = train.max() * 1.15
        slacks.append(np.mean(np.clip(rec - test, 0, None) / rec))
        exceeds.append(test.max() > rec)
    return len(slacks), float(np.mean(slacks)), float(np.mean(exceeds))


@functools.cache
def _memory_backtest() -> dict:
    path = require_data("alibaba-genai-2026", MEMORY)
    return backtest(read_series(path, "container_ip", "timestamp_anon", "value"), 0.7, "memory")


@pytest.mark.data
def test_real_gpu_memory_trace_krr_matches_an_independent_computation():
    path = require_data("alibaba-genai-2026", MEMORY)
    r = _memory_backtest()
    n, slack, exceed = _krr_memory_by_pandas(path)
    assert r["series"] == n
    assert r["methods"]["krr"]["slack"] == pytest.approx(slack)
    assert r["methods"]["krr"]["exceedance"] == pytest.approx(exceed)
    # fleetwise leaves less slack than both baselines here (docs/validation.md has the exceedance caveat)
    fw = r["methods"]["fleetwise"]["slack"]
    assert fw < r["methods"]["krr"]["slack"] and fw < r["methods"]["vpa"]["slack"]


@pytest.mark.data
@pytest.mark.xfail(strict=True, reason="issue 9's goal is not met on GPU memory: 8 pods exceed against VPA's 7 "
                                       "(docs/validation.md, right-sizing)")
def test_real_gpu_memory_trace_meets_the_goal():
    r = _memory_backtest()
    m = r["methods"]
    for base in ("krr", "vpa"):
        assert m["fleetwise"]["slack"] < m[base]["slack"]
        assert m["fleetwise"]["exceedance"] <= m[base]["exceedance"]


@pytest.mark.data
def test_real_gpu_duty_cycle_trace_meets_the_goal():
    path = require_data("alibaba-genai-2026", DUTY)
    r = backtest(read_series(path, "container_ip", "timestamp_anon", "value"), 0.7, "gpu")
    m = r["methods"]
    assert r["series"] > 100
    for base in ("krr", "vpa"):
        assert m["fleetwise"]["slack"] < m[base]["slack"]
        assert m["fleetwise"]["exceedance"] <= m[base]["exceedance"]


def test_nested_choice_stays_under_both_baselines_at_every_inner_origin():
    """The rule (analyzer.validate.rightsize.choose): the chosen margin and weight keep the inner exceedance at or
    under the lower baseline's at each inner origin, not only on average; inner_goal_met reports whether its mean
    inner slack is also below both baselines'."""
    from analyzer.recommend.sizing import fleetwise_size
    from analyzer.validate.rightsize import INNER_FRACTIONS, case, choose

    rng = np.random.default_rng(3)
    rows = []
    for p in range(30):  # a level, noise and a few spikes per pod; 300 one-minute samples
        level, spikes = rng.uniform(5, 20), rng.random(300) < rng.uniform(0, 0.02)
        v = level * (1 + 0.1 * rng.standard_normal(300)) + spikes * level * rng.uniform(0.2, 1.0, 300)
        rows += [(f"p{p}", 60.0 * i, max(float(x), 0.0)) for i, x in enumerate(v)]
    train, _ = split(_table(rows), 0.7)
    chosen, why = choose(train, "memory", SizingSettings())
    assert why["met_bound"]
    slacks = []
    for f in INNER_FRACTIONS:
        c = case(*split(train, f), "memory", chosen)
        slack, ex = c.score(fleetwise_size(*c.parts, chosen.margin, chosen.spread_weight))
        assert ex <= min(c.baselines["krr"][1], c.baselines["vpa"][1]) + 1e-12, (f, ex, c.baselines)
        slacks.append(slack)
    inner = why["inner"]
    assert np.mean(slacks) == pytest.approx(inner["fleetwise"]["slack"])
    assert why["inner_goal_met"] == (inner["fleetwise"]["slack"] < min(inner["krr"]["slack"], inner["vpa"]["slack"]))
