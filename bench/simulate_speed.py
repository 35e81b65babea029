"""How fast the fleet simulator fills the embedded store. Goal: 256 nodes x 7 days at 30 s in < 60 s.

    .venv/bin/python bench/simulate_speed.py [--nodes 256] [--days 7] [--interval 30] [--seed 1]

Writes into a temporary embedded store (removed afterwards) and prints seconds, rows written,
node-rounds, on-disk size and the ratio to the 60 s goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_SECONDS = 60.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=256)
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--interval", type=float, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    from agents.simulate import simulate

    root = Path(tempfile.mkdtemp(prefix="fleetwise-simbench-"))
    try:
        t0 = time.perf_counter()
        r = simulate(nodes=args.nodes, days=args.days, interval=args.interval, seed=args.seed,
                     store=f"embedded:{root}")
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    node_rounds = r.nodes * r.rounds
    print(f"simulate {args.nodes} nodes x {args.days:g} days x {args.interval:g} s (seed {args.seed}), "
          f"{os.cpu_count()} CPUs")
    print(f"  seconds        {seconds:.1f}")
    print(f"  rows written   {r.rows:,} ({r.rows / seconds / 1e6:.2f} M rows/s)")
    print(f"  node-rounds    {node_rounds:,} ({node_rounds / seconds:,.0f}/s)")
    print(f"  store size     {size / 2**30:.2f} GiB")
    print(f"  ratio to goal  {seconds / GOAL_SECONDS:.2f} (goal {GOAL_SECONDS:.0f} s; below 1 meets it)")
    for name, n in sorted(r.rows_by_measurement.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<14} {n:>12,}")
    return 0 if seconds < GOAL_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
