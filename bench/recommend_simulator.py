"""The recommender on simulated fleets, against truth.json (figures for docs/validation.md).

For each fleet (the default profile plus the two recurring over-requested jobs of
tests/test_recommend_simulator.over_requested_profile): simulate, analyze (with the recommend step), then
compare the idle GPU-hours the recommender found with the true ones, and re-simulate every job under its
GPU-count or power-cap proposal (tests/test_recommend_simulator.resimulate) against the stated slowdown
bound. One JSON line per fleet; gpu_cut_jobs_checked counts the jobs of GPU-count cuts that keep GPUs
(not releases of idle jobs).

    .venv/bin/python bench/recommend_simulator.py
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from agents.simulate import simulate
from analyzer.pipeline import analyze
from tests.test_recommend_simulator import freed_by_unused_cuts, over_requested_profile, resimulate

FLEETS = ((24, 3, 1), (32, 3, 1), (32, 3, 2))  # nodes, days, seed

for nodes, days, seed in FLEETS:
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        simulate(nodes=nodes, days=days, interval=60, seed=seed, store=f"embedded:{d / 's'}",
                 start="2026-11-20T00:00:00Z", profile=over_requested_profile())
        run = analyze(f"embedded:{d / 's'}", state_dir=d / "st", n_jobs=1).run
        truth = json.loads((d / "s" / "truth.json").read_text())
        recs, jobs = run.table("recommendations"), run.table("job_table")
        r = resimulate(recs, jobs, {j["job"]: j for j in truth["jobs"] if j["placed"]})
        true_idle = truth["totals"]["idle_gpu_hours_in_idle_jobs"]
        found = run.manifest["recommend"]["idle_gpu_hours_found"]
        print(json.dumps({"nodes": nodes, "days": days, "seed": seed, "true_idle": round(true_idle, 1),
                          "found": round(found, 1), "ratio": round(found / true_idle, 3), "recs": len(recs),
                          "gpu_jobs_checked": r["gpu"], "gpu_cut_jobs_checked": r["gpu_cut"],
                          "powercap_jobs_checked": r["powercap"],
                          "true_unused_gpu_h": round(truth["totals"]["unused_gpu_hours_in_over_requested_jobs"], 1),
                          "unused_gpu_h_freed": round(freed_by_unused_cuts(recs), 1),
                          "unbounded": r["unbounded"], "worst_ratio_over_bound": round(r["worst"], 4),
                          "violations": len(r["violations"]),
                          "milp_gain": run.manifest["recommend"].get("rebalance", {}).get("gain_fraction")}),
              flush=True)
