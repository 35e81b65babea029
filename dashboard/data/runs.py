"""What the latest analyze run saved, shaped for the workloads, recommendations and capacity pages.

Everything comes from `analyzer.state.load_latest(state_dir)`: the run's tables (job table, efficiency,
recommendations, demand) and its fitted models (throughput matrix, scaling curves, power-cap model, capacity
forecaster). A table or model the run does not have gives an empty frame, never an error: the page says
what is missing and why (the manifest's reason).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from analyzer.state import SavedRun

GAIN_COLUMNS = ("gpu_hours_week", "core_hours_week", "memory_gib_hours_week", "kwh_week", "money_week")
EFFICIENCY_JOB_COLUMNS = ("user", "accelerator", "gpus", "hosts", "bottleneck", "start", "end")


# A completed run never changes: what was read of it is kept (for the last few runs), so a page's second
# request reads no Parquet file and unpickles no model again. Keyed by the run's directory.
_LOADED: OrderedDict[str, dict] = OrderedDict()
_LOADED_RUNS = 2
_LOCK = threading.Lock()


def kept(run: SavedRun, key: tuple, load):
    """load(), or what it gave for this run and key before (keep the result read-only)."""
    with _LOCK:
        memo = _LOADED.setdefault(str(run.path), {})
        _LOADED.move_to_end(str(run.path))
        while len(_LOADED) > _LOADED_RUNS:
            _LOADED.popitem(last=False)
        if key in memo:
            return memo[key]
    value = load()  # outside the lock: another run's page need not wait for this one's file
    with _LOCK:
        memo[key] = value
    return value


def forget() -> None:
    """Drop what was kept of every run (bench/dashboard_speed.py times the pages reading their files)."""
    with _LOCK:
        _LOADED.clear()


def table(run: SavedRun | None, name: str) -> pd.DataFrame:
    if run is None:
        return pd.DataFrame()
    try:
        # a shallow copy: pandas copies on write, so a caller adding a column leaves the kept table alone
        return kept(run, ("table", name), lambda: run.table(name)).copy(deep=False)
    except (KeyError, OSError):
        return pd.DataFrame()


def model(run: SavedRun | None, name: str) -> Any | None:
    if run is None:
        return None
    try:
        return kept(run, ("model", name), lambda: run.model(name))
    except (KeyError, OSError):
        return None


def why_missing(run: SavedRun | None, name: str) -> str:
    """The manifest's reason a model was not fitted (or that there is no run at all)."""
    if run is None:
        return "no analyze run in the state directory: run `fleetwise analyze` first"
    entry = run.manifest.get("models", {}).get(name)
    if entry is None:
        return f"run {run.run_id} has no model {name!r}"
    return str(entry.get("reason") or entry.get("status"))


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells a browser grid can show and sort: lists joined, times as ISO text."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object and any(isinstance(v, list | tuple | np.ndarray) for v in out[c].to_numpy()):
            out[c] = out[c].map(lambda v: "; ".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v)
        elif isinstance(out[c].dtype, pd.DatetimeTZDtype):
            # "%Y-%m-%d %H:%M" in C (strftime formats each value in Python)
            minutes = out[c].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[m]")
            text = np.char.replace(np.datetime_as_string(minutes, unit="m"), "T", " ").astype(object)
            out[c] = pd.Series(np.where(np.isnat(minutes), None, text), index=out.index, dtype=object)
    return out


def efficiency(run: SavedRun | None) -> pd.DataFrame:
    """One row per job: the efficiency table (jobstats-style ratios, GPU-hours held and idle, notes) with who
    ran it, where and when (from the job table)."""
    if run is None:
        return pd.DataFrame()
    return kept(run, ("efficiency",), lambda: _efficiency(run)).copy(deep=False)


def _efficiency(run: SavedRun) -> pd.DataFrame:
    eff = table(run, "efficiency")
    if eff.empty:
        return eff
    jobs = table(run, "job_table")
    keep = [c for c in EFFICIENCY_JOB_COLUMNS if c in jobs]
    if len(jobs) and "job" in jobs and keep:
        eff = eff.merge(jobs[["job", *keep]].drop_duplicates("job"), on="job", how="left")
    return _plain(eff)


def workloads(run: SavedRun | None) -> list[str]:
    eff = table(run, "workload_efficiency")
    if len(eff) and "workload" in eff:
        return sorted(str(w) for w in eff["workload"].dropna().unique() if str(w))
    jobs = table(run, "job_table")
    return sorted(str(w) for w in jobs["workload"].dropna().unique() if str(w)) if "workload" in jobs else []


def bottleneck(run: SavedRun | None, workload: str) -> pd.DataFrame:
    """[bottleneck, jobs]: how the workload's jobs were classified, most common first."""
    jobs = table(run, "job_table")
    if jobs.empty or "bottleneck" not in jobs or "workload" not in jobs:
        return pd.DataFrame(columns=["bottleneck", "jobs"])
    b = jobs.loc[jobs["workload"] == workload, "bottleneck"].fillna("unknown").value_counts()
    return pd.DataFrame({"bottleneck": b.index.astype(str), "jobs": b.to_numpy()})


def throughput_row(run: SavedRun | None, workload: str, z: float = 1.96) -> pd.DataFrame:
    """[accelerator, throughput, low, high, observed]: the workload's row of the throughput matrix (per-device
    throughput on each accelerator type, completed where it never ran) with its ~95% interval."""
    cols = ["accelerator", "throughput", "low", "high", "observed"]
    tm = model(run, "throughput")
    if tm is None or workload not in getattr(tm, "matrix_", pd.DataFrame()).index:
        return pd.DataFrame(columns=cols)
    rows = []
    for acc in tm.matrix_.columns:
        mean = float(tm.matrix_.at[workload, acc])
        lo, hi = tm.interval(workload, acc, z=z)
        rows.append({"accelerator": acc, "throughput": mean, "low": lo, "high": hi,
                     "observed": bool(tm.observed_.at[workload, acc])})
    return pd.DataFrame(rows, columns=cols)


def scaling_curves(run: SavedRun | None, workload: str, points: int = 16) -> pd.DataFrame:
    """[accelerator, devices, throughput, low, high]: each fitted scaling model of the workload on 1..max
    devices (up to twice the largest count it was fitted on), with its confidence band."""
    cols = ["accelerator", "devices", "throughput", "low", "high"]
    if run is None:
        return pd.DataFrame(columns=cols)
    parts = []
    for name, entry in sorted(run.manifest.get("models", {}).items()):
        if not name.startswith("scaling[") or entry.get("status") != "fitted" or entry.get("workload") != workload:
            continue
        est = model(run, name)
        if est is None:
            continue
        top = max(2, int(2 * max(getattr(est, "counts_", None) or [8])))
        n = np.unique(np.round(np.geomspace(1, top, points)).astype(int)).astype(float)
        pred, lo, hi = est.predict(n, return_interval=True)
        parts.append(pd.DataFrame({"accelerator": entry.get("accelerator") or "", "devices": n,
                                   "throughput": pred, "low": lo, "high": hi}))
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def power_curves(run: SavedRun | None, workload: str, grid: int = 21) -> pd.DataFrame:
    """[accelerator, cap, slowdown, energy]: time (relative to full power) and energy per unit of work vs the
    power-limit fraction, per accelerator the workload's power-cap model was fitted on."""
    cols = ["accelerator", "cap", "slowdown", "energy"]
    pm = model(run, "power")
    params = getattr(pm, "params_", None)
    if params is None or not len(params):
        return pd.DataFrame(columns=cols)
    parts = []
    for wl, acc in params.index:
        if wl != workload:
            continue
        f = np.linspace(float(params.at[(wl, acc), "min_fraction"]), 1.0, grid)
        slow = np.asarray(pm.slowdown(f, wl, acc), dtype=float)
        try:
            energy = np.asarray(pm.energy(f, wl, acc), dtype=float)
        except ValueError:  # no average power observed for the pair
            energy = np.full_like(f, math.nan)
        parts.append(pd.DataFrame({"accelerator": acc, "cap": f, "slowdown": slow, "energy": energy}))
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def recommendations(run: SavedRun | None, kind: str | None = None) -> pd.DataFrame:
    """The recommender's actions, largest gain first, with their evidence as readable text."""
    recs = table(run, "recommendations")
    if recs.empty:
        return recs
    if kind:
        recs = recs[recs["kind"] == kind]
    recs = recs.copy()
    if "evidence" in recs:
        recs["evidence"] = recs["evidence"].map(_evidence_text)
    return _plain(recs.reset_index(drop=True))


def _evidence_text(raw: Any) -> str:
    try:
        ev = json.loads(raw) if isinstance(raw, str) and raw else (raw or {})
    except json.JSONDecodeError:
        return str(raw)
    if not isinstance(ev, dict):
        return str(ev)
    return "; ".join(f"{k}: {v}" for k, v in ev.items())


def weekly_totals(recs: pd.DataFrame) -> pd.DataFrame:
    """[kind, actions, gpu_hours_week, ...]: gains per week summed per kind of action, and a total row."""
    cols = ["kind", "actions", *GAIN_COLUMNS]
    if recs.empty:
        return pd.DataFrame(columns=cols)
    gains = [c for c in GAIN_COLUMNS if c in recs]
    per = recs.groupby("kind").agg(actions=("kind", "size"), **{c: (c, "sum") for c in gains}).reset_index()
    total = {"kind": "all", "actions": int(per["actions"].sum()), **{c: float(per[c].sum()) for c in gains}}
    out = pd.concat([per.sort_values("kind"), pd.DataFrame([total])], ignore_index=True)
    return out.reindex(columns=cols)


def recommendation_kinds(run: SavedRun | None) -> list[str]:
    recs = table(run, "recommendations")
    return sorted(recs["kind"].dropna().astype(str).unique()) if "kind" in recs else []


def capacity(run: SavedRun | None, horizon: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history [time, pool, demand, capacity], forecast [time, pool, forecast, lower, upper], summary per pool
    with `shortfall_time`: the first time the interval's upper bound exceeds the pool's capacity)."""
    history = table(run, "demand")
    fc = model(run, "forecast")
    if fc is None:
        return history, pd.DataFrame(columns=["time", "pool", "forecast", "lower", "upper"]), pd.DataFrame()
    return history, fc.predict(horizon), fc.summary(horizon)
