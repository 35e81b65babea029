"""Which jobs exist and when they ran, from whatever job-level telemetry the store has.

The job table starts from one row per (host, job) series with its first and last sample time. That comes
from the agent's `job` measurement (cgroups: CPUs, memory) when it exists, and from `job_gpu` (per-job GPU
series: the agent's NVML attribution, dcgm-exporter's pod / hpc_job labels, the GenAI trace's pods) for
jobs that only have GPU telemetry. A job seen only on GPUs gets NaN for every column its cgroup would have
given (CPUs, memory, CPU cores): unknown, never zero or guessed. `lacked(...)` names what was missing, so
the analyze manifest can say why a column is empty.
"""

from __future__ import annotations

JOB_KEYS = ["job", "scheduler", "user"]
# job_gpu fields whose samples show a job on a GPU; the GenAI trace writes them as separate points
GPU_SPAN_FIELDS = ("utilization_ratio", "memory_used_bytes")
CGROUP_COLUMNS = ("cpus", "cpus_end", "peak", "limit", "cores", "cores_max")


def submit(fetch) -> None:
    """The job_gpu span query (first and last sample per host and job), beside the ones features submits."""
    stats = {f"{a}:{f}": (f, a) for f in GPU_SPAN_FIELDS for a in ("first_time", "last_time")}
    fetch.submit("job_gpu_span", "job_gpu", stats, by=["host", *JOB_KEYS])


def series(job, gpu_span):
    """One row per (host, job) series: the `job` measurement's rows (job, may be None) plus, for jobs only
    seen on GPUs, rows built from the job_gpu spans with NaN cgroup columns. None when neither has any."""
    import numpy as np
    import pandas as pd

    if job is not None:
        job = job[job["since"].notna()]  # a job known only through fields other than cpus_allocated
        if job.empty:
            job = None
    if gpu_span is not None:
        firsts = gpu_span[[c for c in gpu_span if c.startswith("first_time:")]]
        lasts = gpu_span[[c for c in gpu_span if c.startswith("last_time:")]]
        gpu_only = gpu_span[["host", *JOB_KEYS]].assign(since=firsts.min(axis=1), until=lasts.max(axis=1))
        gpu_only = gpu_only[gpu_only["since"].notna()]
        if job is not None:
            # jobs with a cgroup series anywhere keep it: their GPUs join them in features._gpu_columns
            known = pd.MultiIndex.from_frame(job[JOB_KEYS]).unique()
            gpu_only = gpu_only[~pd.MultiIndex.from_frame(gpu_only[JOB_KEYS]).isin(known)]
        gpu_only = gpu_only.assign(**{c: np.nan for c in CGROUP_COLUMNS})
        if len(gpu_only):
            job = gpu_only if job is None else pd.concat([job, gpu_only[job.columns]], ignore_index=True)
    if job is None or job.empty:
        return None
    return job.reset_index(drop=True)


def lacked(present: set[str]) -> list[str]:
    """What the job table could not know from the measurements present, one phrase each."""
    out = []
    if "job" not in present:
        out.append("job (cgroups): CPUs, memory and CPU use per job are unknown")
    if "job_gpu" not in present:
        out.append("job_gpu: GPU use per job is unknown")
    if "gpu" not in present:
        out.append("gpu: GPU model, memory size (so memory headroom), power and energy are unknown")
    if not present & {"disk", "net", "infiniband", "lustre"}:
        out.append("disk, net, infiniband, lustre: I/O rates per job are unknown")
    if "job_progress" not in present:
        out.append("job_progress: throughput is unknown")
    return out
