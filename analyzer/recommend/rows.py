"""One recommendation as the families build it, and the table every reader gets (columns, money, ids).

Gains are per week: what the window showed, scaled by 7 days / the window's length. Money is computed from
the price table ([recommend.prices]) per resource and, for GPUs, per accelerator type.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

GIB = 2**30
WEEK_HOURS = 7 * 24.0
KINDS = ("rightsize", "gpu", "powercap", "rebalance", "consolidate", "fragmentation")
TARGET_TYPES = ("job", "workload", "user", "node", "pool")
COLUMNS = ["id", "kind", "target_type", "target", "owner", "accelerator", "action", "gpu_hours_week",
           "core_hours_week", "memory_gib_hours_week", "kwh_week", "money_week", "currency", "exceed_probability",
           "slowdown", "slowdown_low", "slowdown_high", "below_peak", "risk", "method", "evidence",
           "window_start", "window_end"]
SKIPPED_COLUMNS = ["kind", "target_type", "target", "reason"]


@dataclass
class Rec:
    """One proposed action. Gains are per week and positive when something is freed or saved; slowdown is
    time(new) / time(now) - 1 (NaN: unknown), with its interval; exceed_probability is the empirical chance
    usage goes above the new size."""

    kind: str
    target_type: str
    target: str
    action: str
    risk: str
    evidence: dict[str, Any] = field(default_factory=dict)
    accelerator: str = ""
    owner: str = ""
    gpu_hours_week: float = 0.0
    core_hours_week: float = 0.0
    memory_gib_hours_week: float = 0.0
    kwh_week: float = 0.0
    money_week: float | None = None  # None: priced from the resources; set when a change is priced directly
    exceed_probability: float = math.nan
    slowdown: float = math.nan
    slowdown_low: float = math.nan
    slowdown_high: float = math.nan
    below_peak: bool = False
    method: str = ""
    detail: str = ""  # what makes the id unique within (kind, target) (e.g. the resource)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown recommendation kind {self.kind!r}")
        if self.target_type not in TARGET_TYPES:
            raise ValueError(f"unknown target type {self.target_type!r}")


@dataclass
class Skipped:
    """No recommendation for a target, and why (the reason names the minimum it lacked)."""

    kind: str
    target_type: str
    target: str
    reason: str


def rec_id(kind: str, target_type: str, target: str, detail: str) -> str:
    """Stable across runs: the same action on the same target keeps its id, so a reader can follow it."""
    digest = hashlib.sha1(f"{kind}\0{target_type}\0{target}\0{detail}".encode()).hexdigest()[:8]
    return f"{kind}-{digest}"


def money(rec: Rec, prices) -> float:
    """Money per week of a recommendation: GPU-hours at its accelerator's price, core-hours, GiB-hours, kWh."""
    if rec.money_week is not None:
        return rec.money_week
    return (rec.gpu_hours_week * prices.gpu_price(rec.accelerator) + rec.core_hours_week * prices.core_hour
            + rec.memory_gib_hours_week * prices.memory_gib_hour + rec.kwh_week * prices.kwh)


def to_frame(recs: list[Rec], prices, window: tuple[Any, Any]):
    """The recommendations table, largest money gain first (then GPU-hours, kWh, core-hours)."""
    import pandas as pd

    rows = []
    start, end = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    for r in recs:
        rows.append({
            "id": rec_id(r.kind, r.target_type, r.target, r.detail), "kind": r.kind, "target_type": r.target_type,
            "target": r.target, "owner": r.owner, "accelerator": r.accelerator, "action": r.action,
            "gpu_hours_week": float(r.gpu_hours_week), "core_hours_week": float(r.core_hours_week),
            "memory_gib_hours_week": float(r.memory_gib_hours_week), "kwh_week": float(r.kwh_week),
            "money_week": float(money(r, prices)), "currency": prices.currency,
            "exceed_probability": float(r.exceed_probability), "slowdown": float(r.slowdown),
            "slowdown_low": float(r.slowdown_low), "slowdown_high": float(r.slowdown_high),
            "below_peak": bool(r.below_peak), "risk": r.risk, "method": r.method,
            "evidence": json.dumps(_jsonable(r.evidence), sort_keys=True),
            "window_start": start, "window_end": end})
    if not rows:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        return frame
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return sort(frame)


def sort(frame):
    """Largest gain first: money, then GPU-hours, kWh, core-hours; the id breaks ties so the order is stable."""
    return frame.sort_values(["money_week", "gpu_hours_week", "kwh_week", "core_hours_week", "id"],
                             ascending=[False, False, False, False, True], kind="stable").reset_index(drop=True)


def skipped_frame(skipped: list[Skipped]):
    import pandas as pd

    return pd.DataFrame([vars(s) for s in skipped], columns=SKIPPED_COLUMNS).astype(str) if skipped else \
        pd.DataFrame({c: pd.Series(dtype=object) for c in SKIPPED_COLUMNS})


def _jsonable(value: Any) -> Any:
    """Evidence as JSON: floats to 6 digits (what a reader can use), NaN as null, numpy scalars unwrapped."""
    if isinstance(value, dict):
        return {str(k): _jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(x) for x in value]
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, str, int)):
        return value
    from analyzer.state import jsonable

    return _jsonable(jsonable(value))


def fmt_hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:,.1f}"


def fmt_pct(x: float) -> str:
    return "unknown" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"
