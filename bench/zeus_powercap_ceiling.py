"""How close any cap-at-a-fraction-of-the-draw rule can come to the power-cap oracle (issue 15), beside today's
decision, each as a ratio to the oracle's saving. Goal: >= 0.9 of the oracle with <= 5 % of choices over budget.

    .venv/bin/python bench/zeus_powercap_ceiling.py [--data ../shared/data/zeus] [--holdout v100,a40,p100] [--json]

Per held-out type: the oracle's saving (the best measured saving within the true 10 % slowdown budget), the part
of it from groups where no lower limit can bind (noise), the best single threshold x* (cap >= x* times the
measured uncapped draw) and the best per-workload thresholds, both chosen in-sample on that type with the
measured draw (analyzer.validate.zeus_powercap.ceiling: optimistic bounds), and `fleetwise validate zeus`'s own
decision at K = 1 (nested leave-one-type-out, no held-out information).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "zeus"))
    p.add_argument("--holdout", default="v100,a40,p100")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from analyzer.validate.zeus import ZeusDataError, load
    from analyzer.validate.zeus_fold import make_fold
    from analyzer.validate.zeus_powercap import ceiling
    from analyzer.validate.zeus_validate import validate

    try:
        data = load(args.data)
        out = {}
        for h in args.holdout.split(","):
            print(f"{h}: bounds, then the K = 1 validation (about 15 s)", file=sys.stderr)
            c = ceiling(make_fold(data, h))
            pc = validate(args.data, h, 1, 20, data=data)["power_cap"]
            o = c["oracle_energy_saving"]
            out[h] = c | {"decision_saving": pc["energy_saving"], "decision_over": pc["over_budget_share"],
                          "ratios_to_oracle": {"noise": c["oracle_from_groups_no_cap_binds"] / o,
                                               "type_threshold": c["type_threshold_saving"] / o,
                                               "workload_threshold": c["workload_threshold_saving"] / o,
                                               "decision": pc["energy_saving"] / o}}
    except ZeusDataError as e:
        print(f"zeus_powercap_ceiling: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print("| held out | oracle | of it: no cap binds (noise) | one x* in-sample: x*, saving (÷ oracle), over "
          "| per-workload x* in-sample: saving (÷ oracle) | decision K = 1: saving (÷ oracle), over |")
    print("|---|---|---|---|---|---|")
    for h, r in out.items():
        q = r["ratios_to_oracle"]
        print(f"| {h} | {r['oracle_energy_saving']:.3f} | {r['oracle_from_groups_no_cap_binds']:.3f} "
              f"| {r['type_threshold']:.3f}, {r['type_threshold_saving']:.3f} ({q['type_threshold']:.2f}), "
              f"{r['type_threshold_over']:.3f} | {r['workload_threshold_saving']:.3f} ({q['workload_threshold']:.2f}) "
              f"| {r['decision_saving']:.3f} ({q['decision']:.2f}), {r['decision_over']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
