"""How fast the packing backtest places the openb trace's 8,152 pods. Goal: < 30 s per method (issue 9).

    .venv/bin/python bench/packing_speed.py [--data ../shared/data/alibaba-gpu-2023] [--json]

Runs every method on the full trace (pods in arrival order, nodes empty at the start) and reports wall
and CPU seconds per method, with the ratio to first-fit (the anchor: one feasibility mask per pod, the
least any method does) and to the 30 s goal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_SECONDS = 30.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/alibaba-gpu-2023"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from analyzer.recommend.packing import METHODS, State, pack, typical_pods
    from analyzer.validate.packing import read_nodes, read_pods

    data = Path(args.data)
    nodes = read_nodes(data / "openb_node_list_all_node.csv")
    pods = read_pods(data / "openb_pod_list_default.csv")
    typ = typical_pods(pods, State.empty(nodes).models)
    out = {"pods": len(pods), "nodes": len(nodes.names), "methods": {}}
    for method in ("first_fit", *[m for m in METHODS if m != "first_fit"]):
        wall, cpu = time.perf_counter(), time.process_time()
        r = pack(method, nodes, pods, typ)
        out["methods"][method] = {"wall_s": round(time.perf_counter() - wall, 2),
                                  "cpu_s": round(time.process_time() - cpu, 2),
                                  "pods_placed": int(r.placed.sum())}
    anchor = out["methods"]["first_fit"]["cpu_s"]
    for r in out["methods"].values():
        r["cpu_vs_first_fit"] = round(r["cpu_s"] / anchor, 1)
        r["wall_vs_goal"] = round(r["wall_s"] / GOAL_SECONDS, 2)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['pods']} pods on {out['nodes']} nodes")
        for m, r in out["methods"].items():
            print(f"  {m:10s} wall {r['wall_s']:6.1f} s  cpu {r['cpu_s']:6.1f} s  "
                  f"({r['cpu_vs_first_fit']:.1f}x first-fit CPU, {r['wall_vs_goal']:.2f} of the 30 s goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
