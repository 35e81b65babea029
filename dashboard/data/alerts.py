"""Firing and recently resolved alerts, from the alerts component's history (analyzer.alerts.history).

The alerts component is its own piece of fleetwise; until it is installed this module says so (None) and the
page shows that sentence instead of an empty table that would read as "no alerts".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["state", "severity", "rule", "starts_at", "ends_at", "summary", "labels"]
NOT_INSTALLED = ("The alerts component is not installed yet: this fleetwise has no analyzer.alerts, so there "
                 "are no alert rules or alert history to show.")


def installed() -> bool:
    try:
        import analyzer.alerts.history  # noqa: F401
    except ImportError:
        return False
    return True


def load(state_dir: str | Path | None, start=None, end=None) -> pd.DataFrame | None:
    """Firing alerts first, then resolved ones, newest first; None when the alerts component is missing."""
    try:
        from analyzer.alerts.history import load_alert_history
    except ImportError:
        return None
    kwargs = {"start": start, "end": end}
    if state_dir is not None:
        kwargs["state_dir"] = state_dir
    hist = load_alert_history(**kwargs)
    if hist is None or hist.empty:
        return pd.DataFrame(columns=COLUMNS)
    hist = hist.copy()
    hist["_firing"] = (hist["state"] != "firing").astype(int)
    hist = hist.sort_values(["_firing", "starts_at"], ascending=[True, False], kind="stable")
    return hist.reindex(columns=COLUMNS).reset_index(drop=True)
