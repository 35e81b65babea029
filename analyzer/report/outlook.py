"""The run's demand forecast (analyzer.forecast.CapacityForecaster, as fitted by `fleetwise analyze`) and its
recommendations (analyzer.recommend), as the report shows them.

Saturation: the first forecast hour at which the forecast mean reaches the pool's capacity, within the
model's own horizon; the forecaster's summary adds the first hour its upper bound does (shortfall_time), the
earliest date capacity may run out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GAIN_COLUMNS = ("gpu_hours_week", "core_hours_week", "memory_gib_hours_week", "kwh_week", "money_week")
TOP_RECOMMENDATIONS = 15


@dataclass
class Forecast:
    table: Any = None  # per pool: capacity, demand this week, peak forecast, saturation dates
    history: Any = None  # the run's demand table [time, pool, demand, capacity]
    prediction: Any = None  # [time, pool, forecast, lower, upper]
    horizon: str = ""
    notes: list[str] = field(default_factory=list)


def forecast(run, start, end) -> Forecast:
    import pandas as pd

    out = Forecast()
    try:
        model = run.model("forecast")
    except KeyError as e:  # not fitted: the manifest's reason
        out.notes.append(f"no demand forecast: {e.args[0] if e.args else e}")
        return out
    out.horizon = str(model.horizon)
    pred = model.predict()
    summary = model.summary()
    fitted = summary[summary["structure"] != "skipped"]
    history = run.table("demand") if "demand" in run.manifest.get("tables", {}) else None
    week = None
    if history is not None:
        t = history["time"]
        week = history[(t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))].groupby("pool")["demand"].mean()
    rows = []
    for r in fitted.itertuples():
        p = pred[pred["pool"] == r.pool]
        cap = r.capacity
        reached = p[p["forecast"] >= cap] if cap == cap else p.iloc[0:0]
        rows.append({"pool": r.pool, "capacity": cap,
                     "demand_mean_this_week": None if week is None else week.get(r.pool),
                     "peak_forecast": r.peak_forecast, "peak_time": r.peak_time,
                     "saturates": reached["time"].iloc[0] if len(reached) else pd.NaT,
                     "may_saturate": r.shortfall_time, "headroom": r.headroom, "structure": r.structure})
    for r in summary[summary["structure"] == "skipped"].itertuples():
        out.notes.append(f"{r.pool}: not forecast ({r.seasonalities.removeprefix('skipped: ')})")
    out.table = pd.DataFrame(rows, columns=["pool", "capacity", "demand_mean_this_week", "peak_forecast",
                                            "peak_time", "saturates", "may_saturate", "headroom", "structure"])
    out.history, out.prediction = history, pred
    return out


@dataclass
class Recommendations:
    totals: Any = None  # one row: count and total gains per week
    by_kind: Any = None
    top: Any = None  # the largest, with the gain in words
    all: Any = None
    currency: str = ""
    notes: list[str] = field(default_factory=list)


def recommendations(run) -> Recommendations:
    import pandas as pd

    from analyzer.recommend.formats import gain_text

    out = Recommendations()
    try:
        recs = run.table("recommendations")
    except KeyError:
        step = run.manifest.get("steps", {}).get("recommend", {})
        out.notes.append(f"no recommendations: {step.get('reason') or 'the run has no recommend step'}")
        return out
    out.all = recs
    currencies = sorted(set(recs["currency"].dropna().astype(str)) - {""}) if len(recs) else []
    out.currency = "/".join(currencies)
    out.totals = pd.DataFrame([{"recommendations": len(recs), **{c: float(recs[c].sum()) for c in GAIN_COLUMNS},
                                "currency": out.currency}])
    g = recs.groupby("kind", sort=True)
    out.by_kind = pd.concat([g.size().rename("recommendations"), g[list(GAIN_COLUMNS)].sum()], axis=1).reset_index()
    top = recs.head(TOP_RECOMMENDATIONS)
    out.top = pd.DataFrame({"kind": top["kind"], "target": top["target_type"] + " " + top["target"],
                            "gain_per_week": [gain_text(r) for r in top.to_dict("records")],
                            "risk": top["risk"], "action": top["action"]})
    return out
