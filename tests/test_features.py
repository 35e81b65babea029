"""job_table: a hand-built store whose every figure is worked out by hand, a simulated fleet against its truth,
and the same fleet against the per-bucket table this one replaced (tests/legacy_features.py), with the
tolerances its coarser time alignment is allowed."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from analyzer.features import COLUMNS, job_table

T0 = int(pd.Timestamp("2026-01-01T00:00:00Z").value)
MIN = 60 * 10**9
H100 = "NVIDIA H100 80GB HBM3"


def job_point(host: str, job: str, minute: int, **fields) -> Point:
    return Point("job", {"host": host, "job": job, "scheduler": "slurm", "user": "ada"}, fields, T0 + minute * MIN)


def hand_built_points() -> list[Point]:
    pts: list[Point] = []
    for m in range(10):
        # job 1 on hosts a and b for 10 minutes; job 2 shares host a for the first 5
        cores = {} if m == 0 else {"cpu_cores": 4.0}  # first read: no rate yet
        pts.append(job_point("a", "1", m, cpus_allocated=8, memory_peak_bytes=(1 + (m >= 5)) * 10**9,
                             memory_limit_bytes=4 * 10**9, **cores))
        pts.append(job_point("b", "1", m, cpu_cores=2.0, cpus_allocated=8, memory_peak_bytes=10**9,
                             memory_limit_bytes=4 * 10**9))
        if m < 5:
            pts.append(job_point("a", "2", m, cpu_cores=1.0, cpus_allocated=4, memory_peak_bytes=10**8,
                                 memory_limit_bytes=10**9))
        for gpu, uuid, busy in (("0", "GPU-a0", 0.8), ("1", "GPU-a1", 0.0)):
            util = busy if m < 5 else 0.02  # the second bucket: both GPUs idle
            pts.append(Point("job_gpu", {"host": "a", "job": "1", "scheduler": "slurm", "user": "ada", "gpu": gpu,
                                         "uuid": uuid}, {"utilization_ratio": util,
                                                         "memory_used_bytes": (m + 1) * 10**9}, T0 + m * MIN))
            pts.append(Point("gpu", {"host": "a", "gpu": gpu, "uuid": uuid, "vendor": "nvidia", "model": H100},
                             {"utilization_ratio": util, "memory_bandwidth_ratio": 0.5, "power_watts": 300.0,
                              "power_limit_watts": 500.0 if gpu == "0" else 700.0,
                              "memory_total_bytes": 80 * 10**9}, T0 + m * MIN))
        # a GPU the job does not hold: never counted
        pts.append(Point("gpu", {"host": "b", "gpu": "0", "uuid": "GPU-b0", "vendor": "nvidia", "model": H100},
                         {"utilization_ratio": 1.0, "power_watts": 650.0, "power_limit_watts": 700.0},
                         T0 + m * MIN))
        pts.append(Point("net", {"host": "a", "interface": "eth0"},
                         {"rx_bytes_per_second": 100.0, "tx_bytes_per_second": 100.0}, T0 + m * MIN))
        pts.append(Point("net", {"host": "a", "interface": "lo"},
                         {"rx_bytes_per_second": 1e9, "tx_bytes_per_second": 1e9}, T0 + m * MIN))
        pts.append(Point("net", {"host": "b", "interface": "eth0"},
                         {"rx_bytes_per_second": 50.0, "tx_bytes_per_second": 50.0}, T0 + m * MIN))
        pts.append(Point("disk", {"host": "a", "device": "nvme0n1"},
                         {"read_bytes_per_second": 1000.0, "write_bytes_per_second": 0.0}, T0 + m * MIN))
        # xmit_wait: 0 before the job, 3000 at the end of the first bucket, then a reset
        wait = 3000 if m < 5 else 20
        pts.append(Point("infiniband", {"host": "a", "device": "mlx5_0", "port": "1"}, {"xmit_wait": wait},
                         T0 + m * MIN))
        if m:
            pts.append(Point("job_progress", {"host": "a", "job": "1", "scheduler": "slurm", "user": "ada",
                                              "unit": "samples"}, {"progress_per_second": 50.0}, T0 + m * MIN))
    pts.append(Point("infiniband", {"host": "a", "device": "mlx5_0", "port": "1"}, {"xmit_wait": 0}, T0 - MIN))
    pts.append(Point("job_info", {"host": "a", "job": "1", "scheduler": "slurm", "user": "ada"},
                     {"name": "train-resnet-0042", "account": "ml", "partition": "gpu", "command": "",
                      "time_limit_seconds": 3600.0, "gpus_requested": 2, "cpus_requested": 16}, T0))
    return pts


@pytest.fixture(scope="module")
def hand_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("features-store")
    EmbeddedWriter(path).write(hand_built_points())
    with open_reader(f"embedded:{path}") as reader:
        jt = job_table(reader, pd.Timestamp(T0 - 5 * MIN, tz="UTC"), pd.Timestamp(T0 + 20 * MIN, tz="UTC"))
    return jt.set_index("job")


def test_job_identity_span_cpu_and_memory(hand_table):
    assert list(hand_table.reset_index().columns) == COLUMNS
    j1, j2 = hand_table.loc["1"], hand_table.loc["2"]
    assert (j1["hosts"], j1["nodes"], j1["gpus"], j1["accelerator"]) == ("a,b", 2, 2, "h100-80gb")  # H100's key
    assert (j2["hosts"], j2["nodes"], j2["gpus"], j2["accelerator"]) == ("a", 1, 0, "")
    assert j1["start"] == pd.Timestamp(T0, tz="UTC") and j1["duration_seconds"] == 600
    assert j2["duration_seconds"] == 300
    assert j1["cpus_allocated"] == 16 and j1["cpu_cores_mean"] == pytest.approx(6.0)
    assert j1["cpu_cores_peak"] == pytest.approx(6.0) and j2["cpu_cores_peak"] == pytest.approx(1.0)
    assert j1["cpu_input_ratio"] == pytest.approx(6 / 16)
    assert j1["memory_peak_bytes"] == 3 * 10**9 and j1["memory_limit_bytes"] == 8 * 10**9
    assert j1["throughput"] == pytest.approx(50.0) and j1["unit"] == "samples"
    assert math.isnan(j2["throughput"]) and j2["unit"] == ""
    assert (j1["name"], j1["time_limit_seconds"], j1["gpus_requested"]) == ("train-resnet-0042", 3600, 2)
    assert j2["name"] == "" and j1["workload"] == ""


def test_gpu_columns_cover_only_the_jobs_gpus(hand_table):
    j1, j2 = hand_table.loc["1"], hand_table.loc["2"]
    # (0.8*5 + 0*5 + 0.02*10) / 20 samples
    assert j1["gpu_utilization_mean"] == pytest.approx(0.21)
    # the mean over the job's GPUs of each one's highest sample: (0.8 + 0.02) / 2
    assert j1["gpu_utilization_peak"] == pytest.approx(0.41)
    # GPU-a0 below 5% in 5 of its 10 samples, GPU-a1 in all: both idle for half of the 600 s at most
    assert j1["gpu_idle_seconds"] == 300
    assert j1["gpu_memory_used_max_bytes"] == 10 * 10**9 and j1["gpu_memory_total_bytes"] == 80 * 10**9
    assert j1["power_watts_mean"] == pytest.approx(300.0)  # GPU-b0's 650 W is not the job's
    assert j1["power_limit_watts"] == pytest.approx(600.0) and j1["power_limit_max_watts"] == 700.0
    assert j1["energy_joules"] == pytest.approx(2 * 300.0 * 600)
    assert j1["gpu_memory_bandwidth_mean"] == pytest.approx(0.5)
    assert math.isnan(j2["gpu_utilization_mean"]) and math.isnan(j2["energy_joules"])


def test_host_rates_split_between_jobs_and_never_negative(hand_table):
    """Host rates come hourly; the data covers 10 minutes of the hour [T0, T0+1h): job 1 on host a for all of
    it (share 1), job 2 for 5 minutes (share 1/2). Host a's hourly mean M is one equation M = x1 + x2/2 + b
    the hours cannot split further, so the estimate is the even split M / 1.5 for each job (analyzer.unmix's
    prior), rebuilt per 5-minute bucket as the sum over the jobs there and shared evenly."""
    j1, j2 = hand_table.loc["1"], hand_table.loc["2"]
    # net: host a 200 B/s (lo left out) -> x = 133.3 each: bucket 1 (both jobs) 266.7 / 2, bucket 2 (job 1
    # alone) 133.3; host b 100 B/s, job 1 alone on it
    assert j1["net_bytes_per_second"] == pytest.approx(200 / 1.5 + 100)
    assert j2["net_bytes_per_second"] == pytest.approx(200 / 1.5)
    assert j1["disk_bytes_per_second"] == pytest.approx(1000 / 1.5)  # host b has no disk
    assert j2["disk_bytes_per_second"] == pytest.approx(1000 / 1.5)
    # xmit_wait, differenced per hour: last value 0 before T0, 20 in T0's hour (after a reset from 3000,
    # which the hour cannot see) -> 20 / 3600 s on host a, split as above
    assert j1["ib_xmit_wait_per_second"] == pytest.approx(20 / 3600 / 1.5)
    assert j2["ib_xmit_wait_per_second"] == pytest.approx(20 / 3600 / 1.5)
    assert math.isnan(j1["lustre_bytes_per_second"])


def test_counter_rate_drops_resets():
    from analyzer.features import _counter_rate

    t = pd.to_datetime([T0, T0 + 60 * MIN, T0 + 120 * MIN, T0 + 180 * MIN], unit="ns", utc=True)
    f = pd.DataFrame({"host": ["a"] * 4, "time": t, "xmit_wait": [100.0, 3700.0, 50.0, 3650.0]})
    rate = _counter_rate(f, ["host"], "xmit_wait").tolist()
    assert math.isnan(rate[0]) and math.isnan(rate[2])  # no previous value; a drop is a reset, never negative
    assert rate[1] == pytest.approx(1.0) and rate[3] == pytest.approx(1.0)


def test_empty_window_gives_an_empty_table(tmp_path):
    EmbeddedWriter(tmp_path).write(hand_built_points())
    with open_reader(f"embedded:{tmp_path}") as reader:
        jt = job_table(reader, "2025-01-01", "2025-01-02")
    assert jt.empty and list(jt.columns) == COLUMNS


@pytest.fixture(scope="module")
def sim_path(tmp_path_factory):
    from agents.simulate import simulate

    path = tmp_path_factory.mktemp("features-sim")
    simulate(nodes=24, days=2, interval=60, seed=3, store=f"embedded:{path}")
    return path


@pytest.fixture(scope="module")
def sim(sim_path):
    path = sim_path
    truth = json.loads((path / "truth.json").read_text())
    with open_reader(f"embedded:{path}") as reader:
        jt = job_table(reader, "2026-11-20", "2026-11-22")
    return jt, {j["job"]: j for j in truth["jobs"] if j["placed"]}


def test_simulated_fleet_matches_truth(sim):
    jt, truth = sim
    assert set(jt["job"]) == set(truth)
    assert (jt.select_dtypes("float64").fillna(0) >= 0).all().all()
    for row in jt.itertuples():
        t = truth[row.job]
        assert row.hosts == ",".join(sorted(t["hosts"]))
        assert row.gpus == sum(len(g) for g in t["gpus"].values())
        assert (row.accelerator == "") == (t["accelerator"] is None)
        if t["accelerator"]:
            assert row.accelerator == t["accelerator_key"]  # "a100-80gb", the canonical key
        assert abs(row.duration_seconds - (t["end_seconds"] - t["start_seconds"])) <= 600
        if t["bottleneck"] == "idle":
            assert row.gpu_utilization_mean < 0.05 and row.gpu_idle_seconds >= 0.9 * row.duration_seconds
        if t["kind"] == "training" and row.duration_seconds >= 3600:
            assert row.throughput == pytest.approx(t["throughput"], rel=0.05)
    named = jt[jt["name"] != ""]
    assert 0.6 < len(named) / len(jt) < 0.95  # ~20% of jobs come without a name


# Allowed difference from the per-bucket table, as |new - old| / mean |old| over the jobs: (median, 90th
# percentile, max). Measured on this fleet (60 s sampling, 5-minute buckets): the GPU columns unmix 2-hour
# means, the host rates 1-hour means, and the peak columns are per-sample peaks where the old table had
# 95th percentiles over buckets (compared with those, under the new names). Columns not listed
# must be equal (floats to 1e-9).
LEGACY_TOLERANCE = {
    "gpu_utilization_mean": (0.001, 0.002, 0.01),
    "gpu_utilization_peak": (0.08, 0.12, 0.15),
    "gpu_memory_bandwidth_mean": (0.005, 0.04, 0.15),
    "gpu_idle_seconds": (0.001, 0.001, 0.3),
    "power_watts_mean": (0.005, 0.025, 0.1),
    "power_limit_watts": (0.001, 0.01, 0.07),
    "energy_joules": (0.002, 0.006, 0.04),
    "cpu_cores_mean": (0.001, 0.001, 0.003),
    "cpu_input_ratio": (0.001, 0.001, 0.003),
    "cpu_cores_peak": (0.01, 0.02, 0.04),
    "throughput": (0.001, 0.001, 0.005),
    "disk_bytes_per_second": (0.015, 0.12, 1.0),
    "lustre_bytes_per_second": (0.015, 0.17, 1.4),
    "net_bytes_per_second": (0.015, 0.15, 1.2),
    "ib_bytes_per_second": (0.001, 0.015, 0.5),
    "ib_xmit_wait_per_second": (0.001, 0.005, 0.3),
}


@pytest.fixture(scope="module")
def legacy_pair(sim_path):
    from tests.legacy_features import job_table as legacy_job_table

    with open_reader(f"embedded:{sim_path}") as reader:
        new = job_table(reader, "2026-11-20", "2026-11-22")
        old = legacy_job_table(reader, "2026-11-20", "2026-11-22")
    old = old.rename(columns={"cpu_cores_p95": "cpu_cores_peak", "gpu_utilization_p95": "gpu_utilization_peak"})
    from agents.schema.accelerators import accelerator_key

    old["accelerator"] = old["accelerator"].map(accelerator_key)  # the legacy table kept the raw model string
    return new.set_index("job"), old.set_index("job")


def test_matches_the_per_bucket_table(legacy_pair):
    import numpy as np

    new, old = legacy_pair
    assert list(new.index) == list(old.index) and len(new) > 200
    for c in new.columns.drop(["gpus_used"]):  # added after the per-bucket table (tests/test_gpu_allocation.py)
        a, b = new[c], old[c]
        if not pd.api.types.is_numeric_dtype(b):
            assert (a.astype(object) == b.astype(object)).all(), c
            continue
        a, b = a.astype(float), b.astype(float)
        assert (a.isna() == b.isna()).all(), c
        both = a.notna()
        err = ((a - b).abs()[both] / (b[both].abs().mean() or 1.0)).to_numpy()
        if c not in LEGACY_TOLERANCE:
            assert np.allclose(a[both], b[both], rtol=1e-9, atol=0), c
            continue
        p50, p90, worst = LEGACY_TOLERANCE[c]
        assert np.median(err) <= p50 and np.quantile(err, 0.9) <= p90 and err.max() <= worst, \
            (c, np.median(err), np.quantile(err, 0.9), err.max())
        if c.endswith("_per_second") and b[both].std() > 0:
            assert np.corrcoef(a[both], b[both])[0, 1] > 0.99, c


def test_cpu_only_fleet(tmp_path):
    """Only the job measurement: GPU, host-rate, progress and job_info columns are empty, not errors."""
    EmbeddedWriter(tmp_path).write([p for p in hand_built_points() if p.measurement == "job"])
    with open_reader(f"embedded:{tmp_path}") as reader:
        jt = job_table(reader, pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 20 * MIN, tz="UTC"), every="1m")
    j1 = jt.set_index("job").loc["1"]
    assert (j1["gpus"], j1["accelerator"], j1["unit"], j1["name"]) == (0, "", "", "")
    assert j1["duration_seconds"] == 600 and j1["cpu_cores_mean"] == pytest.approx(6.0)  # 1-minute buckets
    for c in ("gpu_utilization_mean", "energy_joules", "net_bytes_per_second", "throughput", "time_limit_seconds"):
        assert math.isnan(j1[c]), c


def test_influxdb_gives_the_same_table(tmp_path_factory, hand_table):
    """The hand-built points in a real influxd: the job table equals the embedded store's."""
    from tests.services import influxd
    from tests.store_helpers import create_database, write_points

    with influxd(tmp_path_factory.mktemp("features-influxd")) as server:
        create_database(server.url, "fw")
        write_points(server.url, "fw", hand_built_points())
        reader = open_reader(server.url.replace("http://", "influxdb://") + "/fw")
        jt = job_table(reader, pd.Timestamp(T0 - 5 * MIN, tz="UTC"), pd.Timestamp(T0 + 20 * MIN, tz="UTC"))
    pd.testing.assert_frame_equal(jt.set_index("job"), hand_table, check_exact=False, rtol=1e-9)
