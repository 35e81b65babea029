"""Efficiency: ratios and notes on hand-built job tables, idle notes on the simulator's idle jobs."""

from __future__ import annotations

import pandas as pd
import pytest

from analyzer.bottleneck import labelled_table
from analyzer.efficiency import job_efficiency, workload_efficiency

H100 = "NVIDIA H100 80GB HBM3"


def row(**kw) -> dict:
    base = {"job": "1", "workload": "w", "gpus": 4, "accelerator": H100, "gpu_utilization_mean": 0.9,
            "gpu_idle_seconds": 0.0, "gpu_memory_used_max_bytes": 60e9, "gpu_memory_total_bytes": 80e9,
            "cpu_cores_mean": 8.0, "cpus_allocated": 32, "memory_peak_bytes": 90e9, "memory_limit_bytes": 100e9,
            "duration_seconds": 7200.0, "time_limit_seconds": 10800.0, "energy_joules": 7.2e6}
    return {**base, **kw}


def test_ratios_grades_and_notes_by_hand():
    jobs = pd.DataFrame([
        row(),
        row(job="2", gpu_utilization_mean=0.2, gpu_idle_seconds=3 * 3600, gpu_memory_used_max_bytes=15e9,
            memory_peak_bytes=30e9),
        row(job="3", gpu_utilization_mean=0.6, cpu_cores_mean=31.0),
        row(job="4", gpus=0, accelerator="", gpu_utilization_mean=float("nan"), cpu_cores_mean=16.0,
            energy_joules=float("nan"), time_limit_seconds=86400.0),
    ])
    e = job_efficiency(jobs).set_index("job")
    assert e.loc["1", "gpu_memory_ratio"] == pytest.approx(0.75) and e.loc["1", "cpu_ratio"] == 0.25
    assert e.loc["1", "time_ratio"] == pytest.approx(2 / 3) and e.loc["1", "energy_kwh"] == pytest.approx(2.0)
    assert list(e["gpu_grade"]) == ["ok", "poor", "ok", ""]
    assert e.loc["1", "notes"] == []
    assert e.loc["2", "notes"] == ["held 4 GPUs, used 1", "GPU idle for 3 h", "fits a MIG slice (2g.20gb)",
                                   "memory peak 30% of the request"]
    assert e.loc["3", "notes"] == ["held 4 GPUs, used 3", "CPU-bound input pipeline"]
    assert e.loc["4", "notes"] == ["CPU use 50% of the cores allocated", "used 8% of its time limit"]
    w = workload_efficiency(e.reset_index()).set_index("workload")
    assert w.loc["w", "jobs"] == 4 and w.loc["w", "energy_kwh"] == pytest.approx(6.0)
    assert w.loc["w", "gpu_utilization"] == pytest.approx((0.9 + 0.2 + 0.6) / 3)  # equal durations


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from agents.simulate import simulate

    path = tmp_path_factory.mktemp("efficiency-sim")
    simulate(nodes=24, days=2, interval=60, seed=4, store=f"embedded:{path}")
    return labelled_table(path, "2026-11-20", "2026-11-22")


def test_simulated_idle_jobs_get_idle_notes(sim):
    e = job_efficiency(sim)
    idle = (sim["true_bottleneck"] == "idle").to_numpy()
    assert idle.sum() >= 3
    for notes, grade, dur in zip(e["notes"][idle], e["gpu_grade"][idle], sim["duration_seconds"][idle],
                                 strict=True):
        assert grade == "red"
        assert any(n.startswith("held ") and n.endswith("used 0") for n in notes), notes
        assert (dur < 3600) or any(n.startswith("GPU idle for") for n in notes), notes
    busy = (sim["true_bottleneck"].isin(["gpu_compute", "gpu_memory_bandwidth"])).to_numpy()
    assert not any(any(n.startswith("GPU idle") for n in notes) for notes in e["notes"][busy])
