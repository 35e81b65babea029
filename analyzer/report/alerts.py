"""The week's alerts, from the alert evaluator's history (analyzer.alerts.history.load_alert_history).

The evaluator is optional: without it the report says it is not installed rather than showing an empty table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_ALERTS_STATE = "var/alerts"
COLUMNS = ["rule", "severity", "state", "starts_at", "ends_at", "labels", "summary"]


@dataclass
class Alerts:
    table: Any = None  # one row per alert active at some time in the week
    by_rule: Any = None
    notes: list[str] = field(default_factory=list)


def week_alerts(state_dir, start, end) -> Alerts:
    import pandas as pd

    out = Alerts()
    try:
        from analyzer.alerts.history import load_alert_history
    except ImportError:
        out.notes.append("the alert evaluator is not installed (analyzer.alerts), so this report has no alerts")
        return out
    if state_dir is None:  # no alert directory given (the demo): no alerts section, rather than Path(None)
        out.notes.append("no alert state directory was given, so this report has no alerts")
        return out
    try:
        hist = load_alert_history(state_dir=state_dir, start=start, end=end)
    except (OSError, ValueError) as e:
        out.notes.append(f"alert history in {state_dir} could not be read: {e}")
        return out
    hist = hist.reindex(columns=COLUMNS)
    if len(hist):
        starts = pd.to_datetime(hist["starts_at"], utc=True)
        ends = pd.to_datetime(hist["ends_at"], utc=True)
        # active at some time in [start, end): began before its end, and had not resolved before its start
        hist = hist[(starts < pd.Timestamp(end)) & (ends.isna() | (ends >= pd.Timestamp(start)))]
    if hist.empty:
        out.notes.append("no alert fired in the week")
    out.table = hist.reset_index(drop=True)
    g = out.table.groupby(["rule", "severity"], sort=True)
    out.by_rule = g.size().rename("alerts").reset_index() if len(out.table) else None
    return out
