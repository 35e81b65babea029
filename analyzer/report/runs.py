"""Which analyze run a weekly report reads: the newest completed run whose window covers the whole week, else
the one that covers most of it (the report then says how much). Runs are read through analyzer.state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from analyzer.state import SavedRun, StateDir, StateError


@dataclass
class ChosenRun:
    run: SavedRun | None
    start: dt.datetime | None = None  # the run's window
    end: dt.datetime | None = None
    covered: float = 0.0  # share of the week inside the run's window
    reason: str = ""  # why there is no run, when run is None

    @property
    def exact(self) -> bool:
        return self.covered >= 1.0


def _window(run: SavedRun) -> tuple[dt.datetime, dt.datetime] | None:
    w = run.manifest.get("window") or {}
    try:
        return dt.datetime.fromisoformat(w["start"]), dt.datetime.fromisoformat(w["end"])
    except (KeyError, TypeError, ValueError):
        return None


def choose_run(state_dir, week_start: dt.datetime, week_end: dt.datetime) -> ChosenRun:
    state = StateDir(state_dir)
    try:
        ids = state.run_ids()
    except OSError as e:
        return ChosenRun(None, reason=f"state directory {state_dir}: {e.strerror or e}")
    best: tuple[float, str] | None = None
    chosen = ChosenRun(None, reason=f"no completed analyze run in {state_dir}")
    span = (week_end - week_start).total_seconds()
    for run_id in ids:
        try:
            run = state.load(run_id)
        except StateError:
            continue  # a damaged run is not a reason to give up on the others
        window = _window(run)
        if window is None:
            continue
        lo, hi = max(window[0], week_start), min(window[1], week_end)
        covered = max(0.0, (hi - lo).total_seconds()) / span
        if covered <= 0:
            continue
        key = (covered, run_id)  # most of the week first, then the newest
        if best is None or key > best:
            best = key
            chosen = ChosenRun(run, window[0], window[1], covered)
    if chosen.run is None and ids:
        chosen.reason = (f"no analyze run in {state_dir} covers the week: run `fleetwise analyze --since "
                         f"{week_start:%Y-%m-%dT%H:%M:%SZ} --until {week_end:%Y-%m-%dT%H:%M:%SZ}`")
    return chosen
