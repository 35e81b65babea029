"""How fast right-sizing sizes a fleet. Goal: 100,000 jobs in < 10 s (issue 9).

    .venv/bin/python bench/sizing_speed.py [--jobs 100000] [--points 100] [--seed 1] [--json]

Each job gets `--points` usage samples (gamma-distributed, one a minute). Every method sizes all jobs in
one batch (analyzer.recommend.sizing.estimate_sizes); the anchor is numpy sorting the same samples once
(np.lexsort by job and value), the least any exact per-job percentile needs, reported as a ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_SECONDS = 10.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import numpy as np

    from analyzer.recommend.sizing import METHODS, estimate_sizes

    rng = np.random.default_rng(args.seed)
    ids = np.repeat(np.arange(args.jobs), args.points)
    t = np.tile(np.arange(args.points) * 60.0, args.jobs)
    v = rng.gamma(2.0, 4e9, len(ids))
    out = {"jobs": args.jobs, "points": len(ids), "methods": {}}
    for method in METHODS:
        start, cpu = time.perf_counter(), time.process_time()
        r = estimate_sizes(ids, t, v, method, "memory")
        s, c = time.perf_counter() - start, time.process_time() - cpu
        out["methods"][method] = {"seconds": round(s, 3), "cpu_s": round(c, 3),
                                  "sized": int(np.isfinite(r["value"]).sum()), "vs_goal": round(s / GOAL_SECONDS, 3)}
    # The anchor, after the methods so that it does not pay for first-touch allocations: CPU seconds of one
    # lexsort of all samples by (job, value), the least an exact per-job percentile needs.
    cpu = time.process_time()
    np.lexsort((v, ids))
    anchor = time.process_time() - cpu
    out["anchor_sort_cpu_s"] = round(anchor, 3)
    for r in out["methods"].values():
        r["cpu_vs_sort"] = round(r["cpu_s"] / anchor, 2)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.jobs} jobs x {args.points} points; one numpy sort of all samples: {anchor:.2f} s CPU")
        for m, r in out["methods"].items():
            print(f"  {m:10s} wall {r['seconds']:6.2f} s  cpu {r['cpu_s']:6.2f} s  ({r['sized']} sized; "
                  f"{r['vs_goal']:.2f} of the 10 s goal, {r['cpu_vs_sort']:.2f}x the sort's CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
