"""What each host of a node class held over the window: the step function the node families work on.

A node class is the hosts with the same accelerator key and GPU count (GPU hosts) or the same CPU count (CPU
hosts): the only hosts a job can move between without changing what it runs on. A job holds gpus / nodes GPUs
and cpus_allocated / nodes CPUs on each of its hosts from its start to its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassOccupancy:
    name: str  # "a100-80gb x8" or "cpu x128"
    hosts: list[str]
    gpus: np.ndarray  # per host
    gpu_memory: np.ndarray  # bytes per device, per host (NaN: unknown)
    cpus: np.ndarray  # per host (NaN: unknown)
    times: np.ndarray  # event times, seconds; interval k is [times[k], times[k+1])
    gpu_alloc: np.ndarray  # hosts x intervals
    cpu_alloc: np.ndarray  # hosts x intervals
    pieces: object  # DataFrame: job, host, g, c, start_s, end_s, nodes, workload, gpu_mem (per job and host)

    @property
    def dt(self) -> np.ndarray:
        return np.diff(self.times)

    @property
    def is_gpu(self) -> bool:
        return bool(self.gpus.max() > 0)

    def running(self, k: int):
        """The pieces (job x host) running in interval k."""
        p = self.pieces
        return p[(p["start_s"] <= self.times[k]) & (p["end_s"] > self.times[k])]


NO_HOSTS = "no host capacity in the window (the store has no gpu or cpu_info measurements)"


def classes(ctx) -> list[ClassOccupancy]:
    import pandas as pd

    hosts = ctx.host_table()
    jobs = ctx.jobs
    if len(hosts) == 0 or len(jobs) == 0:
        return []
    t0 = pd.Timestamp(ctx.window[0]).value / 1e9
    t1 = pd.Timestamp(ctx.window[1]).value / 1e9
    pieces = jobs.assign(host=jobs["hosts"].str.split(",")).explode("host")
    nodes = pieces["nodes"].clip(lower=1)
    pieces = pd.DataFrame({
        "job": pieces["scheduler"].astype(str) + "/" + pieces["job"].astype(str), "host": pieces["host"],
        "g": (pieces["gpus"] / nodes).to_numpy(float),
        "c": (pieces["cpus_allocated"] / nodes).fillna(0).to_numpy(float),
        "start_s": np.clip(pieces["start"].to_numpy("datetime64[ns]").view("int64") / 1e9, t0, t1),
        "end_s": np.clip(pieces["end"].to_numpy("datetime64[ns]").view("int64") / 1e9, t0, t1),
        "nodes": nodes.to_numpy(int), "workload": pieces["workload"].fillna("").astype(str).to_numpy(),
        "gpu_mem": pieces["gpu_memory_used_max_bytes"].to_numpy(float)})
    pieces = pieces[pieces["end_s"] > pieces["start_s"]]
    h = hosts.assign(_cls=np.where(hosts["gpus"] > 0, hosts["accelerator"].astype(str) + " x"
                                   + hosts["gpus"].astype(int).astype(str),
                                   "cpu x" + hosts["cpus"].fillna(0).astype(int).astype(str)))
    out = []
    for name, grp in h.groupby("_cls", sort=True):
        names = list(grp["host"])
        p = pieces[pieces["host"].isin(names)].reset_index(drop=True)
        times = np.unique(np.concatenate([[t0, t1], p["start_s"], p["end_s"]]))
        idx = {n: i for i, n in enumerate(names)}
        hi = p["host"].map(idx).to_numpy(int)
        a = np.searchsorted(times, p["start_s"].to_numpy())
        b = np.searchsorted(times, p["end_s"].to_numpy())
        alloc = []
        for col in ("g", "c"):
            d = np.zeros((len(names), len(times)))
            np.add.at(d, (hi, a), p[col].to_numpy())
            np.add.at(d, (hi, b), -p[col].to_numpy())
            alloc.append(np.cumsum(d, axis=1)[:, :-1].clip(min=0))
        out.append(ClassOccupancy(str(name), names, grp["gpus"].to_numpy(float),
                                  grp["gpu_memory_bytes"].to_numpy(float), grp["cpus"].to_numpy(float),
                                  times, alloc[0], alloc[1], p))
    return out


def fits(need_g: float, need_c: float, free_g: np.ndarray, free_c: np.ndarray) -> np.ndarray:
    """Which hosts hold a job piece: GPUs, and CPUs where the host's CPU count is known."""
    return (free_g >= need_g - 1e-9) & (np.isnan(free_c) | (free_c >= need_c - 1e-9))


def pack(g: np.ndarray, c: np.ndarray, cap_g: float, cap_c: float) -> int:
    """Nodes first-fit decreasing needs for pieces (g GPUs, c CPUs each) on nodes of cap_g GPUs, cap_c CPUs."""
    free_g: list[float] = []
    free_c: list[float] = []
    for k in np.lexsort((-c, -g)):
        for i in range(len(free_g)):
            if free_g[i] >= g[k] - 1e-9 and (np.isnan(cap_c) or free_c[i] >= c[k] - 1e-9):
                free_g[i] -= g[k]
                free_c[i] -= c[k]
                break
        else:
            free_g.append(cap_g - g[k])
            free_c.append(cap_c - c[k])
    return len(free_g)
