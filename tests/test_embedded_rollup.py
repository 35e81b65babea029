"""Rollups of the embedded store are exact and transparent: every frame and aggregate read with them equals the
one read from the raw points, whatever happened to the store after the rollup (new part files, pending rows,
compaction, retention), and nothing but the reader's rollup path ever sees them."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores import embedded_rollup as rollups
from agents.stores.embedded import EmbeddedWriter, live_files
from agents.stores.embedded_rows import write_pending

DAY1 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9
DAY = 86_400 * S
HOSTS = {"a": "r1", "b": "r1", "c": ""}  # c has no rack tag


def _points(first: int, last: int, step: int = 40, salt: int = 0) -> list[Point]:
    """ctest points of every host, one per step seconds in [first, last) seconds after DAY1: a float field, an
    int field (missing on some points), a string field; host b skips a stretch."""
    pts = []
    for h, (host, rack) in enumerate(HOSTS.items()):
        for k, sec in enumerate(range(first, last, step)):
            t = DAY1 + sec * S + h * S
            if host == "b" and 5000 <= sec < 9000:
                continue
            fields = {"load": ((k * 7 + h * 13 + salt) % 17) / 4 + 0.1 * h, "state": "up" if k % 3 else "busy"}
            if k % 5:
                fields["reqs"] = (k * 5 + h + salt) % 11
            pts.append(Point("ctest", {"host": host, "rack": rack}, fields, t))
    return pts


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Tags, times, counts and extremes exactly; sums and means to 1e-12 (the order of additions differs)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) and len(want) > 0
    for col in want.columns:
        g, w = got[col], want[col]
        assert g.dtype == w.dtype, col
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g.to_numpy(), w.to_numpy(), rtol=1e-12, atol=0, err_msg=col)
        else:
            assert g.tolist() == w.tolist(), col


def _readers(root):
    return EmbeddedReader(root), EmbeddedReader(root, use_rollups=False)


END_CUT = DAY1 + 86_400 * S + 7_000 * S + 500_000_000  # mid-bucket, between two points of each host
WINDOWS = {
    "aligned": (DAY1, DAY1 + 2 * DAY),
    "after_newest": (DAY1 + 2 * DAY - 24 * 3600 * S + 1, DAY1 + 2 * DAY + 1),
    "cut": (DAY1 + 1_234 * S, END_CUT),
}
# every rollable aggregate, bucket widths of each level, widths that straddle midnight (7h, 2d)
FRAMES = [("5m", "mean"), ("5m", "count"), ("15m", "sum"), ("1h", "max"), ("2h", "min"), ("7h", "mean"),
          ("1d", "count")]


def _check_all(root, window: str, by=("host",), where_tags=None) -> int:
    """Every rollable frame and a few aggregates, with and without rollups; returns the queries answered from
    rollups."""
    rolled, raw = _readers(root)
    start, end = WINDOWS[window]
    for every, agg in FRAMES:
        kw = dict(start=start, end=end, every=every, by=list(by), agg=agg, where_tags=where_tags)
        assert_same(rolled.frame("ctest", ["load", "reqs"], **kw), raw.frame("ctest", ["load", "reqs"], **kw))
    stats = {"m": ("load", "mean"), "n": ("reqs", "count"), "hi": ("reqs", "max"), "lo": ("load", "min"),
             "s": ("reqs", "sum")}
    for every in (None, "15m", "2d"):
        kw = dict(start=start, end=end, every=every, by=list(by), where_tags=where_tags)
        assert_same(rolled.aggregate("ctest", stats, **kw), raw.aggregate("ctest", stats, **kw))
    return rolled.rollup_queries


@pytest.fixture
def store(tmp_path):
    w = EmbeddedWriter(tmp_path)
    pts = _points(0, 2 * 86_400)
    w.write(pts[::2])  # two part files per day
    w.write(pts[1::2])
    assert w.rollup() == 2  # two days
    return tmp_path


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_frames_and_aggregates_equal_the_raw_ones(store, window):
    assert _check_all(store, window) == len(FRAMES) + 3


def test_by_no_tags_and_absent_tags_and_tag_filters(store):
    assert _check_all(store, "cut", by=()) == len(FRAMES) + 3
    assert _check_all(store, "aligned", by=("rack", "nope", "host")) == len(FRAMES) + 3
    assert _check_all(store, "aligned", by=("rack",), where_tags={"rack": ["", "r1"], "host": ("a", "c")}) > 0
    assert _check_all(store, "after_newest", where_tags={"rack": ""}) > 0


def test_what_rollups_cannot_answer_is_read_raw(store):
    rolled, raw = _readers(store)
    start, end = WINDOWS["aligned"]
    for kw in (dict(every="5m", agg="p95"), dict(every="5m", agg="last"), dict(every="1m"), dict(every="450s"),
               dict()):
        fields = ["load", "reqs"]
        assert_same(rolled.frame("ctest", fields, start, end, by=["host"], **kw),
                    raw.frame("ctest", fields, start, end, by=["host"], **kw))
    # a string field is not rolled up (its days go raw), nor does a where condition or first/last go to rollups
    assert_same(rolled.frame("ctest", ["state"], start, end, every="1h", by=["host"], agg="count"),
                raw.frame("ctest", ["state"], start, end, every="1h", by=["host"], agg="count"))
    assert_same(rolled.aggregate("ctest", {"n": ("load", "count")}, start, end, where=[("load", ">", 2)]),
                raw.aggregate("ctest", {"n": ("load", "count")}, start, end, where=[("load", ">", 2)]))
    assert_same(rolled.aggregate("ctest", {"f": ("load", "first"), "m": ("load", "mean")}, start, end, by=["host"]),
                raw.aggregate("ctest", {"f": ("load", "first"), "m": ("load", "mean")}, start, end, by=["host"]))
    assert rolled.rollup_queries == 0


def test_new_part_files_and_pending_rows_are_added_to_the_rollup(store):
    w = EmbeddedWriter(store)
    w.write(_points(3_000, 90_000, step=170, salt=3))  # late rows into both days, after the rollup
    extra = _points(100_000, 120_000, step=130, salt=5)
    write_pending(store, b"\n".join(p.to_json().encode() for p in extra), "ab" * 16)
    assert _check_all(store, "aligned") == len(FRAMES) + 3  # still from rollups, plus the new rows raw
    assert _check_all(store, "cut") == len(FRAMES) + 3
    rolled, raw = _readers(store)
    n_raw = raw.aggregate("ctest", {"n": ("load", "count")}, *WINDOWS["aligned"])["n"].iloc[0]
    assert n_raw == len(_points(0, 2 * 86_400)) + len(_points(3_000, 90_000, step=170)) + len(extra)
    assert rolled.aggregate("ctest", {"n": ("load", "count")}, *WINDOWS["aligned"])["n"].iloc[0] == n_raw


def test_compaction_after_the_rollup_falls_back_until_maintenance_rolls_up_again(store):
    w = EmbeddedWriter(store)
    w.write(_points(40_000, 50_000, step=90, salt=7))
    assert w.compact(day="2026-11-26", min_files=2) == 1  # day 1: its rollup's sources are gone
    rolled, _ = _readers(store)
    day1 = rolled._source("ctest", DAY1, DAY1).by_day["2026-11-26"]
    assert rolled._rollup(rollups.day_dir(store, "ctest", "2026-11-26"), rollups.LEVELS_NS[0],
                          {p.rsplit("/", 1)[1] for p in day1}) is None
    assert _check_all(store, "aligned") == len(FRAMES) + 3  # day 2 from its rollup, day 1 raw
    assert _check_all(store, "cut") == len(FRAMES) + 3
    folded, compacted, removed, rolled_up = w.maintain(min_files=2)
    assert (folded, compacted, removed, rolled_up) == (0, 1, [], 2)  # day 2 compacted too, both rolled up again
    for day in ("2026-11-26", "2026-11-27"):
        live = sorted(p.name for p in live_files(store / "ctest" / f"day={day}"))
        files = rollups.list_rollups(rollups.day_dir(store, "ctest", day))
        assert len(live) == 1 and len(files) == len(rollups.LEVELS_NS)
        assert all(rollups.footer(f)["of"] == live for f in files)
    assert w.rollup() == 0  # nothing changed since
    assert _check_all(store, "aligned") == len(FRAMES) + 3


def test_rollups_hold_what_the_points_say_and_stay_out_of_data_readers(store):
    start, end = DAY1, DAY1 + DAY
    pts = [p for p in _points(0, 2 * 86_400) if start <= p.time_ns < end]
    (path,) = [f for f in rollups.list_rollups(rollups.day_dir(store, "ctest", "2026-11-26"))
               if f.name.startswith("rollup-3600s-")]
    table = pq.read_table(path).to_pandas()
    a0 = table[(table["host"] == "a") & (table["time"] == pd.Timestamp(DAY1, unit="ns", tz="UTC"))].iloc[0]
    hour = [p for p in pts if p.tags["host"] == "a" and p.time_ns < DAY1 + 3600 * S]
    reqs = [p.fields["reqs"] for p in hour if "reqs" in p.fields]
    assert a0[rollups.column("reqs", "count")] == len(reqs) and a0[rollups.column("reqs", "sum")] == sum(reqs)
    assert (a0[rollups.column("reqs", "min")], a0[rollups.column("reqs", "max")]) == (min(reqs), max(reqs))
    assert a0[rollups.column("time", "min")] == hour[0].time_ns
    assert a0[rollups.column("time", "max")] == hour[-1].time_ns
    info = json.loads(pq.read_metadata(path).metadata[rollups.ROLLUP_KEY])
    assert info["skipped"] == ["state"] and sorted(info["fields"]) == ["load", "reqs"]
    assert pd.isna(table[table["host"] == "c"]["rack"]).all()  # a missing tag stays missing (null)
    # the data layout a direct reader globs holds only data; the reader lists no rollup measurement
    glob = f"{store}/*/day=*/*.parquet"
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', union_by_name=true)").fetchall()[0][0]
    assert n == len(_points(0, 2 * 86_400))
    assert EmbeddedReader(store).measurements() == ["ctest"]


def test_retention_removes_a_days_rollups(store):
    w = EmbeddedWriter(store)
    removed = w.retain(1, now=(DAY1 + 2 * DAY + 3600 * S) / 1e9)
    assert removed == ["ctest/2026-11-26"]
    assert not rollups.day_dir(store, "ctest", "2026-11-26").exists()
    assert rollups.list_rollups(rollups.day_dir(store, "ctest", "2026-11-27"))
    assert _check_all(store, "aligned") == len(FRAMES) + 3


def test_simulated_fleet_reads_the_same_with_rollups(tmp_path):
    from agents.simulate import simulate

    r = simulate(nodes=3, days=1.25, interval=60, seed=2, store=f"embedded:{tmp_path}", start="2026-11-16T00:00:00Z")
    assert r.rollup_seconds > 0 and rollups.list_rollups(rollups.day_dir(tmp_path, "gpu", "2026-11-17"))
    rolled, raw = _readers(tmp_path)
    end = pd.Timestamp("2026-11-17T05:59:00Z") + pd.Timedelta(1, "ns")  # after the newest point, as the dashboard
    for start, every in ((end - pd.Timedelta("24h"), "5m"), (pd.Timestamp("2026-11-16T00:00:00Z"), "15m")):
        for measurement, fields, by in (("gpu", ["utilization_ratio", "power_watts"], ["host", "gpu", "model"]),
                                        ("cpu", ["busy_ratio"], ["host", "cpu"]), ("net", ["rx_bytes"], ["host"])):
            for agg in ("mean", "max", "count"):
                assert_same(rolled.frame(measurement, fields, start, end, every=every, by=by, agg=agg),
                            raw.frame(measurement, fields, start, end, every=every, by=by, agg=agg))
        stats = {"n": ("utilization_ratio", "count"), "m": ("memory_used_bytes", "mean")}
        assert_same(rolled.aggregate("gpu", stats, start, end, by=["host", "model"]),
                    raw.aggregate("gpu", stats, start, end, by=["host", "model"]))
    assert rolled.rollup_queries == 20
