"""Output formats of `fleetwise recommend`, one small function each, registered by name (as KRR does).

Each takes the recommendations and skipped tables (already filtered and sorted) and returns the text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

FORMATS: dict[str, Callable] = {}
TABLE_COLUMNS = ("id", "kind", "target", "gain", "risk", "action")


def register(name: str) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        FORMATS[name] = fn
        return fn
    return wrap


def gain_text(row) -> str:
    """The gains of one row that are not zero, money last."""
    parts = [f"{row['gpu_hours_week']:,.1f} GPU-h" if row["gpu_hours_week"] else "",
             f"{row['core_hours_week']:,.0f} core-h" if row["core_hours_week"] else "",
             f"{row['memory_gib_hours_week']:,.0f} GiB-h" if row["memory_gib_hours_week"] else "",
             f"{row['kwh_week']:,.1f} kWh" if row["kwh_week"] else "",
             f"{row['money_week']:,.2f} {row['currency']}" if row["money_week"] else ""]
    return ", ".join(p for p in parts if p) + " /week" if any(parts) else "-"


def _records(frame) -> list[dict]:
    out = []
    for r in frame.to_dict("records"):
        r = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        r["evidence"] = json.loads(r["evidence"]) if r.get("evidence") else {}
        for k in ("window_start", "window_end"):
            r[k] = r[k].isoformat() if hasattr(r[k], "isoformat") else r[k]
        out.append(r)
    return out


@register("json")
def to_json(recs, skipped) -> str:
    return json.dumps({"recommendations": _records(recs), "skipped": skipped.to_dict("records")}, indent=1) + "\n"


@register("csv")
def to_csv(recs, skipped) -> str:
    return recs.to_csv(index=False)


@register("markdown")
def to_markdown(recs, skipped) -> str:
    lines = ["| # | kind | target | gain per week | risk | action |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(recs.to_dict("records"), 1):
        cells = [str(i), r["kind"], f"{r['target_type']} `{r['target']}`", gain_text(r), r["risk"], r["action"]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if len(skipped):
        lines += ["", f"{len(skipped)} target(s) without a recommendation, e.g.:", ""]
        lines += [f"- {s['kind']} {s['target']}: {s['reason']}" for s in skipped.head(10).to_dict("records")]
    return "\n".join(lines) + "\n"


@register("table")
def to_table(recs, skipped, width: int = 160) -> str:
    if len(recs) == 0:
        out = "no recommendations\n"
    else:
        lines = []
        for i, r in enumerate(recs.to_dict("records"), 1):
            lines.append(f"{i:>3}. [{r['kind']}] {r['target_type']} {r['target']}  gain {gain_text(r)}  ({r['id']})")
            lines.append(f"     {r['action']}")
            lines.append(f"     risk: {r['risk']}")
        out = "\n".join(lines) + "\n"
    if len(skipped):
        out += f"({len(skipped)} target(s) without a recommendation; --format json lists them with the reason)\n"
    return out


def render(name: str, recs, skipped) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name](recs, skipped)
