"""`fleetwise validate zeus`: the leave-one-GPU-type-out goal on the real Zeus data, and the baselines by hand."""

from __future__ import annotations

import functools
import json
import math

import pytest

from tests.conftest import REPO, require_data
from tests.helpers import run_cli

# configurations per held-out type, less the one profiled per workload (six workloads)
EXPECTED_N = {"v100": 400, "a40": 447, "p100": 264}
# The K = 1 baselines are the same protocol as before the K option (docs/validation.md): (global, per workload)
BASELINES_K1 = {"v100": (0.1991, 0.1132), "a40": (0.2675, 0.2791), "p100": (0.2444, 0.1588)}
# (model MAPE, model MAPE / best baseline MAPE) reached at K = 1, plus a small margin. The model changed in this
# round (nested-LOTO blend with the per-workload baseline): 0.073 / 0.143 / 0.114 (were 0.092 / 0.182 / 0.132).
REACHED = {"v100": (0.08, 0.70), "a40": (0.15, 0.58), "p100": (0.12, 0.77)}
NOT_MET = "the issue's goal is not met on this type yet: see docs/validation.md (Zeus)"
TYPES = ("v100", "a40", "p100")


@functools.cache
def _validate(holdout: str, profiled: int = 1, seeds: int = 20) -> dict:
    data = require_data("zeus")
    r = run_cli(["validate", "zeus", "--data", str(data), "--holdout", holdout, "--profiled", str(profiled),
                 "--seeds", str(seeds), "--format", "json"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _best_baseline(m: dict) -> float:
    return min(m["global_ratio"], m["per_workload_ratio"])


@pytest.mark.parametrize("holdout", TYPES)
def test_zeus_output_and_what_is_reached(holdout):
    out = _validate(holdout)
    assert set(out) == {"holdout", "profiled", "seeds", "n", "mape", "power_cap"}
    assert set(out["mape"]) == {"model", "global_ratio", "per_workload_ratio"}
    assert set(out["power_cap"]) == {"slowdown_budget", "energy_saving", "oracle_energy_saving", "over_budget_share"}
    assert (out["holdout"], out["profiled"], out["seeds"]) == (holdout, 1, 20)
    assert out["n"] == EXPECTED_N[holdout]
    m = out["mape"]
    assert (m["global_ratio"], m["per_workload_ratio"]) == pytest.approx(BASELINES_K1[holdout], abs=6e-4)
    assert m["model"] <= REACHED[holdout][0], m
    assert m["model"] <= REACHED[holdout][1] * _best_baseline(m), m
    pc = out["power_cap"]
    assert pc["slowdown_budget"] == 0.10
    assert 0 <= pc["energy_saving"] <= pc["oracle_energy_saving"] + 1e-12 < 1  # nothing beats the oracle
    assert 0 <= pc["over_budget_share"] <= 1


@pytest.mark.parametrize("holdout", TYPES)
def test_zeus_goal_one_profiled(holdout):
    # the goal at K = 1: at most 0.8 times the best baseline (met on all three visible types)
    m = _validate(holdout)["mape"]
    assert m["model"] <= 0.8 * _best_baseline(m), m


@pytest.mark.parametrize("holdout", [pytest.param("v100", marks=pytest.mark.xfail(strict=True, reason=NOT_MET)),
                                     "a40", "p100"])
def test_zeus_goal_three_profiled(holdout):
    # docs/validation.md: v100 0.072 (0.63 x its baseline), a40 0.097 (0.39 x), p100 0.065 (0.5996 x)
    out = _validate(holdout, 3)
    assert out["n"] == EXPECTED_N[holdout] - 2 * 6  # two more profiled per workload
    m = out["mape"]
    assert m["model"] <= 0.10, m
    assert m["model"] <= 0.6 * _best_baseline(m), m


@pytest.mark.parametrize("holdout", [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=NOT_MET))
                                     for t in TYPES])
def test_zeus_goal_power_cap(holdout):
    pc = _validate(holdout)["power_cap"]
    assert pc["energy_saving"] >= 0.9 * pc["oracle_energy_saving"], pc
    assert pc["over_budget_share"] <= 0.05, pc


# bench/zeus_powercap_ceiling.py (docs/validation.md): the per-workload threshold bound's saving / the oracle's
CEILING_TO_ORACLE = {"v100": 0.757, "a40": 0.767, "p100": 0.761}


@pytest.mark.parametrize("holdout", TYPES)
def test_zeus_power_cap_ceiling_is_under_the_goal(holdout):
    """Even with the measured draw and thresholds tuned on the held-out type itself, capping at a fraction of the
    uncapped draw stays under 0.9 of the oracle: why the power-cap goal stays an xfail."""
    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_powercap import ceiling

    c = ceiling(make_fold(load(require_data("zeus")), holdout))
    ratio = c["workload_threshold_saving"] / c["oracle_energy_saving"]
    assert ratio == pytest.approx(CEILING_TO_ORACLE[holdout], abs=0.01) and ratio < 0.9, c
    assert c["type_threshold_saving"] <= c["workload_threshold_saving"] + 1e-12  # one x* is a special case
    assert c["type_threshold_over"] <= 0.05


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


def test_draws_and_baselines_with_k_points(tiny):
    import numpy as np

    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import draws, make_fold, profiled_mask, ratio_baselines

    fold = make_fold(load(tiny), "hh")
    # rows sorted by workload, batch, limit: d/n (8,100) (8,200) (16,100) (16,200)=anchor, e/f (8,100) (8,200)=anchor
    assert list(np.flatnonzero(fold.anchor)) == [3, 5]
    picks = draws(fold, 2, 5)
    dn, ef = picks
    assert dn.shape == (5, 2) and (dn[:, 0] == 3).all() and set(dn[:, 1]) <= {0, 1, 2}
    assert ef.tolist() == [[5]] * 5  # e/f has two rows: one stays to be predicted
    assert all((a == b).all() for a, b in zip(picks, draws(fold, 2, 5), strict=True))  # seeded
    assert [p[0, 1] for p in (draws(fold, 2, 1)[0],)] == [dn[0, 1]]  # seed 0 is the same draw whatever N
    mask = profiled_mask(fold, picks)
    assert mask.sum(axis=1).tolist() == [3] * 5
    glob, per_wl = ratio_baselines(fold, mask)
    raw = {0: math.sqrt(12 * 27), 1: math.sqrt(8 * 18), 2: math.sqrt(6 * 12), 3: 6.0, 4: math.sqrt(3 * 12), 5: 4.0}
    actual = [30, 20, 15, 10, 9, 5]
    for s in range(5):
        k = int(dn[s, 1])
        r_dn = math.sqrt(actual[3] / raw[3] * actual[k] / raw[k])  # geometric mean of its two ratios
        r_all = (actual[3] / raw[3] * actual[k] / raw[k] * actual[5] / raw[5]) ** (1 / 3)  # all profiled points
        for i in range(4):
            assert per_wl[s, i] == pytest.approx(raw[i] * r_dn)
            assert glob[s, i] == pytest.approx(raw[i] * r_all)
        assert per_wl[s, 4] == pytest.approx(raw[4] * actual[5] / raw[5])


def _extra_pick_errors(design) -> list[tuple[int, float]]:
    """Per draw: d/n's extra profiled row and the structural model's log error there."""
    fold = design.fold
    return [(k, math.log(fold.actual[k] / fold.struct_time[k])) for k in map(int, design.picks[0][:, 1])]


def test_correction_from_profiled_points(tiny):
    """With only the constant kernel part, the correction is the shrunk mean error of the profiled points:
    sigma_c^2 * (e_anchor + e_pick) / (2 sigma_c^2 + sigma_n^2), and e_anchor = 0 (the model passes through it)."""
    import numpy as np

    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_stack import NOISE_SD, Design, Params

    fold = make_fold(load(tiny), "hh")
    d1 = Design(fold, 1, 3)
    structural, _ = d1.predict(Params(weight=1.0))
    assert np.exp(structural[0]) == pytest.approx(fold.struct_time)
    assert fold.struct_time[3] == pytest.approx(10) and fold.struct_time[5] == pytest.approx(5)  # anchors
    baseline, _ = d1.predict(Params(weight=0.0))
    assert np.exp(baseline) == pytest.approx(d1.per_workload_ratio)
    d2 = Design(fold, 2, 3)
    c2 = 0.5 ** 2
    log_t, sd = d2.predict(Params(weight=1.0, offset_sd=0.5))
    for s, (_, e) in enumerate(_extra_pick_errors(d2)):
        shift = c2 * e / (2 * c2 + NOISE_SD ** 2)
        assert log_t[s, :4] == pytest.approx(np.log(fold.struct_time[:4]) + shift)
        # posterior variance of the constant: c2 - 2 c2^2 / (2 c2 + noise^2), plus the noise itself
        assert sd[s, 0] == pytest.approx(math.sqrt(c2 - 2 * c2 ** 2 / (2 * c2 + NOISE_SD ** 2) + NOISE_SD ** 2))
    assert log_t[:, 4:] == pytest.approx(np.log(fold.struct_time[4:])[None, :].repeat(3, 0))  # e/f: anchor only


def test_type_level_term_is_shared_by_workloads(tiny):
    """The power-response term links workloads: an error at a capped profiled point of d/n moves the capped e/f
    row by tau^2 z_row z_k e_k / (tau^2 z_k^2 + sigma_n^2) (the anchors have z = 0 and add nothing)."""
    import numpy as np

    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_stack import NOISE_SD, Design, Params

    fold = make_fold(load(tiny), "hh")
    z = fold.struct_log_slowdown
    assert z[[3, 5]] == pytest.approx([0, 0]) and z[4] > 0  # anchors at the highest limit; e/f at 100 W is capped
    d = Design(fold, 2, 4)
    tau2 = 0.3 ** 2
    log_t, _ = d.predict(Params(weight=1.0, type_slowdown_sd=0.3))
    for s, (k, e) in enumerate(_extra_pick_errors(d)):
        expected = math.log(fold.struct_time[4]) + tau2 * z[4] * z[k] * e / (tau2 * z[k] ** 2 + NOISE_SD ** 2)
        assert log_t[s, 4] == pytest.approx(expected)
    assert np.ptp(log_t[:, 5]) == pytest.approx(0) and log_t[0, 5] == pytest.approx(math.log(5))  # anchor: z = 0


def test_power_cap_decision_by_hand(tiny):
    import numpy as np

    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_powercap import decide

    _write(tiny, "gg", [  # (batch, limit, time, power) for d/n and e/f; 200 W is the highest limit
        ("d", "n", 8, "x", 100, 25, 95), ("d", "n", 8, "x", 150, 21, 140), ("d", "n", 8, "x", 200, 20, 150),
        ("d", "n", 16, "x", 100, 12, 95), ("d", "n", 16, "x", 150, 10.5, 140), ("d", "n", 16, "x", 200, 10, 170),
        ("e", "f", 8, "x", 100, 5.4, 90), ("e", "f", 8, "x", 150, 5.1, 120), ("e", "f", 8, "x", 200, 5, 140),
    ])
    fold = make_fold(load(tiny), "gg", train_types=["aa", "bb"])
    t = fold.actual.copy()
    power = fold.held.average_power.to_numpy(float)[None, :]
    # oracle per (workload, batch): d/n 8 -> 150 W (slowdown 1.05): 1 - 21*140/(20*150); d/n 16 -> 150 W
    # (100 W is 1.2x slower): 1 - 10.5*140/1700; e/f 8 -> 100 W (1.08x): 1 - 5.4*90/700
    oracle = [1 - 2940 / 3000, 1 - 1470 / 1700, 1 - 486 / 700]
    exact = decide(fold, t[None, :], power)
    assert exact["oracle_energy_saving"] == pytest.approx(np.mean(oracle))
    assert exact["energy_saving"] == pytest.approx(np.mean(oracle)) and exact["over_budget_share"] == 0
    # predicting d/n 16 at 100 W as 10.9 (1.09x) picks it: true 1.2x, over budget, saving 1 - 1140/1700
    t[3] = 10.9
    wrong = decide(fold, t[None, :], power)
    assert wrong["energy_saving"] == pytest.approx(np.mean([oracle[0], 1 - 1140 / 1700, oracle[2]]))
    assert wrong["over_budget_share"] == pytest.approx(1 / 3)
    # a margin of 0.05 in log slowdown (limit 1.1 / e^0.05 = 1.046x) rules out 1.05x, 1.08x and 1.09x:
    # d/n stays at 200 W (saving 0), e/f takes 150 W (1.02x): 1 - 612/700
    safe = decide(fold, t[None, :], power, margin=0.05)
    assert safe["energy_saving"] == pytest.approx((1 - 612 / 700) / 3) and safe["over_budget_share"] == 0


def test_profiled_and_seeds_reach_the_json(tiny):
    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "hh", "--profiled", "2", "--seeds", "3",
                 "--format", "json", "--detail"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["profiled"], out["seeds"], out["n"]) == (2, 3, 3)  # d/n: 4 rows - 2 profiled; e/f: 2 - 1
    assert set(out["per_workload"]) == {"d/n", "e/f"} and 0 <= out["coverage_90"] <= 1
    assert out["chosen"]["inner_folds"] == ["aa", "bb"]
    # a workload measured only at its anchor on the held-out type: nothing of it to predict, the rest still runs
    with (tiny / "summary_power_hh.csv").open("a") as f:
        f.write("g,h,8,x,200,7,150\n")
    for gpu in ("aa", "bb"):
        with (tiny / f"summary_power_{gpu}.csv").open("a") as f:
            f.write("g,h,8,x,100,9,90\ng,h,8,x,200,6,140\n" if gpu == "aa" else "g,h,8,x,300,5,200\n")
    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "hh", "--profiled", "3", "--seeds", "2",
                 "--format", "json", "--detail"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 2 and set(out["per_workload"]) == {"d/n", "e/f"}  # d/n: 4 - 3 profiled; e/f: 2 - 1
    r = run_cli(["validate", "zeus", "--data", str(tiny), "--holdout", "hh", "--profiled", "0"], cwd=REPO)
    assert r.returncode == 2 and "--profiled and --seeds must be at least 1" in r.stderr


def test_power_cap_ceiling_by_hand(tiny):
    """The in-sample threshold bound on the same three groups as the decision test. x = limit / measured draw at
    the highest limit: d/n 8 (draw 150 W): 0.667, 1.0; d/n 16 (170 W): 0.588, 0.882; e/f 8 (140 W): 0.714, 1.071."""
    from analyzer.validate.zeus import load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_powercap import ceiling

    _write(tiny, "gg", [
        ("d", "n", 8, "x", 100, 25, 95), ("d", "n", 8, "x", 150, 21, 140), ("d", "n", 8, "x", 200, 20, 150),
        ("d", "n", 16, "x", 100, 12, 95), ("d", "n", 16, "x", 150, 10.5, 140), ("d", "n", 16, "x", 200, 10, 170),
        ("e", "f", 8, "x", 100, 5.4, 90), ("e", "f", 8, "x", 150, 5.1, 120), ("e", "f", 8, "x", 200, 5, 140),
    ])
    fold = make_fold(load(tiny), "gg", train_types=["aa", "bb"])
    oracle = [1 - 2940 / 3000, 1 - 1470 / 1700, 1 - 486 / 700]
    # no budget to spare (3 choices, 5 %): x* in (0.667, 0.714] takes 150, 150, 100 W, the oracle's choices;
    # of the grid 0.675 and 0.7 tie and the larger is kept
    c = ceiling(fold)
    assert c["oracle_energy_saving"] == pytest.approx(sum(oracle) / 3)
    assert c["oracle_from_groups_no_cap_binds"] == 0  # every group has a lower limit under 1.1 x its draw
    assert c["type_threshold"] == 0.7 and c["type_threshold_over"] == 0
    assert c["type_threshold_saving"] == pytest.approx(sum(oracle) / 3)
    assert c["workload_threshold_saving"] == pytest.approx(sum(oracle) / 3)
    # one choice of three may go over: x* in (0.588, 0.667] takes d/n 8 to 100 W (1.25x slower, saving
    # 1 - 2375/3000); of the grid 0.6, 0.625 and 0.65 tie and the largest is kept
    loose = ceiling(fold, max_over=0.34)
    expected = (1 - 2375 / 3000 + oracle[1] + oracle[2]) / 3
    assert loose["type_threshold"] == 0.65 and loose["type_threshold_over"] == pytest.approx(1 / 3)
    assert loose["type_threshold_saving"] == pytest.approx(expected)
    assert loose["workload_threshold_saving"] == pytest.approx(expected)
