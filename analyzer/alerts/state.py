"""The evaluator's state directory: what is pending and firing (state.json, replaced atomically, so a
crash leaves the old or the new file, never half of one) and the history of every alert that fired and
resolved (history.jsonl, one event a line, appended; analyzer.alerts.history reads it back)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from analyzer.state import atomic_write

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
VERSION = 1


class StateDirError(RuntimeError):
    """The state directory cannot be read or written."""


def fingerprint(labels: dict[str, str]) -> str:
    """One alert's identity: a hash of its sorted labels (alertname included)."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Alert:
    rule: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    state: str  # "pending", "firing" or "resolved"
    active_since: float  # epoch seconds the condition first held (pending start)
    starts_at: float | None = None  # when it fired
    ends_at: float | None = None  # when it resolved
    notify: str = ""  # "firing" or "resolved" while that notice is not delivered yet
    last_sent: float | None = None


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Alert]:
        f = self.path / STATE_FILE
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StateDirError(f"{f}: cannot read the alert state ({e}); move it away to start afresh") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise StateDirError(f"{f}: not a fleetwise alert state (version {VERSION})")
        try:
            return {fp: Alert(**a) for fp, a in doc.get("alerts", {}).items()}
        except (TypeError, AttributeError) as e:
            raise StateDirError(f"{f}: an alert entry is not one this version writes ({e})") from None

    def save(self, alerts: dict[str, Alert]) -> None:
        doc = {"version": VERSION, "alerts": {fp: asdict(a) for fp, a in sorted(alerts.items())}}
        self._replace(self.path / STATE_FILE, json.dumps(doc, indent=1, sort_keys=True) + "\n")

    def append_history(self, events: list[dict]) -> None:
        if not events:
            return
        self._mkdir()
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        try:
            # one write() of whole lines in append mode: concurrent readers see complete lines
            with open(self.path / HISTORY_FILE, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            raise StateDirError(f"{self.path / HISTORY_FILE}: {e.strerror or e}") from None

    def _mkdir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateDirError(f"{self.path}: {e.strerror or e}") from None

    def _replace(self, target: Path, text: str) -> None:
        self._mkdir()
        try:
            atomic_write(target, text)
        except OSError as e:
            raise StateDirError(f"{target}: {e.strerror or e}") from None
