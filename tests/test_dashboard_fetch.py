"""How the dashboard asks the store: one aggregate per measurement instead of one per figure, the queries of a
callback at once on worker threads, and a cache of each window's answers for the auto-refresh interval.

The merged queries must give the very frames the separate ones gave: the reference here is each figure asked
of the store on its own, as the dashboard did before (and as a reader of docs/dashboard.md would), on the store
of tests/test_dashboard_data.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from dashboard.cache import TTLCache
from dashboard.context import Context
from dashboard.data import fleet, node
from dashboard.pages import fleet as fleet_page
from dashboard.pages import node as node_page
from tests.test_dashboard_data import END, START, points


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-fetch-store")
    EmbeddedWriter(root).write(points())
    return root


@pytest.fixture(scope="module")
def reader(store):
    with open_reader(f"embedded:{store}") as r:
        yield r


def separate(reader, resource: str) -> pd.DataFrame:
    """[time, host, value] of one resource from its own query (a 15-minute bucket per cell)."""
    if resource == "gpu":
        f = reader.frame("gpu", ["utilization_ratio"], START, END, every="15m", by=["host"])
        f = f.rename(columns={"utilization_ratio": "value"})
    elif resource == "gpu_memory":
        f = reader.aggregate("gpu", {"u": ("memory_used_bytes", "mean"), "t": ("memory_total_bytes", "mean")},
                             START, END, every="15m", by=["host"])
        f = f.assign(value=f["u"] / f["t"])
    elif resource == "cpu":
        f = reader.frame("cpu", ["busy_ratio"], START, END, every="15m", by=["host", "cpu"])
        f = f[f["cpu"] == "total"].rename(columns={"busy_ratio": "value"})
    return f[["time", "host", "value"]].sort_values(["host", "time"]).reset_index(drop=True)


def test_one_gpu_aggregate_gives_the_frames_of_the_separate_queries(reader):
    d = fleet.fleet_data(reader, START, END, "15m")
    for resource in ("gpu", "gpu_memory", "cpu"):
        got, want = d["frames"][resource], separate(reader, resource)
        assert len(got) == len(want) == (8 if resource != "cpu" else 16)  # 2 h of 15-minute buckets per host
        assert got["host"].tolist() == want["host"].tolist()
        assert (got["time"] == want["time"]).all()
        np.testing.assert_allclose(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-12)
    # GPU-hours used: each GPU's bucket mean x 0.25 h, summed; allocated: GPU 0 held for hour 1 = 1 GPU-hour
    per_gpu = reader.frame("gpu", ["utilization_ratio"], START, END, every="15m", by=["host", "gpu"])
    hours = d["gpu_hours"].set_index("pool")
    assert hours.loc["gpu:a100-80gb", "used"] == pytest.approx(per_gpu["utilization_ratio"].sum() * 0.25, rel=1e-12)
    assert hours.loc["gpu:a100-80gb", "allocated"] == pytest.approx(1.0)
    # the pools from the same aggregate, and the functions that fetch one thing alone agree with it
    assert d["pools"].set_index("host")["pool"].to_dict() == {"n1": "gpu:a100-80gb", "n2": "cpu:x86_64"}
    pd.testing.assert_frame_equal(d["pools"], fleet.host_pools(reader, START, END))
    pd.testing.assert_frame_equal(d["gpu_hours"], fleet.gpu_hours(reader, START, END, "15m"))
    for resource in fleet.RESOURCES:
        pd.testing.assert_frame_equal(d["frames"][resource], fleet.resource_frame(reader, resource, START, END, "15m"))


def test_node_panels_of_one_measurement_are_one_query_with_the_same_frames(reader):
    gpu_panels = [p for p in node.PANELS if p.measurement == "gpu"]
    assert len(gpu_panels) == 4
    merged = node.panel_frames(reader, "n1", gpu_panels, START, END, "1h")
    raw = reader.frame("gpu", ["utilization_ratio", "memory_used_bytes"], START, END, every="1h", by=["gpu"],
                       where_tags={"host": "n1"})
    for panel, got in zip(gpu_panels, merged, strict=True):
        field = panel.fields[0]
        if field not in raw:  # power and temperature: the store has none, the panel is empty (and hidden)
            assert got.empty
            continue
        assert sorted(set(got["series"])) == ["gpu 0", "gpu 1"]
        for g in ("0", "1"):
            assert got[got["series"] == f"gpu {g}"]["value"].tolist() == pytest.approx(
                raw[raw["gpu"] == g][field].tolist(), rel=1e-12)
    assert [len(f) for f in merged] == [4, 4, 0, 0]  # 2 GPUs x 2 hours


def test_gather_on_worker_threads_gives_what_a_sequential_run_gives(store, reader):
    ctx = Context(f"embedded:{store}")
    at_once = fleet.fleet_data(ctx.reader(), START, END, "15m")  # on the context's workers
    in_turn = fleet.fleet_data(reader, START, END, "15m")  # a plain reader: one query after the other
    for resource in fleet.RESOURCES:
        pd.testing.assert_frame_equal(at_once["frames"][resource], in_turn["frames"][resource])
    pd.testing.assert_frame_equal(at_once["gpu_hours"], in_turn["gpu_hours"])
    assert ctx.pool()._max_workers > 1
    # a failing query is raised, not swallowed
    with pytest.raises(ZeroDivisionError):
        ctx.reader().gather({"ok": lambda r: r.measurements(), "bad": lambda r: 1 / 0})


def test_cache_entries_expire_after_their_ttl_and_oldest_go_first():
    now = [0.0]
    cache = TTLCache(max_entries=2, clock=lambda: now[0])
    calls = []

    def compute(v):
        calls.append(v)
        return v

    assert cache.get_or_compute("a", lambda: compute(1), ttl=30) == 1
    now[0] = 29.9
    assert cache.get_or_compute("a", lambda: compute(2), ttl=30) == 1  # still fresh
    now[0] = 30.0
    assert cache.get_or_compute("a", lambda: compute(3), ttl=30) == 3  # expired: computed again
    cache.get_or_compute("b", lambda: compute(4), ttl=30)
    cache.get_or_compute("c", lambda: compute(5), ttl=30)  # over max_entries: "a" (oldest) goes
    assert len(cache) == 2
    assert cache.get_or_compute("a", lambda: compute(6), ttl=30) == 6
    assert calls == [1, 3, 4, 5, 6]
    with pytest.raises(RuntimeError):
        cache.get_or_compute("x", lambda: (_ for _ in ()).throw(RuntimeError("store down")), ttl=30)
    assert cache.get_or_compute("x", lambda: compute(7), ttl=30) == 7  # a failure is not cached


def test_the_fleet_page_asks_the_store_once_per_window_and_refresh_interval(store):
    ctx = Context(f"embedded:{store}")
    end = END.isoformat()
    state = fleet_page.read({"range": "6h", "end": end, "resource": "gpu"})
    first = fleet_page.compute(ctx.reader(), state, 1000)
    misses = ctx.cache.misses
    # another pool over the same window: from the cache, with the same numbers
    pooled = fleet_page.compute(ctx.reader(), {**state, "pool": "gpu:a100-80gb"}, 1000)
    assert ctx.cache.misses == misses and ctx.cache.hits >= 2
    pd.testing.assert_frame_equal(pooled["heat"], first["heat"])  # n1 is the pool's only host
    # another heatmap resource: that resource alone is asked of the store (one new entry), the rest is kept
    other = fleet_page.compute(ctx.reader(), {**state, "resource": "cpu", "pool": "cpu:x86_64"}, 1000)
    assert ctx.cache.misses == misses + 1
    assert list(other["heat"].index) == ["n2"]
    pd.testing.assert_frame_equal(other["utilization"], first["utilization"])
    # and each resource's heatmap is kept too: going back asks nothing
    fleet_page.compute(ctx.reader(), {**state, "resource": "cpu"}, 1000)
    again = fleet_page.compute(ctx.reader(), state, 1000)
    assert ctx.cache.misses == misses + 1
    pd.testing.assert_frame_equal(again["heat"], first["heat"])
    # another window is another key (its window's entry and its heatmap's)
    fleet_page.compute(ctx.reader(), {**state, "range": "24h"}, 1000)
    assert ctx.cache.misses == misses + 3
    # a node page over the same window has its own entries
    node_page.update(ctx.reader(), node_page.read({"node": "n1", "range": "6h", "end": end}), 1000)
    assert ctx.cache.misses > misses + 3
    # the TTL is the page's auto-refresh interval, the cache's default when auto-refresh is off
    assert fleet_page.controls.ttl({"refresh": "30s"}) == 30.0
    assert fleet_page.controls.ttl({"refresh": "off"}) is None


def test_grid_rows_and_plain_cells_are_what_pandas_gives_cell_by_cell():
    from dashboard.data.runs import _plain
    from dashboard.pages.workloads import grid_rows

    t = pd.Series(pd.to_datetime(["2026-11-16T01:02:59Z", None, "2026-11-17T23:59:00Z"], utc=True))
    frame = pd.DataFrame({"job": ["1", "2", None], "gpus": [1, 2, 3], "ratio": [0.5, np.nan, 1.0], "start": t,
                          "notes": [["a", "b"], [], None]})
    plain = _plain(frame)
    assert plain["start"].tolist() == ["2026-11-16 01:02", None, "2026-11-17 23:59"]
    assert plain["notes"].tolist()[:2] == ["a; b", ""] and pd.isna(plain["notes"][2])
    assert grid_rows(plain) == plain.astype(object).where(plain.notna(), None).to_dict("records")
    assert grid_rows(plain)[1] == {"job": "2", "gpus": 2, "ratio": None, "start": None, "notes": ""}


def test_windows_end_on_a_bucket_boundary_and_hold_the_newest_point():
    from agents.query.base import parse_every
    from dashboard import timerange

    for range_key, end, width in (("7d", "2026-11-22T23:59:00Z", 1400), ("24h", "2026-11-22T13:07:30Z", 1400),
                                  ("6h", "2026-11-22T13:07:30Z", 800), ("30d", "2026-11-22T13:07:30Z", 1000)):
        w = timerange.resolve(None, range_key, end, width)
        step = parse_every(w.every)
        assert w.start.value % step == 0 and w.end.value % step == 0, w
        assert w.end - w.start == pd.Timedelta(parse_every(range_key), unit="ns")
        newest = pd.Timestamp(end)
        assert w.start <= newest < w.end and w.end - newest <= pd.Timedelta(step, unit="ns") + pd.Timedelta("1min")


def test_embedded_query_workers_run_one_duckdb_thread_each_and_no_more_than_the_cores(store):
    import os

    ctx = Context(f"embedded:{store}")
    assert 2 <= ctx.workers() <= max(2, os.cpu_count() or 1)
    seen = ctx.reader().gather({i: (lambda r: r._reader._con.sql("SELECT current_setting('threads')").fetchall()[0][0])
                                for i in range(4)})
    assert set(seen.values()) == {1}
    # the callback's own reader keeps DuckDB's default (a lone query runs there)
    import duckdb

    default = duckdb.connect().sql("SELECT current_setting('threads')").fetchall()[0][0]
    assert ctx.thread_reader()._con.sql("SELECT current_setting('threads')").fetchall()[0][0] == default
    assert Context("influxdb://127.0.0.1:1/db").workers() == 4  # a server's waits overlap
