"""`fleetwise validate zeus`: the leave-one-GPU-type-out goal on the real Zeus data, and the baselines by hand."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO, require_data
from tests.helpers import run_cli

# configurations per held-out type, less the one profiled per workload (six workloads)
EXPECTED_N = {"v100": 400, "a40": 447, "p100": 264}
# (model MAPE, model MAPE / best baseline MAPE) reached per held-out type, plus a small margin
REACHED = {"v100": (0.10, 0.85), "a40": (0.19, 0.72), "p100": (0.14, 0.87)}


def _validate(holdout: str) -> dict:
    data = require_data("zeus")
    r = run_cli(["validate", "zeus", "--data", str(data), "--holdout", holdout, "--format", "json"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("holdout", ["v100", "a40", "p100"])
def test_zeus_output_and_what_is_reached(holdout):
    out = _validate(holdout)
    assert set(out) == {"holdout", "n", "mape"}
    assert set(out["mape"]) == {"model", "global_ratio", "per_workload_ratio"}
    assert out["holdout"] == holdout
    assert out["n"] == EXPECTED_N[holdout]
    m = out["mape"]
    assert all(0 <= v < 5 for v in m.values())
    # What the model reaches today (docs/validation.md: 0.092, 0.182, 0.132; 0.81, 0.68, 0.83 times the best
    # baseline), with a small margin; these guard against regressions.
    assert m["model"] <= REACHED[holdout][0], m
    assert m["model"] <= REACHED[holdout][1] * min(m["global_ratio"], m["per_workload_ratio"]), m


@pytest.mark.xfail(strict=True, reason="the issue's goal is not met yet: see docs/validation.md (Zeus)")
@pytest.mark.parametrize("holdout", ["v100", "a40", "p100"])
def test_zeus_goal(holdout):
    m = _validate(holdout)["mape"]
    best_baseline = min(m["global_ratio"], m["per_workload_ratio"])
    # the goal: at most 15 % and at most half the best baseline, on every held-out type
    assert m["model"] <= 0.15, m
    assert m["model"] <= 0.5 * best_baseline, m


def _write(path, gpu, rows):
    lines = ["dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power"]
    lines += [f"{d},{n},{b},{o},{p},{t},{w}" for d, n, b, o, p, t, w in rows]
    (path / f"summary_power_{gpu}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny(tmp_path):
    # two training types (aa: max 200 W, bb: max 300 W) and a held-out hh (max 200 W); workloads d/n and e/f
    _write(tmp_path, "aa", [
        ("d", "n", 8, "x", 100, 10, 90), ("d", "n", 8, "y", 100, 14, 90),  # two optimizers: mean 12
        ("d", "n", 8, "x", 200, 8, 150), ("d", "n", 16, "x", 100, 6, 95), ("d", "n", 16, "x", 200, 4, 160),
        ("e", "f", 8, "x", 100, 3, 95), ("e", "f", 8, "x", 200, 2, 120),
    ])
    _write(tmp_path, "bb", [
        ("d", "n", 8, "x", 150, 27, 140), ("d", "n", 8, "x", 300, 18, 200), ("d", "n", 8, "x", 250, 19, 200),
        ("d", "n", 16, "x", 150, 12, 145), ("d", "n", 16, "x", 300, 9, 250),
        ("e", "f", 8, "x", 150, 12, 140), ("e", "f", 8, "x", 300, 8, 180),
    ])
    _write(tmp_path, "hh", [
        ("d", "n", 8, "x", 100, 30, 95), ("d", "n", 8, "x", 200, 20, 150), ("d", "n", 16, "x", 100, 15, 99),
        ("d", "n", 16, "x", 200, 10, 170),  # profiled: largest batch at the highest limit
        ("e", "f", 8, "x", 100, 9, 98), ("e", "f", 8, "x", 200, 5, 140),  # e/f profiled at (8, 200)
    ])
    return tmp_path


def test_baselines_by_hand(tiny):
    from analyzer.validate.zeus import baselines, load, mape, split

    data = load(tiny)
    sel = (data.gpu == "aa") & (data.workload == "d/n") & (data.batch_size == 8) & (data.power_limit == 100)
    assert data[sel].time_per_epoch.item() == 12
    train, profiled, test = split(data, "hh")
    assert sorted(zip(profiled.workload, profiled.batch_size, strict=True)) == [("d/n", 16), ("e/f", 8)]
    assert len(test) == 4
    # raw baseline = geometric mean over aa, bb at the same batch and nearest relative limit
    # profiled d/n (16, rel 1): gm(4, 9) = 6 -> ratio 10/6; e/f (8, rel 1): gm(2, 8) = 4 -> ratio 5/4
    r_dn, r_ef = 10 / 6, 5 / 4
    r_global = math.sqrt(r_dn * r_ef)
    raw = {("d/n", 8, 100): math.sqrt(12 * 27), ("d/n", 8, 200): math.sqrt(8 * 18),
           ("d/n", 16, 100): math.sqrt(6 * 12), ("e/f", 8, 100): math.sqrt(3 * 12)}
    actual = {("d/n", 8, 100): 30, ("d/n", 8, 200): 20, ("d/n", 16, 100): 15, ("e/f", 8, 100): 9}
    base = baselines(train, profiled, test)
    for row in base.itertuples():
        k = (row.workload, row.batch_size, row.power_limit)
        assert row.per_workload_ratio == pytest.approx(raw[k] * (r_dn if k[0] == "d/n" else r_ef))
        assert row.global_ratio == pytest.approx(raw[k] * r_global)
    pw = [raw[k] * (r_dn if k[0] == "d/n" else r_ef) for k in actual]
    expected_pw = sum(abs(p - a) / a for p, a in zip(pw, actual.values(), strict=True)) / 4
    assert expected_pw == pytest.approx((0 + 0 + (15 - math.sqrt(72) * 10 / 6) / 15 + (9 - 7.5) / 9) / 4)
    assert mape(base.per_workload_ratio, base.time_per_epoch) == pytest.approx(expected_pw)

    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "hh", "--format", "json"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 4
    assert out["mape"]["per_workload_ratio"] == pytest.approx(expected_pw)
    gl = [raw[k] * r_global for k in actual]
    assert out["mape"]["global_ratio"] == pytest.approx(
        sum(abs(p - a) / a for p, a in zip(gl, actual.values(), strict=True)) / 4)


def test_bad_input(tmp_path, tiny):
    r = run_cli(["validate", "zeus", "--data", str(tmp_path / "nope"), "--holdout", "v100"], cwd=REPO)
    assert r.returncode == 2 and "not a directory" in r.stderr
    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "zz"], cwd=REPO)
    assert r.returncode == 2 and "no measurements for GPU type 'zz'" in r.stderr
    (tiny / "summary_power_bad.csv").write_text("dataset,network\nx,y\n")
    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "hh"], cwd=REPO)
    assert r.returncode == 2 and "missing column(s)" in r.stderr


def test_pooled_speeds_recover_type_and_workload_speeds():
    """Times made on a type whose overhead is 2x and whose per-workload compute is 1.5x, 2x and 8/3x (geometric
    mean 2) come back as exactly those speeds; one odd workload moves only its own compute speed."""
    import numpy as np

    from analyzer.validate.zeus_model import StepTimeCurve, pooled_speeds

    b = np.array([8.0, 16, 32, 64, 128, 256])
    forms = {"w1": (800.0, 2.0, 0.0), "w2": (400.0, 1.0, 0.002), "w3": (1600.0, 0.5, 0.0)}
    curves = {w: StepTimeCurve(b, A / b + B + C * b) for w, (A, B, C) in forms.items()}
    truth = {"w1": 1.5, "w2": 2.0, "w3": 8 / 3}
    o_true = 2.0
    profiled = {w: (256.0, o_true * A / 256 + truth[w] * (B + C * 256)) for w, (A, B, C) in forms.items()}
    o, speeds = pooled_speeds(curves, profiled)
    assert o == pytest.approx(o_true, rel=1e-6)
    assert speeds == pytest.approx(truth, rel=1e-6)
    # predicted small-batch time on the new type uses the pooled overhead, not the workload's own speed
    A, B, _ = forms["w1"]
    assert float(curves["w1"].at(8.0, speeds["w1"], o)) == pytest.approx(o_true * A / 8 + 1.5 * B, rel=1e-6)
