"""The recommender's families on hand-built job tables, with expected values worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from agents.config_recommend import RecommendSettings
from analyzer import recommend
from analyzer.jobtable_schema import COLUMNS, validate
from analyzer.recommend import rebalance
from analyzer.recommend.context import Context
from analyzer.recommend.formats import FORMATS, render
from tests.helpers import run_cli

GIB = 2**30
T0 = pd.Timestamp("2026-11-20T00:00:00Z")
WINDOW = (T0, T0 + pd.Timedelta(days=7))  # a week: per-week gains equal the window's amounts


def jobs(rows: list[dict]) -> pd.DataFrame:
    """A job table with the declared columns; unspecified numbers NaN, strings ""."""
    out = []
    for i, r in enumerate(rows):
        row = {c.name: ("" if c.kind == "string" else np.nan) for c in COLUMNS}
        row.update(job=str(1000 + i), scheduler="slurm", user="alice", nodes=1, gpus=0, gpus_used=0,
                   start=T0 + pd.Timedelta(hours=i), duration_seconds=3600.0)
        row.update(r)
        row["end"] = row["start"] + pd.Timedelta(seconds=row["duration_seconds"])
        row.setdefault("hosts", "")
        if not row["hosts"]:
            row["hosts"] = f"n{i % 4}"
        out.append(row)
    f = pd.DataFrame(out)
    for c in COLUMNS:
        if c.kind == "int":
            f[c.name] = f[c.name].astype("int64")
        elif c.kind == "float":
            f[c.name] = f[c.name].astype(float)
    return validate(f)


def ctx(j, **kw) -> Context:
    return Context(jobs=j, window=WINDOW, **kw)


def test_jobtable_schema_refuses_a_wrong_table():
    from analyzer.jobtable_schema import JobTableError

    good = jobs([{"workload": "w"}])
    with pytest.raises(JobTableError, match=r"lacks column.*gpus"):
        validate(good.drop(columns=["gpus"]))
    with pytest.raises(JobTableError, match="column gpus: float64 is not int"):
        validate(good.assign(gpus=1.5))
    with pytest.raises(JobTableError, match="column job: 1 row"):
        validate(good.assign(job=""))
    with pytest.raises(JobTableError, match="UTC"):
        validate(good.assign(start=good["start"].dt.tz_localize(None)))


def test_jobtable_doc_is_generated_from_the_schema():
    from analyzer.jobtable_schema import render_markdown
    from tests.conftest import REPO

    assert (REPO / "docs" / "jobtable.md").read_text() == render_markdown(), "docs/jobtable.md is stale: make docs"


def test_cpu_and_memory_rightsizing():
    # 12 jobs of one workload, 1 node each, 32 cores and 64 GiB asked, 3.0 cores and 10 GiB used at peak (one job
    # 4.0 cores). The size is the estimator's; what the family adds is the rounding, the gain and the risk.
    rows = [{"workload": "etl", "cpus_allocated": 32.0, "cpu_cores_peak": 4.0 if i == 5 else 3.0,
             "memory_limit_bytes": 64.0 * GIB, "memory_peak_bytes": 10.0 * GIB, "duration_seconds": 7200.0}
            for i in range(12)]
    recs, skipped = recommend.run(ctx(jobs(rows)), ("rightsize",))
    assert len(skipped) == 0
    cpu = recs[recs["action"].str.contains("cores")].iloc[0]
    ev = json.loads(cpu["evidence"])
    from analyzer.recommend.sizing import estimate_size

    est = estimate_size((jobs(rows)["start"].astype("int64") / 1e9).to_numpy(), [r["cpu_cores_peak"] for r in rows],
                        resource="cpu")
    assert ev["recommended"] == math.ceil(est.value)
    # gain: 12 jobs x 2 h x (32 - new) cores, and the window is a week
    assert cpu["core_hours_week"] == pytest.approx(12 * 2 * (32 - ev["recommended"]))
    assert cpu["money_week"] == pytest.approx(cpu["core_hours_week"] * 0.03)
    assert cpu["target"] == "etl" and cpu["owner"] == "alice"
    assert bool(cpu["below_peak"]) == (ev["recommended"] < 4.0)
    mem = recs[recs["action"].str.contains("GiB")].iloc[0]
    assert mem["memory_gib_hours_week"] == pytest.approx(12 * 2 * (64 - json.loads(mem["evidence"])["recommended"]))


def test_below_the_peak_is_always_said():
    # one job far above the rest: a percentile size lands below it, and the risk must say so in words
    rows = [{"workload": "spiky", "cpus_allocated": 64.0, "cpu_cores_peak": 40.0 if i == 0 else 2.0}
            for i in range(20)]
    recs, _ = recommend.run(ctx(jobs(rows), settings=RecommendSettings(margin=0.0, percentile=0.5)), ("rightsize",))
    cpu = recs.iloc[0]
    new = json.loads(cpu["evidence"])["recommended"]
    assert new < 40
    assert cpu["below_peak"] and "BELOW the observed peak of 40 cores (1 of 20 jobs used more)" in cpu["risk"]


def test_too_little_history_gives_no_recommendation_and_the_minimum():
    rows = [{"workload": "rare", "cpus_allocated": 32.0, "cpu_cores_peak": 1.0} for _ in range(3)]
    recs, skipped = recommend.run(ctx(jobs(rows)), ("rightsize",))
    assert len(recs) == 0
    reasons = dict(zip(skipped["target"] + ":" + skipped["reason"].str.split(":").str[0], skipped["reason"],
                       strict=True))
    assert "3 points, at least 10 needed" in reasons["rare:CPU cores"]
    out = json.loads(render("json", recs, skipped))
    assert out["recommendations"] == [] and any("at least 10" in s["reason"] for s in out["skipped"])


def test_idle_gpus_are_released_and_counted():
    # 10 jobs of 4 GPUs for 5 h at 1% utilization: 200 idle GPU-hours; plus a one-off job idle 80% of 10 h on 2
    busy = [{"workload": "notebook", "gpus": 4, "accelerator": "a100-80gb", "gpu_utilization_mean": 0.01,
             "gpu_utilization_peak": 0.02, "gpu_idle_seconds": 5 * 3600.0, "duration_seconds": 5 * 3600.0}
            for _ in range(10)]
    one_off = {"workload": "", "gpus": 2, "accelerator": "h100-80gb", "gpu_utilization_mean": 0.1,
               "gpu_utilization_peak": 0.9, "gpu_idle_seconds": 8 * 3600.0, "duration_seconds": 10 * 3600.0}
    recs, _ = recommend.run(ctx(jobs([*busy, one_off])), ("gpu",))
    wl = recs[recs["target"] == "notebook"].iloc[0]
    assert wl["gpu_hours_week"] == pytest.approx(200.0)
    assert wl["money_week"] == pytest.approx(200 * 2.2)  # the a100-80gb price
    assert wl["slowdown_high"] == 0.0
    job = recs[recs["target_type"] == "job"].iloc[0]
    assert job["gpu_hours_week"] == pytest.approx(16.0) and job["money_week"] == pytest.approx(16 * 3.5)
    assert recommend.idle_gpu_hours(recs) == pytest.approx(216.0)


def _problem(**kw) -> rebalance.Problem:
    base = dict(workloads=["a", "b"], pools=["small", "big"], demand=np.array([4.0, 4.0]),
                observed=np.array([0, 0]), use=np.full((2, 2), 4.0), feasible=np.ones((2, 2), bool),
                capacity=np.array([8.0, 4.0]))
    base.update(kw)
    return rebalance.Problem(**base)


def test_milp_respects_capacity_where_the_unconstrained_optimum_would_not():
    # both workloads run 3x (a) and 2x (b) faster on "big", which holds only one of them: the unconstrained
    # optimum moves both (value 4*3 + 4*2 = 20); the MILP moves a only (12 + 4 = 16), the observed is 8.
    value = np.array([[4.0, 12.0], [4.0, 8.0]])
    pr = _problem(value=value)
    best = rebalance.solve(pr)
    assert list(best) == [1, 0] and pr.fits(best)
    assert pr.objective(best) == 16.0
    assert rebalance.fewest_moves(pr, best) == [0]
    assert list(rebalance.greedy(pr)) == [1, 0]


def test_milp_never_moves_a_workload_where_it_does_not_fit():
    # "a" gains most on "big" but its memory does not fit there (feasible False): b goes instead
    value = np.array([[4.0, 40.0], [4.0, 8.0]])
    feasible = np.array([[True, False], [True, True]])
    pr = _problem(value=value, feasible=feasible)
    best = rebalance.solve(pr)
    assert list(best) == [0, 1] and pr.objective(best) == 12.0


def _throughput(types: list[str], cells: dict[str, tuple[float, float]]):
    """A throughput matrix fitted on one observation per cell: {workload: (throughput on each of types)}."""
    from analyzer.models.throughput import ThroughputMatrix

    obs = pd.DataFrame({"workload": [w for w in cells for _ in types], "accelerator": types * len(cells),
                        "throughput": [x for w in cells for x in cells[w]], "devices": 1, "weight": 1.0})
    return ThroughputMatrix().fit(obs)


def test_rebalance_on_a_context_checks_memory_and_node_shape():
    # two pools; workload "big-mem" would be 3x faster on v100 but needs 40 GiB per GPU (v100 has 32)
    tm = _throughput(["a100-80gb", "v100-32gb"], {"big-mem": (100.0, 300.0), "small": (100.0, 150.0),
                                                  "other": (10.0, 20.0)})
    rows = []
    for w, mem in (("big-mem", 40 * GIB), ("small", 4 * GIB)):
        rows += [{"workload": w, "gpus": 1, "accelerator": "a100-80gb", "gpu_memory_used_max_bytes": float(mem),
                  "duration_seconds": 24 * 3600.0, "hosts": "a0"} for _ in range(2)]
    hosts = pd.DataFrame({"host": ["a0", "v0"], "accelerator": ["a100-80gb", "v100-32gb"], "gpus": [8, 8],
                          "gpu_memory_bytes": [80.0 * GIB, 32.0 * GIB], "cpus": [64.0, 64.0]})
    c = ctx(jobs(rows), hosts=hosts, throughput=tm)
    recs, _ = recommend.run(c, ("rebalance",))
    assert list(recs["target"]) == ["small"]  # big-mem stays: 40 GiB do not fit in 32
    assert c.summary["rebalance"]["gain"] > 0


def _frag_context(cpus: list[float]) -> Context:
    # class of 3 hosts x 4 GPUs at the window's end: h0 holds a 1-GPU job (8 CPUs), h1 and h2 hold 2 GPUs each:
    # 7 GPUs free in total, no host entirely free. Moving h0's job onto h1 frees h0, if h1 has 8 CPUs free.
    end = WINDOW[1]
    rows = [{"workload": "x", "gpus": g, "cpus_allocated": 8.0, "accelerator": "a100-80gb", "hosts": h,
             "start": end - pd.Timedelta(hours=5), "duration_seconds": 5 * 3600.0}
            for h, g in (("h0", 1), ("h1", 2), ("h2", 2))]
    hosts = pd.DataFrame({"host": ["h0", "h1", "h2"], "accelerator": "a100-80gb", "gpus": 4,
                          "gpu_memory_bytes": 80.0 * GIB, "cpus": cpus})
    return ctx(jobs(rows), hosts=hosts)


def test_fragmentation_moves_free_a_whole_host():
    recs, _ = recommend.run(_frag_context([64.0, 64.0, 64.0]), ("fragmentation",))
    assert len(recs) == 1
    ev = json.loads(recs.iloc[0]["evidence"])
    assert recs.iloc[0]["target"] == "h0" and ev["moves"][0][0] == "slurm/1000" and ev["moves"][0][2] in ("h1", "h2")
    assert ev["stranded_gpu_hours"] == pytest.approx(5 * 7)  # 5 h with 7 GPUs free, none on a free host


def test_fragmentation_never_overfills_cpus():
    # the same GPUs, but every host has 12 CPUs (8 taken): no 8-CPU job fits elsewhere, so no move is proposed
    # though every host has the GPUs free for one
    recs, _ = recommend.run(_frag_context([12.0, 12.0, 12.0]), ("fragmentation",))
    assert len(recs) == 0
    # with 64 CPUs on h0 only, h1's or h2's job (2 GPUs, 8 CPUs) may go there: then that host is freed
    recs, _ = recommend.run(_frag_context([64.0, 12.0, 12.0]), ("fragmentation",))
    assert len(recs) == 1 and json.loads(recs.iloc[0]["evidence"])["moves"][0][2] == "h0"


def test_consolidation_counts_hosts_that_were_never_needed():
    # 4 CPU hosts of 64 CPUs; never more than two 48-CPU jobs at once: 2 hosts needed, 2 could power down
    rows = [{"workload": "b", "cpus_allocated": 48.0, "hosts": f"c{i % 2}", "start": T0 + pd.Timedelta(hours=3 * i),
             "duration_seconds": 3 * 3600.0} for i in range(8)]
    hosts = pd.DataFrame({"host": [f"c{i}" for i in range(4)], "accelerator": "", "gpus": 0,
                          "gpu_memory_bytes": np.nan, "cpus": 64.0})
    recs, _ = recommend.run(ctx(jobs(rows), hosts=hosts), ("consolidate",))
    r = recs.iloc[0]
    assert json.loads(r["evidence"])["hosts_needed_at_peak"] == 1  # the two c0/c1 jobs never overlap
    assert r["kwh_week"] == pytest.approx(3 * 200 * 168 / 1000)


def test_powercap_from_a_fitted_model():
    from analyzer.models.power import PowerCapModel, relative_slowdown

    # time(f) = 1 + 0.05 (1/f - 1): at f = 0.5 5% slower; power proportional to f: energy minimal at the lowest
    # cap within budget; 6 jobs at caps 1.0, 0.8, 0.6, 0.5 of a 400 W GPU
    caps = [1.0, 0.8, 0.6, 0.5, 1.0, 1.0]
    rows = [{"workload": "train", "accelerator": "a100-80gb", "gpus": 1, "power_limit_watts": 400.0 * f,
             "power_limit_max_watts": 400.0, "throughput": 1 / relative_slowdown(f, 0.05, 1.0),
             "power_watts_mean": 400.0 * f, "energy_joules": 400.0 * f * 3600, "duration_seconds": 3600.0}
            for f in caps]
    j = jobs(rows)
    from analyzer.models.observations import observations

    model = PowerCapModel().fit(observations(j))
    recs, _skipped = recommend.run(ctx(j, power=model), ("powercap",))
    r = recs.iloc[0]
    ev = json.loads(r["evidence"])
    assert ev["cap_fraction"] == pytest.approx(0.5, abs=0.011)
    assert r["slowdown"] == pytest.approx(0.05, abs=0.005) and r["slowdown_high"] >= r["slowdown"]
    # jobs above the cap: three at 1.0 (energy 1440 kJ, saving 1 - E(.5)/E(1) = 1 - 0.5*1.05 = 0.475),
    # one at 0.8 (1152 kJ, saving 1 - 0.525 / (0.8*1.0125)), one at 0.6 (864 kJ, 1 - 0.525 / (0.6*1.0333))
    expected = (3 * 1440e3 * 0.475 + 1152e3 * (1 - 0.525 / 0.81) + 864e3 * (1 - 0.525 / 0.62)) / 3.6e6
    assert r["kwh_week"] == pytest.approx(expected, rel=0.03)
    none, why = recommend.run(ctx(j), ("powercap",))
    assert len(none) == 0 and "no power-cap model" in why.iloc[0]["reason"]


def test_formats_are_registered_by_name_and_rank_by_gain():
    assert set(FORMATS) == {"table", "json", "csv", "markdown"}
    rows = [{"workload": w, "cpus_allocated": 32.0, "cpu_cores_peak": peak} for w, peak in
            (("a", 2.0), ("b", 10.0)) for _ in range(12)]
    recs, skipped = recommend.run(ctx(jobs(rows)), ("rightsize",))
    assert list(recs["target"]) == ["a", "b"]  # a frees more cores
    assert recs["money_week"].is_monotonic_decreasing
    assert render("csv", recs, skipped).splitlines()[0].startswith("id,kind,target_type,target")
    assert "| 1 | rightsize | workload `a` |" in render("markdown", recs, skipped)


def test_cli_reads_the_latest_run(tmp_path):
    from analyzer.state import StateDir

    rows = [{"workload": "a", "cpus_allocated": 32.0, "cpu_cores_peak": 2.0} for _ in range(12)]
    rare = {"workload": "rare", "gpus": 2, "accelerator": "a100-80gb", "gpu_utilization_mean": 0.5}
    recs, skipped = recommend.run(ctx(jobs([*rows, rare])))
    w = StateDir(tmp_path).new_run(store="embedded:x", window=WINDOW)
    w.save_table("recommendations", recs)
    w.save_table("recommendations_skipped", skipped)
    w.commit()
    r = run_cli(["recommend", "--state", str(tmp_path), "--format", "json"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["target"] for x in out["recommendations"]] == ["a"]
    assert any(s["target"] == "rare on a100-80gb" and "at least 10" in s["reason"] for s in out["skipped"])
    r = run_cli(["recommend", "--state", str(tmp_path), "--kind", "gpu"])
    assert r.returncode == 0 and "no recommendations" in r.stdout
    r = run_cli(["recommend", "--state", str(tmp_path), "--min-gain", "1e9", "--format", "csv"])
    assert r.stdout.count("\n") == 1  # the header only
    r = run_cli(["recommend", "--state", str(tmp_path / "none")])
    assert r.returncode == 2 and "no completed analyze run" in r.stderr and "Traceback" not in r.stderr


def test_mig_slice_for_a_workload_that_uses_a_fraction_of_one_gpu():
    # 12 one-GPU jobs on a100-80gb, peaks 20-25% busy, 15 GB: 2g.20gb (2/7 = 29% >= 25%, 0.95 x 20 GB >= 15 GB)
    rows = [{"workload": "small", "gpus": 1, "accelerator": "a100-80gb", "gpu_utilization_mean": 0.15,
             "gpu_utilization_peak": 0.20 + 0.05 * (i % 2), "gpu_memory_used_max_bytes": 15e9,
             "duration_seconds": 3600.0} for i in range(12)]
    recs, _ = recommend.run(ctx(jobs(rows)), ("gpu",))
    mig = recs[recs["action"].str.contains("MIG")]
    assert len(mig) == 1 and "2g.20gb" in mig.iloc[0]["action"]
    assert mig.iloc[0]["gpu_hours_week"] == pytest.approx(12 * (1 - 2 / 7))
    assert "not modelled" in mig.iloc[0]["risk"] and math.isnan(mig.iloc[0]["slowdown"])
    # on a type without MIG, or with 2 GPUs per job, none
    recs, _ = recommend.run(ctx(jobs([{**r, "accelerator": "v100-32gb"} for r in rows])), ("gpu",))
    assert not recs["action"].str.contains("MIG").any()


def _scaling(curve) -> object:
    from analyzer.models.scaling import ScalingModel

    rng = np.random.default_rng(0)
    n = np.repeat([1, 2, 4, 8], 4)
    return ScalingModel().fit(n, curve(n) * np.exp(rng.normal(0, 0.01, len(n))))


def test_gpu_count_cut_is_priced_by_the_scaling_model():
    # 12 jobs of 8 GPUs at 15% peak utilization: 1.2 busy GPU-equivalents -> the estimate rounds up to 2 or so
    rows = [{"workload": "w", "gpus": 8, "accelerator": "a100-80gb", "gpu_utilization_mean": 0.1,
             "gpu_utilization_peak": 0.15, "duration_seconds": 3600.0} for _ in range(12)]
    j = jobs(rows)
    # a workload that does not scale (input-bound: the same throughput on 1 or 8 GPUs): the cut costs nothing
    flat = _scaling(lambda n: 100.0 + 0 * n)
    recs, skipped = recommend.run(ctx(j, scaling={("w", "a100-80gb"): flat}), ("gpu",))
    cut = recs[recs["action"].str.startswith("request")]
    assert len(cut) == 1, skipped
    new = json.loads(cut.iloc[0]["evidence"])["recommended_gpus"]
    assert 2 <= new < 8
    assert cut.iloc[0]["gpu_hours_week"] == pytest.approx(12 * (8 - new))
    assert abs(cut.iloc[0]["slowdown"]) < 0.03 and 0 <= cut.iloc[0]["slowdown_high"] <= 0.05
    # a workload that scales almost linearly: X(8) / X(new) is far over the 5% budget: no cut, and why
    linear = _scaling(lambda n: 100.0 * n / (1 + 0.02 * (n - 1)))
    recs, skipped = recommend.run(ctx(j, scaling={("w", "a100-80gb"): linear}), ("gpu",))
    assert not recs["action"].str.startswith("request").any()
    assert skipped["reason"].str.contains("over the 5.0% budget").any()
    # no scaling model: the cut is proposed, and its cost is said to be unknown rather than guessed
    recs, _ = recommend.run(ctx(j), ("gpu",))
    cut = recs[recs["action"].str.startswith("request")].iloc[0]
    assert math.isnan(cut["slowdown_high"]) and "throughput cost unknown" in cut["risk"]


def test_gpus_held_but_never_used_are_cut_to_what_the_programs_ran_on():
    # 12 jobs holding 4 GPUs whose program ran on 2 (gpus_used), at 0.48 peak utilization over the 4: busy
    # GPU-equivalents 1.92, sized with the margin above 2, so the cut to 2 frees 2 GPUs x 1 h x 12 jobs
    rows = [{"workload": "w", "gpus": 4, "gpus_used": 2, "accelerator": "a100-80gb", "gpu_utilization_mean": 0.45,
             "gpu_utilization_peak": 0.48, "duration_seconds": 3600.0} for _ in range(12)]
    recs, _ = recommend.run(ctx(jobs(rows)), ("gpu",))  # no scaling model: none is needed
    cut = recs[recs["action"].str.startswith("request")]
    assert len(cut) == 1
    r = cut.iloc[0]
    ev = json.loads(r["evidence"])
    assert (ev["recommended_gpus"], ev["current_gpus_median"], ev["gpus_used_max"]) == (2, 4.0, 2)
    assert r["gpu_hours_week"] == pytest.approx(12 * 2 * 1.0)
    assert (r["slowdown"], r["slowdown_low"], r["slowdown_high"]) == (0.0, 0.0, 0.0)
    assert "ran on at most 2" in r["action"] and not r["below_peak"]
    # one job of the workload ran on all 4: no cut to 2 (and 1.92 busy GPUs with the margin round to 4)
    rows[5] = {**rows[5], "gpus_used": 4, "gpu_utilization_peak": 0.96}
    recs, _ = recommend.run(ctx(jobs(rows)), ("gpu",))
    assert not recs["action"].str.startswith("request").any()
    # busy GPU-equivalents well below what the programs ran on: a cut below 2 is not free, so it is the busy
    # sizing's cut, priced by a scaling model (none here: cost unknown), not the no-slowdown one
    rows = [{**r, "gpu_utilization_mean": 0.05, "gpu_utilization_peak": 0.08} for r in rows[:5] + rows[6:]]
    rows += [dict(rows[0])]
    recs, _ = recommend.run(ctx(jobs(rows)), ("gpu",))
    cut = recs[recs["action"].str.startswith("request")].iloc[0]
    assert json.loads(cut["evidence"])["recommended_gpus"] == 1
    assert math.isnan(cut["slowdown_high"]) and "throughput cost unknown" in cut["risk"]


def test_bad_price_table_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[recommend.prices]\nkwh = -1\ngpu_hour = { "NVIDIA A100-SXM4-80GB" = 2.5 }\n')
    r = run_cli(["analyze", "--store", f"embedded:{tmp_path}", "--config", str(bad), "--state", str(tmp_path / "s")])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "recommend.prices.kwh" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from agents.config import load_config

    good = tmp_path / "good.toml"
    good.write_text('[recommend.prices]\ngpu_hour = { "NVIDIA A100-SXM4-80GB" = 2.5 }\n')
    prices = load_config(good, env={}).recommend.prices
    assert prices.gpu_price("a100-80gb") == 2.5 and prices.gpu_price("mi300x") == 0.0  # no default given


def test_rebalance_energy_objective_with_measured_and_estimated_power():
    # w1 ran on a100 at 300 W, 50% busy, and would be 2x faster on h100, where it never ran; ref ran on h100 at
    # 600 W, 80% busy. w1's power on h100 is estimated: 50 W idle + (600 - 50) x 0.5 / 0.8 = 393.75 W; its energy
    # per unit of work falls from 300 / X_a100 to 393.75 / X_h100. w2 (3x faster on h100) measured 300 W on a100
    # but no utilization: its h100 power cannot be estimated, so it is not moved and the reason is listed. w3
    # (10x faster on h100) has neither power nor utilization: its energy where it ran is unknown, it stays.
    tm = _throughput(["a100-80gb", "h100-80gb"], {"w1": (100.0, 200.0), "ref": (10.0, 40.0), "w2": (50.0, 150.0),
                                                  "w3": (10.0, 100.0)})
    rows = []
    for w, acc, watts, util, host in (("w1", "a100-80gb", 300.0, 0.5, "a0"), ("ref", "h100-80gb", 600.0, 0.8, "h0"),
                                      ("w2", "a100-80gb", 300.0, np.nan, "a0"),
                                      ("w3", "a100-80gb", np.nan, np.nan, "a0")):
        rows += [{"workload": w, "gpus": 1, "accelerator": acc, "power_watts_mean": watts,
                  "gpu_utilization_mean": util, "duration_seconds": 24 * 3600.0, "hosts": host} for _ in range(2)]
    hosts = pd.DataFrame({"host": ["a0", "h0"], "accelerator": ["a100-80gb", "h100-80gb"], "gpus": [8, 8],
                          "gpu_memory_bytes": [80.0 * GIB, 80.0 * GIB], "cpus": [64.0, 64.0]})
    c = ctx(jobs(rows), hosts=hosts, throughput=tm, settings=RecommendSettings(rebalance_objective="energy"))
    recs, skipped = recommend.run(c, ("rebalance",))
    assert list(recs["target"]) == ["w1"]
    r = recs.iloc[0]
    ev = json.loads(r["evidence"])
    assert ev["watts_from"] == pytest.approx(300.0) and not ev["watts_from_estimated"]
    assert ev["watts_to"] == pytest.approx(393.75) and ev["watts_to_estimated"]
    ratio = tm.predict("w1", "h100-80gb") / tm.predict("w1", "a100-80gb")
    # 2 jobs x 24 h x 1 GPU = 48 GPU-hours a week at 300 W, against 48 / ratio GPU-hours at 393.75 W
    assert r["kwh_week"] == pytest.approx(48 * (300 - 393.75 / ratio) / 1000)
    assert r["money_week"] == pytest.approx(48 * (2.2 - 3.5 / ratio) + r["kwh_week"] * 0.15)
    assert "estimated at 394 W" in r["risk"] and "affine in utilization" in r["risk"]
    assert r["method"] == "milp/energy" and "less GPU energy than the observed one" in r["action"]
    why = dict(zip(skipped["target"], skipped["reason"], strict=True))
    assert "no measured GPU utilization" in why["w2 on h100-80gb"]
    assert why["w3"].startswith("not moved: its energy is unknown where it ran")
    # objective: average watts, negated; observed = w1 2/7 GPU x 300 W + ref 2/7 x 600 W + w2 2/7 x 300 W (w3: 0)
    assert c.summary["rebalance"]["observed"] == pytest.approx(-(2 / 7) * 1200)
    # the measured type mean is the ceiling of an estimate: ref on a100 would be 50 + 250 x 0.8 / 0.5 = 450 W,
    # above the 300 W a100 ever drew, so 300 W
    from analyzer.recommend import pool_power

    pt = pool_power.table(c.jobs, ["ref"], ["a100-80gb"], 50.0)
    assert pt.watts[0, 0] == pytest.approx(300.0) and pt.estimated[0, 0]


def test_rebalance_objective_energy_is_a_known_setting():
    assert RecommendSettings(rebalance_objective="energy").rebalance_objective == "energy"
    with pytest.raises(ValueError, match="known: throughput, cost, energy"):
        RecommendSettings(rebalance_objective="carbon")


def _balance_context(rows: list[tuple[str, str, int, float, float, float]], cpus: float,
                     names: tuple[str, ...] = ("h0", "h1")) -> Context:
    # (workload, hosts, GPUs, CPUs, start hour, hours) on a class of 8-GPU a100-80gb hosts
    table = jobs([{"workload": w, "hosts": h, "nodes": h.count(",") + 1, "gpus": g, "cpus_allocated": c,
                   "accelerator": "a100-80gb", "start": T0 + pd.Timedelta(hours=s), "duration_seconds": d * 3600.0}
                  for w, h, g, c, s, d in rows])
    hosts = pd.DataFrame({"host": list(names), "accelerator": "a100-80gb", "gpus": 8,
                          "gpu_memory_bytes": 80.0 * GIB, "cpus": cpus})
    return ctx(table, hosts=hosts)


def test_balance_moves_the_unit_that_fits_not_the_one_that_evens_best():
    # all week: h0 holds a (3 GPUs, 2 CPUs) and b (2 GPUs, 12 CPUs): 5/8 = 62.5% allocated; h1 holds c (1 GPU,
    # 8 CPUs): 12.5%. Moving b would even them exactly (37.5% each) but h1 has 16 - 8 = 8 CPUs free, not 12:
    # so a moves instead: h0 2/8 = 25%, h1 4/8 = 50%, spread 25 points < 30: done. 3 GPUs x 168 h = 504 GPU-hours.
    week = [("a", "h0", 3, 2.0, 0, 168), ("b", "h0", 2, 12.0, 0, 168), ("c", "h1", 1, 8.0, 0, 168)]
    recs, skipped = recommend.run(_balance_context(week, 16.0), ("balance",))
    assert len(recs) == 1 and len(skipped) == 0
    r = recs.iloc[0]
    ev = json.loads(r["evidence"])
    assert (r["target"], ev["unit"], ev["from"], ev["to"]) == ("h0", "workload a", "h0", "h1")
    assert ev["hot_share"] == pytest.approx(0.625) and ev["hot_share_after"] == pytest.approx(0.25)
    assert ev["cold_share"] == pytest.approx(0.125) and ev["cold_share_after"] == pytest.approx(0.5)
    assert ev["resource_hours_week"] == pytest.approx(504.0)
    assert ev["not_fitting"] == [["workload b", "h1 lacks the CPUs at some instant it ran"]]
    assert "pin workload a (1 job in the window) from hot host h0 to cold host h1" in r["action"]
    assert "62% -> 25%" in r["action"] and r["gpu_hours_week"] == 0.0  # it frees nothing
    # with 32 CPUs per host, b fits and evens them exactly: 336 GPU-hours a week, 37.5% each
    recs, _ = recommend.run(_balance_context(week, 32.0), ("balance",))
    ev = json.loads(recs.iloc[0]["evidence"])
    assert len(recs) == 1 and ev["unit"] == "workload b" and ev["resource_hours_week"] == pytest.approx(336.0)
    assert ev["hot_share_after"] == pytest.approx(0.375) and ev["cold_share_after"] == pytest.approx(0.375)


def test_balance_never_overfills_gpus_at_any_instant():
    # h0 holds a (3 GPUs) and b (2 GPUs) all week: 75%; h1 only a one-off 6-GPU job for 12 h mid-week:
    # 6 x 12 / (8 x 168) = 5.36%. Moving a would leave them closest (37.5% vs 42.9%) but during that job h1 would
    # need 6 + 3 = 9 of its 8 GPUs; b fits (6 + 2 = 8): h0 3/8 = 37.5%, h1 2/8 + 5.36% = 30.4%, then done.
    rows = [("a", "h0", 3, 1.0, 0, 168), ("b", "h0", 2, 1.0, 0, 168), ("", "h1", 6, 1.0, 80, 12)]
    recs, _ = recommend.run(_balance_context(rows, 64.0), ("balance",))
    assert len(recs) == 1
    ev = json.loads(recs.iloc[0]["evidence"])
    assert ev["unit"] == "workload b" and ev["to"] == "h1"
    # (the evidence is rounded to 6 digits)
    assert ev["cold_share"] == pytest.approx(72 / 1344, abs=1e-6)
    assert ev["cold_share_after"] == pytest.approx(0.25 + 72 / 1344, abs=1e-6)
    assert ev["not_fitting"] == [["workload a", "h1 lacks the GPUs at some instant it ran"]]
    # when nothing fits, no move: the hot host is listed as skipped with the reasons
    rows = [("a", "h0", 3, 1.0, 0, 168), ("b", "h0", 3, 1.0, 0, 168), ("", "h1", 6, 1.0, 80, 12)]
    recs, skipped = recommend.run(_balance_context(rows, 64.0), ("balance",))
    assert len(recs) == 0 and skipped.iloc[0]["target"] == "h0"
    assert "workload a: h1 lacks the GPUs" in skipped.iloc[0]["reason"]


def test_balance_moves_only_the_jobs_of_a_workload_that_fit():
    # h0: workload a, two 4-GPU jobs (hours 0-84 and 84-168), and b, 1 GPU all week: 5/8 = 62.5%; h1: a one-off
    # 6-GPU job in hours 100-112: 72 / 1344 = 5.4%. a's first job fits on h1, its second would need 6 + 4 = 10
    # GPUs there: only the first moves (336 GPU-hours): h0 (840 - 336) / 1344 = 37.5%, h1 (72 + 336) / 1344 =
    # 30.4%, 7 points apart; b alone (168 GPU-hours) would leave them 50% and 17.9%, 32 points apart.
    rows = [("a", "h0", 4, 1.0, 0, 84), ("a", "h0", 4, 1.0, 84, 84), ("b", "h0", 1, 1.0, 0, 168),
            ("", "h1", 6, 1.0, 100, 12)]
    recs, _ = recommend.run(_balance_context(rows, 64.0), ("balance",))
    assert len(recs) == 1
    r = recs.iloc[0]
    ev = json.loads(r["evidence"])
    assert ev["unit"] == "workload a" and ev["jobs"] == ["slurm/1000"] and ev["jobs_moved"] == 1
    assert ev["jobs_on_hot_host"] == 2 and ev["resource_hours_week"] == pytest.approx(336.0)
    assert ev["hot_share_after"] == pytest.approx(0.375)
    assert ev["cold_share_after"] == pytest.approx(408 / 1344, abs=1e-6)
    assert "prefer the cold host for workload a (1 of its 2 jobs in the window fit there)" in r["action"]
    assert "the other 1 would not have (h1 lacks the GPUs at some instant it ran) and stay" in r["risk"]


def test_balance_never_moves_a_multi_node_job():
    # a 2-node job (6 GPUs on each of h0 and h2) all week: h0 and h2 75%, h1 idle; its piece on h0 would fit h1,
    # but a gang-scheduled job is not split by hand: no move, and h0 is listed as skipped
    recs, skipped = recommend.run(_balance_context([("m", "h0,h2", 12, 2.0, 0, 168)], 64.0, ("h0", "h1", "h2")),
                                  ("balance",))
    assert len(recs) == 0
    assert list(skipped["target"]) == ["h0"] and "75% allocated" in skipped.iloc[0]["reason"]


def test_rebalance_slowdown_band_is_printed_only_when_it_says_something():
    # r = 2 (twice as fast), log-sd 0.1: slowdown 1/(2 e^{+-1.645*0.1}) - 1 = -57.6% .. -41.1% (e^0.1645 = 1.1788)
    assert rebalance.slowdown_band(2.0, 0.1, "v100-32gb") == "90% interval -57.6% to -41.1%, throughput matrix"
    # log-sd 2: the band spans e^{+-3.29} (27x either way): no interval, and what to do instead
    text = rebalance.slowdown_band(2.0, 2.0, "v100-32gb")
    assert "interval" not in text and "profile one job on v100-32gb" in text and "log-sd 2.0" in text
