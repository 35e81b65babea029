"""How well jobs use what they hold, jobstats-style: ratios, a grade and plain-language notes per job,
and duration-weighted means per workload.

Thresholds follow Princeton's jobstats: GPU utilization < 15% is red, < 25% poor; CPU use < 65% of the
cores allocated and memory peak < 70% of the request are flagged.
"""

from __future__ import annotations

import math

GPU_RED, GPU_POOR = 0.15, 0.25
CPU_LOW = 0.65
MEMORY_LOW = 0.70
INPUT_BOUND_CPU = 0.9  # every allocated core busy ...
INPUT_BOUND_GPU = 0.85  # ... while the GPUs wait
IDLE_NOTE_SECONDS = 3600.0
GPU_USED_UTILIZATION = 0.05
MIG_SLICES = ((10, "1g.10gb"), (20, "2g.20gb"), (40, "3g.40gb"))  # of an 80 GB A100 / H100, in GB
MIG_MODELS = ("A100", "H100")


def job_efficiency(jobs):
    """Per job: gpu_utilization, gpu_memory_ratio, cpu_ratio, memory_ratio, time_ratio, energy_kwh,
    gpu_hours_held, gpu_hours_idle, gpu_memory_headroom_bytes, gpu_grade (red/poor/ok/"" for CPU jobs),
    notes (list of str)."""
    import numpy as np
    import pandas as pd

    def col(c):
        return pd.to_numeric(jobs[c], errors="coerce") if c in jobs else pd.Series(np.nan, index=jobs.index)

    out = pd.DataFrame({"job": jobs["job"], "workload": jobs.get("workload", "")})
    gpus = col("gpus").fillna(0)
    util = col("gpu_utilization_mean")
    out["gpu_utilization"] = util
    out["gpu_memory_ratio"] = col("gpu_memory_used_max_bytes") / col("gpu_memory_total_bytes")
    out["cpu_ratio"] = col("cpu_cores_mean") / col("cpus_allocated").where(col("cpus_allocated") > 0)
    out["memory_ratio"] = col("memory_peak_bytes") / col("memory_limit_bytes").where(col("memory_limit_bytes") > 0)
    out["time_ratio"] = col("duration_seconds") / col("time_limit_seconds").where(col("time_limit_seconds") > 0)
    out["energy_kwh"] = col("energy_joules") / 3.6e6
    # GPU time in the units a site is billed in; idle GPU-hours count every GPU of the job idle for the
    # share of time its least idle GPU was (exact for one GPU, a lower bound for more)
    held = gpus.where(gpus > 0)
    out["gpu_hours_held"] = held * col("duration_seconds") / 3600
    out["gpu_hours_idle"] = held * col("gpu_idle_seconds") / 3600
    # NaN where the GPU's memory size is unknown (no gpu measurement): never a guessed board size
    out["gpu_memory_headroom_bytes"] = col("gpu_memory_total_bytes") - col("gpu_memory_used_max_bytes")
    grade = np.where(util < GPU_RED, "red", np.where(util < GPU_POOR, "poor", "ok"))
    out["gpu_grade"] = np.where((gpus > 0) & util.notna(), grade, "")
    out["duration_seconds"] = col("duration_seconds")
    out["notes"] = [_notes(r) for r in pd.DataFrame({
        "gpus": gpus, "used": col("gpus_used"), "util": util, "idle": col("gpu_idle_seconds"),
        "mem": col("gpu_memory_used_max_bytes"),
        "total": col("gpu_memory_total_bytes"), "acc": jobs.get("accelerator", ""), "cpu": out["cpu_ratio"],
        "memr": out["memory_ratio"], "time": out["time_ratio"]}).itertuples()]
    return out.reset_index(drop=True)


def _notes(r) -> list[str]:
    notes: list[str] = []
    gpu = r.gpus > 0 and not math.isnan(r.util)
    if gpu:
        if not math.isnan(r.used):  # counted per GPU by the job table (analyzer.features)
            used = int(r.used)
        else:  # a table without the count: inferred from the mean over the held GPUs
            used = min(int(r.gpus), math.ceil(r.util * r.gpus - GPU_USED_UTILIZATION)) if r.util >= 0.05 else 0
        if used < r.gpus:
            notes.append(f"held {int(r.gpus)} GPU{'s' * (r.gpus != 1)}, used {max(used, 0)}")
        if r.idle >= IDLE_NOTE_SECONDS:
            notes.append(f"GPU idle for {r.idle / 3600:.0f} h")
        if r.util < GPU_POOR and r.total >= 79e9 and any(m in str(r.acc) for m in MIG_MODELS):
            fit = next((name for gb, name in MIG_SLICES if r.mem <= gb * 1e9), None)
            if fit:
                notes.append(f"fits a MIG slice ({fit})")
        if r.cpu >= INPUT_BOUND_CPU and r.util < INPUT_BOUND_GPU:
            notes.append("CPU-bound input pipeline")
    elif not math.isnan(r.cpu) and r.cpu < CPU_LOW:
        notes.append(f"CPU use {r.cpu:.0%} of the cores allocated")
    if not math.isnan(r.memr) and r.memr < MEMORY_LOW:
        notes.append(f"memory peak {r.memr:.0%} of the request")
    if not math.isnan(r.time) and r.time < 0.5:
        notes.append(f"used {r.time:.0%} of its time limit")
    return notes


def workload_efficiency(per_job):
    """Duration-weighted means of the ratios per workload, with job count and total energy."""
    import numpy as np

    ratios = ["gpu_utilization", "gpu_memory_ratio", "cpu_ratio", "memory_ratio", "time_ratio"]
    rows = []
    for wl, g in per_job.groupby("workload", sort=True):
        w = g["duration_seconds"].fillna(0)
        row = {"workload": wl, "jobs": len(g), "energy_kwh": g["energy_kwh"].sum(min_count=1)}
        for r in ratios:
            ok = g[r].notna() & (w > 0)
            row[r] = float(np.average(g[r][ok], weights=w[ok])) if ok.any() else np.nan
        rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows, columns=["workload", "jobs", *ratios, "energy_kwh"])
