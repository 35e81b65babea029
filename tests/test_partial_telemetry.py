"""Partial telemetry: a job table from job_gpu alone (GPU-only pod telemetry), from job alone (CPU-only
clusters), or from both; what cannot be known stays empty; the default window ends at the last point of any
measurement the analysis reads; GPU demand from job_gpu when there are no per-GPU series."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from analyzer.efficiency import job_efficiency
from analyzer.features import job_table
from analyzer.forecast.held import held_demand
from analyzer.pipeline import resolve_window

T0 = int(pd.Timestamp("2026-01-01T00:00:00Z").value)
MIN = 60 * 10**9


def pod_point(pod: str, minute: int, **fields) -> Point:
    return Point("job_gpu", {"host": "n1", "job": pod, "scheduler": "kubernetes", "user": "ns", "gpu": "0",
                             "uuid": f"GPU-{pod}"}, fields, T0 + minute * MIN)


def gpu_only_points() -> list[Point]:
    pts = []
    for m in range(60):  # pod p1: an hour, busy 40% the first 30 min then idle (0.0)
        pts.append(pod_point("p1", m, utilization_ratio=0.4 if m < 30 else 0.0))
        pts.append(pod_point("p1", m, memory_used_bytes=(m + 1) * 10**8))
    for m in range(30, 45):  # pod p2: 15 minutes, always 3% (below the 5% idle threshold)
        pts.append(pod_point("p2", m, utilization_ratio=0.03, memory_used_bytes=2 * 10**9))
    return pts


@pytest.fixture
def gpu_only(tmp_path):
    EmbeddedWriter(tmp_path).write(gpu_only_points())
    with open_reader(f"embedded:{tmp_path}") as reader:
        yield reader


def test_job_table_from_job_gpu_alone(gpu_only):
    jt = job_table(gpu_only, pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 120 * MIN, tz="UTC"), every="5m")
    assert list(jt["job"]) == ["p1", "p2"]
    p1, p2 = jt.iloc[0], jt.iloc[1]
    # p1: samples at minutes 0..59 -> buckets [0, 60) min; p2: 30..44 -> [30, 45)
    assert p1["duration_seconds"] == 3600 and p2["duration_seconds"] == 900
    assert p1["gpus"] == 1 and p2["gpus"] == 1 and p1["nodes"] == 1
    # p1 utilization: 30 samples of 0.4, 30 of 0.0 -> 0.2; idle share 30/60 -> 1800 s
    assert p1["gpu_utilization_mean"] == pytest.approx(0.2)
    assert p1["gpu_idle_seconds"] == pytest.approx(1800)
    assert p2["gpu_idle_seconds"] == pytest.approx(900)  # every sample at 3%
    assert p1["gpu_memory_used_max_bytes"] == 60 * 10**8
    # what a cgroup or a gpu series would have said is unknown, not zero
    for col in ("cpus_allocated", "memory_peak_bytes", "memory_limit_bytes", "cpu_cores_mean", "cpu_input_ratio",
                "gpu_memory_total_bytes", "power_watts_mean", "energy_joules"):
        assert jt[col].isna().all(), col
    lacked = " ".join(jt.attrs["lacked"])
    assert "job (cgroups)" in lacked and "gpu:" in lacked and "job_gpu:" not in lacked

    eff = job_efficiency(jt)
    assert eff["gpu_hours_held"].tolist() == pytest.approx([1.0, 0.25])
    assert eff["gpu_hours_idle"].tolist() == pytest.approx([0.5, 0.25])
    assert eff["gpu_memory_headroom_bytes"].isna().all()  # the GPU's size is not in the data
    assert "held 1 GPU, used 0" in eff["notes"].iloc[1]


def test_job_table_with_both_keeps_gpu_only_jobs(tmp_path):
    pts = gpu_only_points()
    for m in range(60):  # p1 also has a cgroup series; p2 does not
        pts.append(Point("job", {"host": "n1", "job": "p1", "scheduler": "kubernetes", "user": "ns"},
                         {"cpus_allocated": 8, "cpu_cores": 2.0}, T0 + m * MIN))
    EmbeddedWriter(tmp_path).write(pts)
    with open_reader(f"embedded:{tmp_path}") as reader:
        jt = job_table(reader, pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 120 * MIN, tz="UTC"))
    assert list(jt["job"]) == ["p1", "p2"]
    assert jt.loc[0, "cpus_allocated"] == 8 and jt.loc[0, "cpu_input_ratio"] == pytest.approx(0.25)
    assert math.isnan(jt.loc[1, "cpus_allocated"]) and jt.loc[1, "gpus"] == 1
    assert jt.loc[1, "gpu_utilization_mean"] == pytest.approx(0.03)


def test_job_table_from_job_alone_says_gpu_use_unknown(tmp_path):
    EmbeddedWriter(tmp_path).write([Point("job", {"host": "c1", "job": "7", "scheduler": "slurm", "user": "u"},
                                          {"cpus_allocated": 4, "cpu_cores": 1.0}, T0 + m * MIN)
                                    for m in range(10)])
    with open_reader(f"embedded:{tmp_path}") as reader:
        jt = job_table(reader, pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 60 * MIN, tz="UTC"))
    assert list(jt["job"]) == ["7"] and jt.loc[0, "gpus"] == 0
    assert jt["gpu_utilization_mean"].isna().all()
    assert any(s.startswith("job_gpu:") for s in jt.attrs["lacked"])


def test_default_window_ends_at_the_last_job_gpu_point(gpu_only):
    start, end = resolve_window(gpu_only, since="1d", now=pd.Timestamp("2030-01-01", tz="UTC").to_pydatetime())
    # last point at minute 59 -> rounded up to the next 5-minute edge
    assert end == pd.Timestamp(T0 + 60 * MIN, tz="UTC")
    assert start == end - pd.Timedelta(days=1)


def test_held_demand_from_job_gpu_spans(gpu_only):
    d = held_demand(gpu_only, pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 120 * MIN, tz="UTC"), every="15m")
    # p1 spans minutes 0..59 (first to last sample), p2 30..44: per 15-minute bucket, GPU-hours held / hour
    expected = [1.0, 1.0, 1.0 + 14 / 15, 14 / 15]
    assert d["time"].tolist() == [pd.Timestamp(T0 + k * 15 * MIN, tz="UTC") for k in range(4)]
    assert d["demand"].tolist() == pytest.approx(expected)
    assert set(d["pool"]) == {"gpu:unknown"} and d["capacity"].isna().all()
