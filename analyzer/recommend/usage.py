"""Per-workload usage histories and the sizing call every right-sizing family shares.

The estimators themselves (decayed percentiles plus a margin, and the krr / vpa baselines) are in
analyzer.recommend.sizing; this module feeds them one workload's jobs at a time and turns the settings of
[recommend] into the estimator's settings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def sizing_settings(settings) -> Any:
    """SizingSettings with the overrides [recommend] sets (half-life, percentile, margin, min jobs)."""
    from analyzer.recommend.sizing import SizingSettings

    overrides = {"half_life_hours": settings.half_life_hours, "percentile": settings.percentile,
                 "margin": settings.margin, "min_points": settings.min_jobs}
    return SizingSettings(**{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Group:
    """One workload's jobs, in start order, with what the families need as arrays."""

    workload: str
    jobs: Any  # the job-table rows
    times_s: np.ndarray  # job start, seconds since the epoch
    owner: str  # the one user who ran it, "" when several did

    @property
    def n(self) -> int:
        return len(self.jobs)

    def col(self, name: str) -> np.ndarray:
        return self.jobs[name].to_numpy(dtype=float, na_value=np.nan)

    @property
    def hours(self) -> np.ndarray:
        return self.col("duration_seconds") / 3600.0


def workloads(jobs) -> Iterator[Group]:
    """The recurring workloads: every non-empty workload label, its jobs sorted by start."""
    if len(jobs) == 0 or "workload" not in jobs:
        return
    j = jobs[jobs["workload"].astype(str) != ""]
    j = j.sort_values(["workload", "start", "job"], kind="stable")
    starts = j["start"].to_numpy("datetime64[ns]").view("int64") / 1e9
    labels = j["workload"].astype(str).to_numpy()
    bounds = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    edges = np.concatenate([[0], bounds, [len(labels)]])
    users = j["user"].astype(str).to_numpy()
    for a, b in itertools.pairwise(edges):
        owners = set(users[a:b])
        yield Group(str(labels[a]), j.iloc[a:b], starts[a:b], owners.pop() if len(owners) == 1 else "")


def estimate(group: Group, values: np.ndarray, resource: str, ctx) -> Any:
    """SizeEstimate of one resource over a workload's jobs (NaN usage is dropped with its time)."""
    from analyzer.recommend.sizing import estimate_size

    ok = np.isfinite(values)
    return estimate_size(group.times_s[ok], values[ok], method=ctx.settings.method, resource=resource,
                         settings=ctx.sizing)


def median(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if len(v) else math.nan


def risk_text(est, new: float, values: np.ndarray, unit: str, fmt=lambda v: f"{v:,.1f}") -> tuple[str, bool]:
    """The risk sentence of a new size: the empirical chance usage exceeds it, and whether it is below the
    observed peak (always said when it is)."""
    finite = values[np.isfinite(values)]
    over = int((finite > new + 1e-9).sum())
    text = (f"P(usage > {fmt(new)} {unit}) = {100 * est.exceed_probability:.1f}% over the decayed history of "
            f"{est.n} jobs")
    below = bool(math.isfinite(est.peak) and new < est.peak - 1e-9)
    if below:
        text += f"; BELOW the observed peak of {fmt(est.peak)} {unit} ({over} of {len(finite)} jobs used more)"
    notes = [n for n in (est.reason or "").split("; ") if n and not n.startswith("below observed peak")]
    if notes:  # the estimator's caveats; its below-peak note is said above, in words
        text += "; " + "; ".join(notes)
    return text, below
