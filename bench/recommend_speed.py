"""Recommender speed: right-sizing 100,000 jobs (goal < 10 s) and the pool MILP for 50 workloads x 8 pools
(goal < 5 s), each beside an anchor measured in the same run.

- Right-sizing: the rightsize and gpu families over a synthetic job table of 100,000 jobs in 2,000 recurring
  workloads (CPU, memory, time limit, GPU use, GPU count). Anchor: one pandas groupby quantile per resource
  over the same table, the least work any percentile-per-workload method does.
- MILP: 50 workloads x 8 pools with random throughput ratios, memory and node-shape constraints and pool
  capacity at what ran there plus about a fifth of the mean demand, solved by scipy.optimize.milp (HiGHS).
  Anchor: the greedy local search (analyzer.recommend.rebalance.greedy) on the same problem: its time, and the
  MILP's objective over the greedy one.
Wall and CPU seconds are both reported: on a shared machine the CPU time is what the code costs.

    .venv/bin/python bench/recommend_speed.py [--jobs 100000] [--workloads 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

GIB = 2**30


def job_table(n: int, n_workloads: int, rng: np.random.Generator) -> pd.DataFrame:
    from analyzer.jobtable_schema import COLUMNS, validate

    t0 = pd.Timestamp("2026-11-20T00:00:00Z")
    w = rng.integers(0, n_workloads, n)
    gpus = np.where(w % 3 == 0, 0, 2 ** (w % 4)).astype("int64")
    dur = rng.lognormal(np.log(3 * 3600), 0.8, n)
    start = t0 + pd.to_timedelta(rng.uniform(0, 7 * 86400 - 1, n), unit="s")
    cols = {c.name: (np.full(n, "", dtype=object) if c.kind == "string" else np.full(n, np.nan)) for c in COLUMNS}
    cols.update(job=np.arange(n).astype(str).astype(object), scheduler=np.full(n, "slurm", dtype=object),
                user=np.char.add("u", (w % 50).astype(str)).astype(object),
                workload=np.char.add("wl-", w.astype(str)).astype(object),
                hosts=np.char.add("n", (np.arange(n) % 1000).astype(str)).astype(object),
                nodes=np.ones(n, dtype="int64"), gpus=gpus, gpus_used=gpus,
                accelerator=np.where(gpus > 0, np.array(["a100-80gb", "h100-80gb"])[w % 2], "").astype(object),
                cpus_allocated=np.full(n, 32.0), cpu_cores_peak=rng.gamma(4, 2, n),
                memory_limit_bytes=np.full(n, 128.0 * GIB), memory_peak_bytes=rng.gamma(4, 8 * GIB, n),
                gpu_utilization_mean=np.where(gpus > 0, rng.beta(2, 3, n), np.nan),
                gpu_utilization_peak=np.where(gpus > 0, rng.beta(5, 2, n), np.nan),
                gpu_idle_seconds=np.where(gpus > 0, 0.0, np.nan), duration_seconds=dur,
                time_limit_seconds=np.full(n, 48 * 3600.0), start=start,
                end=start + pd.to_timedelta(dur, unit="s"))
    return validate(pd.DataFrame(cols)[[c.name for c in COLUMNS]])


def bench_rightsize(n: int, n_workloads: int, seed: int) -> dict:
    from analyzer import recommend
    from analyzer.recommend.context import Context

    jobs = job_table(n, n_workloads, np.random.default_rng(seed))
    ctx = Context(jobs=jobs, window=(pd.Timestamp("2026-11-20T00:00:00Z"), pd.Timestamp("2026-11-27T00:00:00Z")))
    t, c = time.perf_counter(), time.process_time()
    recs, skipped = recommend.run(ctx, ("rightsize", "gpu"))
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    g = jobs.groupby("workload")
    for col in ("cpu_cores_peak", "memory_peak_bytes", "duration_seconds", "gpu_utilization_mean",
                "gpu_utilization_peak"):
        g[col].quantile(0.95)
    anchor = time.perf_counter() - t
    return {"jobs": n, "workloads": n_workloads, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "goal_seconds": 10,
            "recommendations": len(recs), "skipped": len(skipped), "anchor_groupby_quantile_seconds": round(anchor, 3),
            "ratio_to_anchor": round(seconds / anchor, 1)}


def milp_problem(n_w: int, n_p: int, rng: np.random.Generator):
    from analyzer.recommend.rebalance import Problem

    demand = rng.uniform(1, 16, n_w)
    speed = rng.lognormal(0, 0.5, (n_w, n_p))
    observed = rng.integers(0, n_p, n_w)
    rel = speed / speed[np.arange(n_w), observed][:, None]
    feasible = rng.random((n_w, n_p)) > 0.2  # memory or node shape rules out a fifth of the pairs
    feasible[np.arange(n_w), observed] = True
    load = np.bincount(observed, weights=demand, minlength=n_p)
    # every pool holds what ran there plus room for a fifth more, unevenly: moves compete for the room
    capacity = load + 0.2 * demand.sum() / n_p * rng.uniform(0.5, 1.5, n_p)
    return Problem([f"w{i}" for i in range(n_w)], [f"p{j}" for j in range(n_p)], demand, observed,
                   demand[:, None] * rel, np.repeat(demand[:, None], n_p, axis=1), feasible, capacity)


def bench_milp(n_w: int, n_p: int, seed: int) -> dict:
    from analyzer.recommend.rebalance import greedy, solve

    pr = milp_problem(n_w, n_p, np.random.default_rng(seed))
    t, c = time.perf_counter(), time.process_time()
    best = solve(pr)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    anchor = greedy(pr)
    g_seconds = time.perf_counter() - t
    assert pr.fits(best) and pr.fits(anchor), (pr.fits(best), pr.fits(anchor))
    base = pr.objective(pr.observed)
    return {"workloads": n_w, "pools": n_p, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "goal_seconds": 5,
            "greedy_seconds": round(g_seconds, 4), "objective_observed": round(base, 2),
            "objective_milp": round(pr.objective(best), 2), "objective_greedy": round(pr.objective(anchor), 2),
            "milp_over_greedy": round(pr.objective(best) / pr.objective(anchor), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--workloads", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps({"rightsize": bench_rightsize(a.jobs, a.workloads, a.seed),
                      "milp": bench_milp(50, 8, a.seed)}, indent=1))


if __name__ == "__main__":
    main()
