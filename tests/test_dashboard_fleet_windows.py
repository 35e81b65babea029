"""How /fleet cuts a window: the line width next to the heatmap's, the hours of a bucket inside the window,
node states weighted by them, and GPU-hours at a bucket width coarser than the heatmap's (every expected
value worked out by hand)."""

from __future__ import annotations

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from dashboard import timerange
from dashboard.data import fleet

T0 = pd.Timestamp("2026-11-26T00:00:00Z")
MIN = pd.Timedelta(minutes=1)


def window(start: str, end: str, every: str) -> timerange.Window:
    return timerange.Window(pd.Timestamp(start), pd.Timestamp(end), every)


def test_line_width_is_coarser_than_the_heatmaps_and_a_multiple_of_it():
    # 1400 px: a heatmap column per 2 px (700), a line point per 8 px (175)
    assert timerange.line_every(window("2026-11-16T00:00Z", "2026-11-23T00:00Z", "15m"), 1400) == "1h"  # 168
    assert timerange.line_every(window("2026-11-22T00:00Z", "2026-11-23T00:00Z", "5m"), 1400) == "15m"  # 96
    assert timerange.line_every(window("2026-11-22T18:00Z", "2026-11-23T00:00Z", "1m"), 1400) == "5m"  # 72
    # never narrower than the heatmap's width, whatever the plot's
    assert timerange.line_every(window("2026-11-22T00:00Z", "2026-11-23T00:00Z", "12h"), 100) == "12h"


def test_bucket_hours_are_the_part_of_each_bucket_inside_the_window():
    times = pd.to_datetime(["2026-11-26T10:00Z", "2026-11-26T11:00Z", "2026-11-26T12:00Z"])
    got = fleet.bucket_hours(times, pd.Timestamp("2026-11-26T10:10Z"), pd.Timestamp("2026-11-26T12:10Z"), "1h")
    assert got.tolist() == pytest.approx([50 / 60, 1.0, 10 / 60])


def test_node_states_weigh_each_bucket_by_its_hours_inside_the_window():
    frames = {"gpu": pd.DataFrame({"time": pd.to_datetime(["2026-11-26T00:00Z", "2026-11-26T01:00Z"]),
                                   "host": ["g1", "g1"], "value": [0.1, 0.9]})}
    pools = pd.DataFrame({"host": ["g1"], "pool": ["gpu:a100-80gb"]})
    # the window starts at 00:30: the first hour weighs half as much as the second
    states = fleet.node_states(frames, pools, (pd.Timestamp("2026-11-26T00:30Z"), pd.Timestamp("2026-11-26T02:00Z"),
                                               "1h"))
    assert states.loc[0, "mean"] == pytest.approx((0.1 * 0.5 + 0.9 * 1.0) / 1.5)
    assert states.loc[0, "state"] == "busy"
    assert fleet.node_states(frames, pools).loc[0, "mean"] == pytest.approx(0.5)  # no window: equal weights


@pytest.fixture(scope="module")
def part_hour_reader(tmp_path_factory):
    """One GPU reporting every minute of 00:00-00:30 only (utilization 0.4, held by a job for minutes
    0-14), another every minute of both hours (utilization 0.2, never held)."""
    root = tmp_path_factory.mktemp("part-hour")
    pts = []
    for k in range(120):
        t = (T0 + k * MIN).value
        base = {"host": "n1", "model": "NVIDIA A100-SXM4-80GB", "vendor": "nvidia"}
        pts.append(Point("gpu", {**base, "gpu": "1", "uuid": "GPU-1"}, {"utilization_ratio": 0.2}, t))
        if k < 30:
            pts.append(Point("gpu", {**base, "gpu": "0", "uuid": "GPU-0"}, {"utilization_ratio": 0.4}, t))
        if k < 15:
            pts.append(Point("job_gpu", {"host": "n1", "gpu": "0", "uuid": "GPU-0", "job": "1"},
                             {"utilization_ratio": 0.4}, t))
    EmbeddedWriter(root).write(pts)
    with open_reader(f"embedded:{root}") as r:
        yield r


def test_gpu_hours_round_a_gpu_reporting_in_part_of_a_bucket_to_the_whole_bucket(part_hour_reader):
    hours = fleet.gpu_hours(part_hour_reader, T0, T0 + 120 * MIN, "1h").set_index("pool")
    # hour buckets: GPU 0 counts all of 00:00 at its mean (0.4 x 1 h) and half of it held (15 of 30 samples);
    # GPU 1 0.2 x 2 h
    assert hours.loc["gpu:a100-80gb", "used"] == pytest.approx(0.4 * 1.0 + 0.2 * 2.0)
    assert hours.loc["gpu:a100-80gb", "allocated"] == pytest.approx(0.5)
    # 15-minute buckets count the two quarters GPU 0 reported in: 0.4 x 0.5 h, and the one it was held in
    quarters = fleet.gpu_hours(part_hour_reader, T0, T0 + 120 * MIN, "15m").set_index("pool")
    assert quarters.loc["gpu:a100-80gb", "used"] == pytest.approx(0.4 * 0.5 + 0.2 * 2.0)
    assert quarters.loc["gpu:a100-80gb", "allocated"] == pytest.approx(0.25)


def test_heatmap_matrix_places_each_cell_as_a_pivot_would():
    frame = pd.DataFrame({"time": pd.to_datetime(["2026-11-26T01:00Z", "2026-11-26T00:00Z", "2026-11-26T00:00Z"]),
                          "host": ["n2", "n2", "n1"], "value": [0.3, 0.2, 0.1]})
    m = fleet.heatmap_matrix(frame)
    assert list(m.index) == ["n1", "n2"] and list(m.columns) == sorted(set(frame["time"]))
    assert m.loc["n2"].tolist() == [0.2, 0.3] and m.loc["n1", m.columns[0]] == 0.1
    assert m.loc["n1", m.columns[1]] != m.loc["n1", m.columns[1]]  # n1 has no 01:00 bucket: NaN
    pd.testing.assert_frame_equal(m, frame.pivot(index="host", columns="time", values="value").sort_index())
