"""The alerts the evaluator fired, as a table: what the dashboard's /alerts page and the weekly report
read. One row per alert (a rule and a label set, from firing to resolved)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from analyzer.alerts.state import HISTORY_FILE

COLUMNS = ["rule", "severity", "state", "starts_at", "ends_at", "labels", "summary"]
log = logging.getLogger("fleetwise.alerts")


def load_alert_history(state_dir: str | Path = "var/alerts", start=None, end=None):
    """Alerts of `fleetwise alerts run` kept in state_dir, one row each, oldest first.

    Columns: rule, severity, state ("firing" or "resolved"), starts_at and ends_at (UTC timestamps;
    ends_at NaT while firing), labels (a JSON object as a string, sorted keys, without alertname and
    severity), summary. start / end (anything pandas reads as a time; naive is UTC) keep the alerts
    active at some moment of [start, end): started before end, and not resolved before start. A missing
    directory or file gives an empty table with these columns."""
    import pandas as pd

    from agents.query.base import to_timestamp

    rows: dict[tuple[str, float], dict] = {}
    path = Path(state_dir) / HISTORY_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for n, line in enumerate(lines, 1):
        try:
            e = json.loads(line)
            key = (e["fingerprint"], float(e["starts_at"]))
        except (ValueError, KeyError, TypeError):
            # a line cut short by a crash mid-append: the rest of the history still counts
            log.warning("%s:%d: skipping an unreadable history line", path, n)
            continue
        labels = {k: v for k, v in e.get("labels", {}).items() if k not in ("alertname", "severity")}
        row = rows.setdefault(key, {"rule": e["rule"], "severity": e.get("severity", ""), "state": "firing",
                                    "starts_at": key[1], "ends_at": None,
                                    "labels": json.dumps(labels, sort_keys=True), "summary": e.get("summary", "")})
        if e.get("event") == "resolved":
            row["state"], row["ends_at"] = "resolved", e.get("ends_at")
    df = pd.DataFrame(list(rows.values()), columns=COLUMNS)
    for c in ("starts_at", "ends_at"):
        # epoch seconds -> ns, as every time column of the query API (agents/query/base.py)
        df[c] = pd.to_datetime(df[c].astype("float64"), unit="s", utc=True).dt.as_unit("ns")
    for c in ("rule", "severity", "state", "labels", "summary"):
        df[c] = df[c].astype(object)
    if start is not None:
        s = to_timestamp(start)
        df = df[df["ends_at"].isna() | (df["ends_at"] >= s)]
    if end is not None:
        df = df[df["starts_at"] < to_timestamp(end)]
    return df.sort_values(["starts_at", "rule", "labels"], kind="stable").reset_index(drop=True)
