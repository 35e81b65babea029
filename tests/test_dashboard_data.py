"""The dashboard's data functions on a store written point by point: every expected value is worked out here
from the points themselves, never by the code under test. Each test runs on the embedded store and on a real
influxd holding the same points: the pages read both through the query API alike (issue 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from dashboard import figures
from dashboard.data import fleet

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
MIN = 60 * 10**9
HOUR = 3600 * 10**9
START, END = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 2 * HOUR, tz="UTC")
A100 = "NVIDIA A100-SXM4-80GB"


def gpu_util(gpu: int, k: int) -> float:
    """GPU gpu of n1 at minute k: gpu 0 ramps in hour 0 and is busy in hour 1, gpu 1 stays low."""
    return (k % 60) / 600 if gpu == 1 else (0.05 + 0.001 * k if k < 60 else 0.8 + 0.002 * (k - 60))


def cpu_busy(host: str, k: int) -> float:
    return 0.95 - 0.0001 * k if host == "n2" else 0.02 + 0.0005 * k


def points() -> list[Point]:
    pts = []
    for k in range(120):
        t = T0 + k * MIN
        for host in ("n1", "n2"):
            pts.append(Point("cpu", {"host": host, "cpu": "total"}, {"busy_ratio": cpu_busy(host, k)}, t))
            # a per-core series the host's figure must not average in
            pts.append(Point("cpu", {"host": host, "cpu": "0"}, {"busy_ratio": 0.5}, t))
            pts.append(Point("net", {"host": host, "interface": "eth0"},
                             {"rx_bytes_per_second": 1e6 * (1 + k % 3), "tx_bytes_per_second": 1.5e6,
                              "speed_bytes_per_second": 1.25e9}, t))
            pts.append(Point("disk", {"host": host, "device": "nvme0n1"}, {"busy_ratio": 0.01 * (k % 10)}, t))
            pts.append(Point("disk", {"host": host, "device": "nvme1n1"}, {"busy_ratio": 0.3}, t))
        for g in (0, 1):
            tags = {"host": "n1", "gpu": str(g), "uuid": f"GPU-{g}", "vendor": "nvidia", "model": A100}
            pts.append(Point("gpu", tags, {"utilization_ratio": gpu_util(g, k), "memory_used_bytes": 2e10 * (g + 1),
                                           "memory_total_bytes": 8e10}, t))
        pts.append(Point("infiniband", {"host": "n1", "device": "mlx5_0", "port": "1"},
                         {"xmit_bytes_per_second": 5e9 if k < 60 else 1e9, "rcv_bytes_per_second": 2e9,
                          "rate_bytes_per_second": 2.5e10}, t))
        if k >= 60:  # a job holds GPU 0 for hour 1
            pts.append(Point("job_gpu", {"host": "n1", "gpu": "0", "uuid": "GPU-0", "job": "7", "scheduler": "slurm",
                                         "user": "u1"}, {"utilization_ratio": gpu_util(0, k)}, t))
    for host, arch in (("n1", "x86_64"), ("n2", "x86_64")):
        pts.append(Point("cpu_info", {"host": host}, {"arch": arch, "threads": 64}, T0))
    return pts


@pytest.fixture(scope="module", params=["embedded", pytest.param("influx", marks=pytest.mark.services)])
def reader(request, tmp_path_factory):
    if request.param == "embedded":
        root = tmp_path_factory.mktemp("dash-store")
        EmbeddedWriter(root).write(points())
        with open_reader(f"embedded:{root}") as r:
            yield r
        return
    from tests.services import influxd
    from tests.store_helpers import create_database, write_points

    with influxd(tmp_path_factory.mktemp("dash-influxd")) as server:
        create_database(server.url, "dash")
        write_points(server.url, "dash", points())
        with open_reader(server.url.replace("http://", "influxdb://") + "/dash") as r:
            yield r


def hour_mean(values) -> float:
    return float(np.mean(list(values)))


def test_gpu_heatmap_cell_is_the_mean_of_the_nodes_points_in_that_hour(reader):
    frame = fleet.resource_frame(reader, "gpu", START, END, "1h")
    matrix = fleet.heatmap_matrix(frame)
    assert list(matrix.index) == ["n1"]  # n2 has no GPU
    for h in (0, 1):
        expected = hour_mean(gpu_util(g, k) for g in (0, 1) for k in range(60 * h, 60 * h + 60))
        assert matrix.iloc[0, h] == pytest.approx(expected, rel=1e-12)
    trace = figures.heatmap(matrix, "GPU")["data"][0]
    assert trace["z"][0][1] == pytest.approx(hour_mean(gpu_util(g, k) for g in (0, 1) for k in range(60, 120)))
    assert list(trace["y"]) == ["n1"]  # a click's y names the node


def test_cpu_uses_the_total_series_only(reader):
    m = fleet.heatmap_matrix(fleet.resource_frame(reader, "cpu", START, END, "1h"))
    assert list(m.index) == ["n1", "n2"]
    for host in ("n1", "n2"):
        for h in (0, 1):
            expected = hour_mean(cpu_busy(host, k) for k in range(60 * h, 60 * h + 60))
            assert m.loc[host].iloc[h] == pytest.approx(expected)


def test_gpu_memory_interconnect_and_storage(reader):
    mem = fleet.resource_frame(reader, "gpu_memory", START, END, "1h")
    assert mem["value"].tolist() == pytest.approx([(2e10 + 4e10) / 2 / 8e10] * 2)  # mean used / mean total
    ic = fleet.heatmap_matrix(fleet.resource_frame(reader, "interconnect", START, END, "1h"))
    # n1 is judged by InfiniBand: the busier direction over the link rate (xmit 5e9 then 2e9 = rcv)
    assert ic.loc["n1"].tolist() == pytest.approx([5e9 / 2.5e10, 2e9 / 2.5e10])
    # n2 has Ethernet only: rx averages 2e6 (1, 2, 3 MB/s in turn), busier than tx at 1.5e6
    rx_mean = hour_mean(1e6 * (1 + k % 3) for k in range(60))
    assert ic.loc["n2"].tolist() == pytest.approx([max(rx_mean, 1.5e6) / 1.25e9] * 2)
    disk = fleet.heatmap_matrix(fleet.resource_frame(reader, "storage", START, END, "1h"))
    busiest = max(hour_mean(0.01 * (k % 10) for k in range(60)), 0.3)
    assert disk.loc["n1"].tolist() == pytest.approx([busiest] * 2)


def test_pools_states_and_gpu_hours(reader):
    pools = fleet.host_pools(reader, START, END)
    assert pools.set_index("host")["pool"].to_dict() == {"n1": "gpu:a100-80gb", "n2": "cpu:x86_64"}
    frames = {r: fleet.resource_frame(reader, r, START, END, "1h") for r in ("cpu", "gpu")}
    states = fleet.node_states(frames, pools).set_index("host")
    # n1's GPUs: mean of the two hourly means; n2's CPU stays above 90 %
    n1 = np.mean([hour_mean(gpu_util(g, k) for g in (0, 1) for k in range(60 * h, 60 * h + 60)) for h in (0, 1)])
    assert states.loc["n1", "mean"] == pytest.approx(n1)
    assert states.loc["n1", "state"] == ("idle" if n1 < fleet.IDLE_BELOW else "busy")
    assert states.loc["n2", "state"] == "saturated"
    util = fleet.pool_utilization(frames, pools)
    cpu_pool = util[(util["resource"] == "cpu") & (util["pool"] == "cpu:x86_64")]["value"].tolist()
    assert cpu_pool == pytest.approx([hour_mean(cpu_busy("n2", k) for k in range(60 * h, 60 * h + 60)) for h in (0, 1)])
    hours = fleet.gpu_hours(reader, START, END, "1h").set_index("pool")
    # GPU 0 held for the whole of hour 1: 1 GPU-hour allocated; used = each GPU's hourly mean x 1 h, summed
    assert hours.loc["gpu:a100-80gb", "allocated"] == pytest.approx(1.0)
    used = sum(hour_mean(gpu_util(g, k) for k in range(60 * h, 60 * h + 60)) for g in (0, 1) for h in (0, 1))
    assert hours.loc["gpu:a100-80gb", "used"] == pytest.approx(used)


def test_unknown_resource_is_refused(reader):
    with pytest.raises(ValueError, match="unknown resource"):
        fleet.resource_frame(reader, "gpu'; DROP", START, END, "1h")


def test_node_panels_jobs_gpus_and_ports_of_one_node(reader):
    from dashboard.data import node

    gpu = node.Panel("GPU utilization", "gpu", ("utilization_ratio",), ("gpu",))
    f = node.panel_frame(reader, "n1", gpu, START, END, "1h")
    assert sorted(set(f["series"])) == ["gpu 0", "gpu 1"]
    for g in (0, 1):
        got = f[f["series"] == f"gpu {g}"]["value"].tolist()
        assert got == pytest.approx([hour_mean(gpu_util(g, k) for k in range(60 * h, 60 * h + 60)) for h in (0, 1)])
    cpu = next(p for p in node.PANELS if p.measurement == "cpu")
    f = node.panel_frame(reader, "n2", cpu, START, END, "1h")  # cpu="total" only, n2 only
    assert f[f["series"] == "busy_ratio"]["value"].tolist() == pytest.approx(
        [hour_mean(cpu_busy("n2", k) for k in range(60 * h, 60 * h + 60)) for h in (0, 1)])
    assert node.panel_frame(reader, "n2", gpu, START, END, "1h").empty  # no GPU on n2
    jobs = node.jobs(reader, "n1", START, END)
    assert jobs[["job", "user", "source"]].values.tolist() == [["7", "u1", "job_gpu"]]
    assert (jobs.loc[0, "start"], jobs.loc[0, "end"]) == (START + pd.Timedelta(minutes=60),
                                                         START + pd.Timedelta(minutes=119))
    assert node.jobs(reader, "n2", START, END).empty
    assert node.gpus(reader, "n1", START, END)["gpu"].tolist() == ["0", "1"]
    ports = node.ports(reader, "n1", START, END).set_index("port")
    assert ports.loc["mlx5_0/1", "rate_bytes_per_second"] == 2.5e10
    assert ports.loc["eth0", "tx_bytes_per_second"] == pytest.approx(1.5e6)
    assert node.known_nodes(reader) == ["n1", "n2"]
    # a node name is a bound value: quotes find nothing and break nothing
    assert node.panel_frame(reader, "n1' OR '1'='1", gpu, START, END, "1h").empty
    assert node.jobs(reader, 'n1"; DROP TABLE gpu; --', START, END).empty


def test_metric_picker_offers_only_schema_fields():
    from dashboard.data import node

    assert node.metric_panel("gpu.power_watts").by == ("gpu", "uuid", "vendor", "model")
    assert node.metric_panel("gpu.power_watts; DROP") is None
    assert node.metric_panel("gpu.model") is None  # a tag, not a field
    assert node.metric_panel("nosuch.field") is None
    options = node.metric_options({"gpu", "memory"})
    assert "gpu.utilization_ratio" in options and "memory.used_ratio" in options
    assert not any(o.startswith("cpu.") for o in options)


def test_gpu_hours_count_the_part_of_each_hour_inside_the_window(reader):
    # [00:30, 01:45) in hour buckets: 00:00 half inside the window and 01:00 three quarters inside, each
    # weighted by its hours inside
    start, end = START + pd.Timedelta(minutes=30), START + pd.Timedelta(minutes=105)
    hours = fleet.gpu_hours(reader, start, end, "1h").set_index("pool")
    # GPU 0 is held from minute 60 on: 45 of the 45 samples of 01:00 inside the window, x 0.75 h
    assert hours.loc["gpu:a100-80gb", "allocated"] == pytest.approx(0.75, rel=1e-12)
    used = sum(hour_mean(gpu_util(g, k) for k in range(30, 60)) * 0.5
               + hour_mean(gpu_util(g, k) for k in range(60, 105)) * 0.75 for g in (0, 1))
    assert hours.loc["gpu:a100-80gb", "used"] == pytest.approx(used, rel=1e-12)


def test_fleet_data_asks_the_heatmap_at_its_own_width_with_the_rest(reader):
    d = fleet.fleet_data(reader, START, END, "1h", heat="gpu", heat_every="15m")
    # the lines' frames at the line width (1 h), the heatmap at 15 minutes: each cell the mean of the
    # node's GPU points in that quarter hour
    assert d["frames"]["gpu"]["value"].tolist() == pytest.approx(
        [hour_mean(gpu_util(g, k) for g in (0, 1) for k in range(60 * h, 60 * h + 60)) for h in (0, 1)], rel=1e-12)
    heat = fleet.heatmap_matrix(d["heat"])
    assert list(heat.index) == ["n1"] and heat.shape == (1, 8)
    for q in range(8):
        assert heat.iloc[0, q] == pytest.approx(hour_mean(gpu_util(g, k) for g in (0, 1)
                                                          for k in range(15 * q, 15 * q + 15)), rel=1e-12)
    # the same width as the lines: the heatmap is the lines' frame
    same = fleet.fleet_data(reader, START, END, "1h", heat="cpu", heat_every="1h")
    pd.testing.assert_frame_equal(same["heat"], same["frames"]["cpu"])


class Counting:
    """A reader noting the measurement and bucket width of each query it passes on."""

    def __init__(self, reader):
        self.reader, self.asked = reader, []

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def frame(self, measurement, *args, **kwargs):
        self.asked.append((measurement, kwargs.get("every")))
        return self.reader.frame(measurement, *args, **kwargs)

    def aggregate(self, measurement, *args, **kwargs):
        self.asked.append((measurement, kwargs.get("every")))
        return self.reader.aggregate(measurement, *args, **kwargs)


@pytest.mark.parametrize("heat", ["cpu", "storage", "interconnect"])
def test_a_cpu_storage_or_interconnect_heatmap_reads_its_measurements_once_for_both_widths(reader, heat):
    # The reference is each frame asked of the store on its own (fleet.resource_frame). The second window
    # starts 10 minutes into an hour: its first quarter hour holds 5 points and the next ones 15, so the
    # hour's mean of the quarters' means would be off; the sums and counts give the hour's mean exactly.
    measurements = {"cpu": ["cpu"], "storage": ["disk"], "interconnect": ["infiniband", "net"]}[heat]
    for start in (START, pd.Timestamp(T0 + 10 * MIN, tz="UTC")):
        counting = Counting(reader)
        d = fleet.fleet_data(counting, start, END, "1h", heat=heat, heat_every="15m")
        assert sorted((m, e) for m, e in counting.asked if m in measurements) == [(m, "15m") for m in measurements]
        for got, every, cells in ((d["heat"], "15m", 16), (d["frames"][heat], "1h", 4)):
            want = fleet.resource_frame(reader, heat, start, END, every)
            assert len(want) == cells  # 2 hosts x 8 quarter hours or 2 hours
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
