"""The recommender on a simulated fleet, checked against the simulator's ground truth (truth.json):
the idle GPU-hours it finds, and what its GPU-count and power-cap proposals would really cost when the
jobs are re-simulated with them (agents.simulate.workloads.training_truth, the simulator's own model)."""

from __future__ import annotations

import json
import math

import pytest

from agents.simulate import simulate
from agents.simulate import workloads as wl
from agents.simulate.profile import OverRequest, load_profile
from analyzer.pipeline import analyze
from analyzer.state import load_latest
from tests.helpers import run_cli

START = "2026-11-20T00:00:00Z"


def over_requested_profile():
    """The default fleet plus two recurring over-requested training jobs (agents/simulate/over_request.py): one
    that runs torchrun on 2 of the 4 A100s it holds, one a one-GPU script holding 4 H100s. Without them no
    workload of the simulated fleet is over-requested often enough (10 jobs on one type) to be cut."""
    prof = load_profile(None)
    prof.mix.over_request = [
        OverRequest(workload="squad/bert_base_uncased", accelerator="A100", devices=4, devices_used=2,
                    every_hours=5, hours=3, user="team-nlp", name="nightly-finetune"),
        OverRequest(workload="imagenet/resnet50", accelerator="H100", devices=4, devices_used=1,
                    every_hours=6, hours=2, user="team-vision", name="resnet-eval"),
    ]
    return prof


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend-sim")
    simulate(nodes=24, days=3, interval=60, seed=1, store=f"embedded:{root / 'store'}", start=START,
             profile=over_requested_profile())
    result = analyze(f"embedded:{root / 'store'}", state_dir=root / "state", n_jobs=2)
    run = load_latest(root / "state")
    truth = json.loads((root / "store" / "truth.json").read_text())
    return {"root": root, "result": result, "run": run, "truth": truth,
            "recs": run.table("recommendations"), "jobs": run.table("job_table"),
            "by_id": {j["job"]: j for j in truth["jobs"] if j["placed"]}}


def test_the_recommend_step_is_saved_with_the_run(sim):
    m = sim["run"].manifest
    assert m["steps"]["recommend"]["status"] == "ok", m["steps"]["recommend"]
    assert {"recommendations", "recommendations_skipped"} <= set(m["tables"])
    assert m["recommend"]["recommendations"] == len(sim["recs"]) > 0
    assert sim["recs"]["money_week"].is_monotonic_decreasing


def test_finds_at_least_90_percent_of_the_true_idle_gpu_hours(sim):
    true_idle = sim["truth"]["totals"]["idle_gpu_hours_in_idle_jobs"]
    found = sim["run"].manifest["recommend"]["idle_gpu_hours_found"]
    assert true_idle > 50  # the fleet has idle jobs, so the check means something
    # found counts whole held GPU-hours of idle jobs, and the job table's spans are rounded to 5-minute buckets
    assert 0.9 * true_idle <= found <= 1.1 * true_idle, (found, true_idle)


def test_idle_releases_only_hit_idle_jobs(sim):
    """Precision: every job behind a release-the-GPUs proposal is, in truth, an idle job."""
    recs, jobs, by_id = sim["recs"], sim["jobs"], sim["by_id"]
    checked = 0
    for r in recs[recs["kind"] == "gpu"].to_dict("records"):
        ev = json.loads(r["evidence"])
        if r["target_type"] == "job":
            ids = [r["target"].split("/", 1)[1]]
        elif ev.get("recommended_gpus") == 0:
            ids = list(jobs[(jobs["workload"] == r["target"]) & (jobs["accelerator"] == ev["accelerator"])]["job"])
        else:
            continue
        for i in ids:
            assert by_id[i]["kind"] == "idle", (r["action"], by_id[i]["kind"])
            checked += 1
    assert checked >= 5


def _time_ratio(t: dict, devices: int, nodes: int, cap: float) -> float:
    """time(new shape or cap) / time(as it ran) of a training job, by the simulator's own model. The job's program
    runs on the GPUs it used (devices_used_per_node of those it held), and on no more than that when given more."""
    cpn = t["cpus_per_node"]
    used = t["devices_used_per_node"] * len(t["hosts"])
    devices = min(devices, used)
    base = wl.training_truth(t["workload"], t["accelerator"], used, len(t["hosts"]),
                             t["network_bytes_per_second"], t["power_cap_fraction"], cpn * len(t["hosts"]),
                             wl_straggler(t), t["augment_cost"])
    new = wl.training_truth(t["workload"], t["accelerator"], devices, nodes, t["network_bytes_per_second"], cap,
                            cpn * nodes, wl_straggler(t), t["augment_cost"])
    return base.throughput / new.throughput


def wl_straggler(t: dict) -> float:
    from agents.simulate.truth import STRAGGLER_SLOWDOWN

    return STRAGGLER_SLOWDOWN if t["straggler"] else 1.0


def resimulate(recs, jobs, by_id: dict) -> dict:
    """Each GPU-count and power-cap proposal applied to each of its jobs, re-simulated: per kind the jobs checked,
    the worst (1 + true slowdown) / (1 + stated bound), and the rows that state no bound."""
    out = {"gpu": 0, "gpu_cut": 0, "powercap": 0, "worst": 0.0, "unbounded": 0, "violations": []}
    for r in recs[recs["kind"].isin(["gpu", "powercap"])].to_dict("records"):
        ev = json.loads(r["evidence"])
        if r["target_type"] == "job":  # a one-off idle job: release all its GPUs
            ids, ev["recommended_gpus"] = [r["target"].split("/", 1)[1]], 0
        elif r["kind"] == "gpu" and "recommended_gpus" not in ev:
            continue  # a type change: neither a count nor a cap
        else:
            ids = jobs[(jobs["workload"] == r["target"]) & (jobs["accelerator"] == r["accelerator"])]["job"]
        bound = r["slowdown_high"]
        if not math.isfinite(bound):
            assert "unknown" in r["risk"]  # no bound is claimed, and the risk says so
            out["unbounded"] += 1
            continue
        for job in ids:
            t = by_id[job]
            if t["kind"] == "idle":
                ratio = 1.0  # it did no work on the GPUs: releasing them costs it nothing
            elif t["kind"] != "training":
                continue
            elif r["kind"] == "gpu":
                new = ev["recommended_gpus"]
                assert new > 0, (r["action"], job)  # GPUs released from a job that used them
                ratio = _time_ratio(t, new, max(1, math.ceil(new / t["devices_per_node"])), t["power_cap_fraction"])
                out["gpu_cut"] += 1
            else:
                if t["power_cap_fraction"] <= ev["cap_fraction"]:
                    continue  # already capped lower: the proposal does not touch it
                ratio = _time_ratio(t, t["devices_per_node"] * len(t["hosts"]), len(t["hosts"]), ev["cap_fraction"])
            out["worst"] = max(out["worst"], ratio / (1 + bound))
            if ratio > 1 + bound + 1e-6:
                out["violations"].append((r["action"], job, ratio, bound))
            out[r["kind"]] += 1
    return out


def test_applied_proposals_never_slow_a_job_beyond_the_stated_bound(sim):
    res = resimulate(sim["recs"], sim["jobs"], sim["by_id"])
    assert not res["violations"], res["violations"]
    assert res["gpu"] >= 5 and res["powercap"] >= 1, res
    # GPU-count cuts of jobs that did work (not idle releases): the over-requested recurring jobs
    assert res["gpu_cut"] >= 10, res


def test_over_requested_jobs_are_cut_to_what_they_ran_on(sim):
    """Each over-requested recurring workload gets one GPU-count row, down to the GPUs its program ran on
    (truth's devices_used_per_node), covering every one of its jobs."""
    recs, jobs, truth = sim["recs"], sim["jobs"], sim["truth"]
    cuts = {}
    for r in recs[recs["kind"] == "gpu"].to_dict("records"):
        ev = json.loads(r["evidence"])
        if r["target_type"] == "workload" and ev.get("recommended_gpus", 0) > 0:
            cuts[r["target"]] = (ev["recommended_gpus"], ev["current_gpus_median"])
    for user, used, held in (("team-nlp", 2, 4), ("team-vision", 1, 4)):
        placed = [j for j in truth["jobs"] if j["user"] == user and j["placed"]]
        assert len(placed) >= 10 and all(j["devices_used_per_node"] == used for j in placed)
        names = set(jobs[jobs["job"].isin([j["job"] for j in placed])]["workload"])
        assert len(names) == 1, names  # the analyzer sees one recurring workload
        assert cuts.get(names.pop()) == (used, held), cuts


def freed_by_unused_cuts(recs) -> float:
    """GPU-hours over the window that the cuts to the GPUs the programs ran on free (their gain per week back to
    the window's length)."""
    import pandas as pd

    freed = 0.0
    for r in recs[recs["kind"] == "gpu"].to_dict("records"):
        ev = json.loads(r["evidence"])
        if r["target_type"] == "workload" and "gpus_used_max" in ev:
            hours = (pd.Timestamp(ev["window"][1]) - pd.Timestamp(ev["window"][0])).total_seconds() / 3600
            freed += r["gpu_hours_week"] * hours / (7 * 24)
    return freed


def test_cuts_free_the_true_unused_gpu_hours(sim):
    """Recall of the over-requested GPUs, as the idle check is for idle ones: the GPU-hours the count cuts free
    against truth's held-but-unused GPU-hours."""
    freed = freed_by_unused_cuts(sim["recs"])
    true_unused = sim["truth"]["totals"]["unused_gpu_hours_in_over_requested_jobs"]
    assert true_unused > 50
    # the job table rounds a job's span out to 5-minute buckets (as for the idle GPU-hours)
    assert 0.9 * true_unused <= freed <= 1.1 * true_unused, (freed, true_unused)


def test_cli_recommend_json(sim):
    r = run_cli(["recommend", "--state", str(sim["root"] / "state"), "--format", "json", "--kind", "gpu"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["recommendations"] and {x["kind"] for x in out["recommendations"]} == {"gpu"}
    assert all(x["evidence"]["window"] for x in out["recommendations"])
    r = run_cli(["recommend", "--state", str(sim["root"] / "state"), "--limit", "10"])
    assert r.returncode == 0 and r.stdout.count("risk:") == 10
