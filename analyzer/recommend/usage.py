"""Per-workload usage histories and the sizing call every right-sizing family shares.

The estimators themselves (decayed percentiles plus a margin, and the krr / vpa baselines) are in
analyzer.recommend.sizing; this module feeds them every workload at once (estimate_sizes is vectorized, so
100,000 jobs size in a few calls) and turns the settings of [recommend] into the estimator's settings.
"""

from __future__ import annotations

import math
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
class Groups:
    """The jobs of the recurring workloads (workload != ""), grouped by `key` (the workload, or the workload and
    its accelerator), in start order; per-key reductions are vectorized over all groups at once."""

    jobs: Any  # job-table rows, sorted by key and start
    key: Any  # pandas Series of the group key per row
    times_s: np.ndarray  # job start, seconds since the epoch

    @classmethod
    def of(cls, jobs, by_accelerator: bool = False) -> Groups:
        j = jobs[jobs["workload"].astype(str) != ""] if len(jobs) else jobs
        key = j["workload"].astype(str)
        if by_accelerator:
            key = key + "\0" + j["accelerator"].astype(str)
        j = j.assign(_key=key.to_numpy()).sort_values(["_key", "start", "job"], kind="stable")
        return cls(j, j["_key"], j["start"].to_numpy("datetime64[ns]").view("int64") / 1e9)

    def slices(self) -> dict[str, slice]:
        """key -> its rows' positions (the rows are sorted by key: one slice each, no mask per group)."""
        keys = self.key.to_numpy(object)
        if len(keys) == 0:
            return {}
        edges = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [len(keys)]])
        return {keys[a]: slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)}

    def array(self, name: str) -> np.ndarray:
        return self.jobs[name].to_numpy(dtype=float, na_value=np.nan)

    def col(self, name: str):
        import pandas as pd

        return pd.Series(self.jobs[name].to_numpy(dtype=float, na_value=np.nan), index=self.jobs.index)

    @property
    def hours(self):
        return self.col("duration_seconds") / 3600.0

    def count(self):
        return self.key.value_counts()

    def median(self, values):
        return values.groupby(self.key).median()

    def sum(self, values):
        return values.groupby(self.key).sum()

    def owners(self):
        """key -> the one user who ran it ("" when several did)."""
        users = self.jobs["user"].astype(str)
        one = users.groupby(self.key).nunique() == 1
        return users.groupby(self.key).first().where(one, "")

    def estimate(self, values, resource: str, ctx) -> dict[str, Any]:
        """key -> SizeEstimate of one resource (NaN usage dropped with its time; keys with none are absent)."""
        from analyzer.recommend.sizing import SizeEstimate, estimate_sizes

        v = values.to_numpy(float)
        ok = np.isfinite(v)
        if not ok.any():
            return {}
        r = estimate_sizes(self.key.to_numpy()[ok], self.times_s[ok], v[ok], method=ctx.settings.method,
                           resource=resource, settings=ctx.sizing)
        out = {}
        for i, k in enumerate(r["series"]):
            value, n, peak = float(r["value"][i]), int(r["n"][i]), float(r["peak"][i])
            if math.isnan(value):
                out[k] = SizeEstimate(None, 0.0, peak, n,
                                      f"too little history: {n} points, at least {r['min_points']} needed")
                continue
            note = (f"VPA bounds [{float(r['lower'][i]):.6g}, {float(r['upper'][i]):.6g}]"
                    if "lower" in r else None)
            out[k] = SizeEstimate(value, float(r["exceed_probability"][i]), peak, n, note)
        return out


def split_key(key: str) -> tuple[str, str]:
    workload, _, acc = key.partition("\0")
    return workload, acc


def risk_text(est, new: float, over: int, total: int, unit: str, fmt=lambda v: f"{v:,.1f}") -> tuple[str, bool]:
    """The risk sentence of a new size: the empirical chance usage exceeds it, and whether it is below the
    observed peak (always said when it is; `over` of `total` jobs used more than `new`)."""
    text = (f"P(usage > {fmt(new)} {unit}) = {100 * est.exceed_probability:.1f}% over the decayed history of "
            f"{est.n} jobs")
    below = bool(math.isfinite(est.peak) and new < est.peak - 1e-9)
    if below:
        text += f"; BELOW the observed peak of {fmt(est.peak)} {unit} ({over} of {total} jobs used more)"
    if est.reason:
        text += f"; {est.reason}"
    return text, below
