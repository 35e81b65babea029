"""The observation table the performance models fit on, built from the job table (analyzer.features)."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ("workload", "accelerator", "devices", "nodes", "power_limit_fraction", "throughput", "unit", "weight",
           "power_watts")


def observations(job_table: pd.DataFrame) -> pd.DataFrame:
    """One row per job with a known workload, an accelerator and a positive finite throughput.

    Columns: workload, accelerator, devices (accelerators per job), nodes, power_limit_fraction
    (power_limit_watts / power_limit_max_watts, NaN when either is unknown), throughput (units/s), unit,
    weight (duration_seconds, 1 where unknown) and power_watts (mean power, an extra column the power-cap model
    uses for energy). Jobs without a throughput say nothing about speed, so they are left out rather than zeroed.
    """
    if job_table is None or len(job_table) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("workload", "accelerator", "unit") else float)
                             for c in COLUMNS})
    jt = job_table
    missing = [c for c in ("workload", "accelerator", "throughput") if c not in jt.columns]
    if missing:
        raise ValueError(f"job table lacks column(s) {', '.join(missing)}")

    def num(col: str, default: float = np.nan) -> pd.Series:
        if col in jt.columns:
            return pd.to_numeric(jt[col], errors="coerce")
        return pd.Series(default, index=jt.index, dtype=float)

    limit, limit_max = num("power_limit_watts"), num("power_limit_max_watts")
    fraction = (limit / limit_max).where((limit > 0) & (limit_max > 0))
    weight = num("duration_seconds", 1.0)
    out = pd.DataFrame({
        "workload": jt["workload"].fillna("").astype(str),
        "accelerator": jt["accelerator"].fillna("").astype(str),
        "devices": num("gpus", 1.0),
        "nodes": num("nodes", 1.0),
        "power_limit_fraction": fraction.clip(upper=1.0),
        "throughput": num("throughput"),
        "unit": jt["unit"].fillna("").astype(str) if "unit" in jt.columns else "",
        "weight": weight.where(weight > 0, 1.0).fillna(1.0),
        "power_watts": num("power_watts_mean"),
    })
    keep = ((out.workload != "") & (out.accelerator != "") & np.isfinite(out.throughput) & (out.throughput > 0)
            & (out.devices.fillna(0) >= 1))
    out = out[keep].copy()
    out["devices"] = out.devices.astype(int)
    out["nodes"] = out.nodes.fillna(1).clip(lower=1).astype(int)
    return out.reset_index(drop=True)
