"""The week's alerts, from the alert evaluator's history (analyzer.alerts.history.load_alert_history).

The evaluator is optional: without it the report says it is not installed rather than showing an empty table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ALERTS_STATE = "var/alerts"
COLUMNS = ["rule", "severity", "state", "starts_at", "ends_at", "labels", "summary"]


@dataclass
class Alerts:
    table: Any = None  # one row per alert active at some time in the week
    by_rule: Any = None
    notes: list[str] = field(default_factory=list)


def week_alerts(state_dir, start, end) -> Alerts:
    """The alerts active at some time in [start, end), as load_alert_history selects them."""
    out = Alerts()
    try:
        from analyzer.alerts.history import load_alert_history
    except ImportError:
        out.notes.append("the alert evaluator is not installed (analyzer.alerts), so this report has no alerts")
        return out
    state_dir = Path(state_dir or DEFAULT_ALERTS_STATE)
    if not state_dir.is_dir():
        # no history is not "no alert fired": say that the evaluator has not run there
        out.notes.append(f"no alert history in {state_dir}: `fleetwise alerts run` has not run with that state dir")
        return out
    try:
        hist = load_alert_history(state_dir=state_dir, start=start, end=end)
    except (OSError, ValueError) as e:
        out.notes.append(f"alert history in {state_dir} could not be read: {e}")
        return out
    if hist.empty:
        out.notes.append("no alert fired in the week")
        return out
    out.table = hist.reindex(columns=COLUMNS).reset_index(drop=True)
    out.by_rule = out.table.groupby(["rule", "severity"], sort=True).size().rename("alerts").reset_index()
    return out
