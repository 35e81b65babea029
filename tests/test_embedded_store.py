"""The embedded store's write side: layout, atomic publication, types, compaction, retention."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from agents.points import InvalidPoint, Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter, decode_name, encode_name, live_files

DAY1 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock")


def test_layout_types_and_no_temp_files(tmp_path):
    w = EmbeddedWriter(tmp_path)
    n = w.write([
        Point("cpu", {"host": "n1", "cpu": "total"}, {"busy_ratio": 0, "user_ratio": 0.25}, DAY1 + 5 * S),
        Point("cpu", {"host": "n1", "cpu": "total"}, {"busy_ratio": 0.5}, DAY1 + 86_400 * S - 1),
        Point("cpu", {"host": "n2", "cpu": "total"}, {"busy_ratio": 1.0}, DAY1 + 86_400 * S),  # next UTC day
        Point("gpu", {"host": "n1", "gpu": "0", "uuid": "U", "vendor": "nvidia", "model": "H100"},
              {"up": 1, "utilization_ratio": 0.75}, DAY1),
        Point("my app/x", {"host": "n1", "weird key": "v"}, {"n": 3, "s": "txt", "b": True}, DAY1),
    ])
    assert n == 5
    files = _files(tmp_path)
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "cpu/day=2026-11-26", "cpu/day=2026-11-27", "gpu/day=2026-11-26", "my%20app%2Fx/day=2026-11-26"]
    assert all(f.rsplit("/", 1)[1].startswith("part-") and f.endswith(".parquet") for f in files)
    assert not any(name.startswith(".") for f in files for name in f.split("/"))  # no temp file left behind

    cpu = pq.read_table(tmp_path / files[0])
    assert str(cpu.schema.field("time").type) == "timestamp[ns, tz=UTC]"
    assert cpu.column_names == ["time", "host", "cpu", "busy_ratio", "user_ratio"]  # schema tags first
    assert str(cpu.schema.field("busy_ratio").type) == "double"  # declared float: the int 0 becomes 0.0
    assert cpu.column("busy_ratio").to_pylist() == [0.0, 0.5]
    assert cpu.column("user_ratio").to_pylist() == [0.25, None]
    gpu = pq.read_table(tmp_path / files[2])
    assert str(gpu.schema.field("up").type) == "int64"
    other = pq.read_table(tmp_path / files[3])
    assert {f.name: str(f.type) for f in other.schema} == {
        "time": "timestamp[ns, tz=UTC]", "host": "string", "weird key": "string", "n": "int64", "s": "string",
        "b": "bool"}


def test_names_encode_safely():
    for name in ["cpu", "a/b", "..", ".hidden", "x y,z=1", "ключ", "100%"]:
        enc = encode_name(name)
        assert "/" not in enc and not enc.startswith(".") and enc not in (".", "..")
        assert decode_name(enc) == name
    assert encode_name("a/b") == "a%2Fb" and encode_name("..") == "%2E%2E"


def test_bad_batch_writes_nothing(tmp_path):
    w = EmbeddedWriter(tmp_path)
    good = Point("m", {"host": "h"}, {"v": 1.0}, DAY1)
    for bad in (Point("m", {"host": "h\nx"}, {"v": 1.0}, DAY1), Point("m", {"host": "h"}, {}, DAY1),
                Point("m", {"host": "h"}, {"time": 1.0}, DAY1), Point("m", {"host": "h", "v": "x"}, {"v": 1.0}, DAY1),
                Point("m", {"host": "h"}, {"v": float("nan")}, DAY1)):
        with pytest.raises(InvalidPoint):
            w.write([good, bad])
    assert _files(tmp_path) == []
    with pytest.raises(InvalidPoint, match="mixed types"):
        w.write([good, Point("m", {"host": "h"}, {"v": "text"}, DAY1 + 1)])
    assert _files(tmp_path) == []


def _frame(root, start=DAY1, end=DAY1 + 2 * 86_400 * S):
    with EmbeddedReader(root) as r:
        return r.frame("m", ["v", "k"], pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"), by=["host"])


def test_compaction_preserves_rows_exactly(tmp_path):
    w = EmbeddedWriter(tmp_path)
    for i in range(10):
        pts = [Point("m", {"host": f"h{j}"}, {"v": i * 10.0 + j, **({"k": i} if j == 0 else {})},
                     DAY1 + (i * 3 + j) * S) for j in range(3)]
        w.write(pts)
    w.write([Point("m", {"host": "h0"}, {"v": -1.0}, DAY1 + 86_400 * S)])  # a second day with one file
    before = _frame(tmp_path)
    day_dir = tmp_path / "m" / "day=2026-11-26"
    assert len(live_files(day_dir)) == 10
    assert w.compact(min_files=8) == 1  # the second day has too few files to bother
    after_files = _files(tmp_path)
    assert len(after_files) == 2 and after_files[0].split("/")[-1].startswith("compact-")
    after = _frame(tmp_path)
    pd.testing.assert_frame_equal(before, after)
    assert len(after) == 31 and after["v"].sum() == sum(i * 10.0 + j for i in range(10) for j in range(3)) - 1.0
    # compaction of an already compacted partition plus new files keeps counting right
    for i in range(8):
        w.write([Point("m", {"host": "h9"}, {"v": 1.0}, DAY1 + (100 + i) * S)])
    assert w.compact(day="2026-11-26", min_files=8) == 1
    assert len(live_files(day_dir)) == 1 and len(_frame(tmp_path)) == 39


def test_superseded_files_are_ignored_until_deleted(tmp_path):
    """The window between publishing a compacted file and deleting what it replaces: no duplicates."""
    w = EmbeddedWriter(tmp_path)
    for i in range(3):
        w.write([Point("m", {"host": "h"}, {"v": float(i)}, DAY1 + i * S)])
    day_dir = tmp_path / "m" / "day=2026-11-26"
    old = {p: p.read_bytes() for p in live_files(day_dir)}
    w.compact(min_files=2)
    for p, data in old.items():  # put the replaced files back, as if deletion had not happened yet
        p.write_bytes(data)
    assert len(_files(tmp_path)) == 4
    assert _frame(tmp_path)["v"].tolist() == [0.0, 1.0, 2.0]


def test_readers_skip_temp_files(tmp_path):
    w = EmbeddedWriter(tmp_path)
    w.write([Point("m", {"host": "h"}, {"v": 1.0}, DAY1)])
    day_dir = tmp_path / "m" / "day=2026-11-26"
    (day_dir / ".tmp-part-half-written.parquet").write_bytes(b"PAR1 not yet complete")
    assert _frame(tmp_path)["v"].tolist() == [1.0]


def test_retention_removes_whole_old_days(tmp_path):
    w = EmbeddedWriter(tmp_path)
    for d in range(5):
        w.write([Point("m", {"host": "h"}, {"v": float(d)}, DAY1 + d * 86_400 * S + 3600 * S)])
    now = DAY1 / S + 4 * 86_400 + 7200  # 2026-11-30T02:00Z
    # max age 2 days: cutoff 2026-11-28T02:00Z; days ending by then (26th, 27th) go, the 28th stays.
    assert w.retain(2, now=now) == ["m/2026-11-26", "m/2026-11-27"]
    assert sorted(os.listdir(tmp_path / "m")) == ["day=2026-11-28", "day=2026-11-29", "day=2026-11-30"]
    assert _frame(tmp_path, end=DAY1 + 5 * 86_400 * S)["v"].tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        w.retain(0)


def test_resending_a_batch_through_the_sink_does_not_duplicate_rows(tmp_path):
    """The spool resends a batch whose ack was lost in a crash: the embedded sink must not add rows twice."""
    from agents.stores.embedded_sink import EmbeddedSink

    sink = EmbeddedSink(tmp_path)
    t = 1_700_000_000 * 10**9
    batch = b"\n".join(Point("memory", {"host": h}, {"used_bytes": i}, t).to_json().encode()
                       for i, h in enumerate(("a", "b", "c")))
    other = Point("memory", {"host": "d"}, {"used_bytes": 9}, t).to_json().encode()
    for payload in (batch, batch, other):  # a resend, then a different batch with the same timestamp
        assert sink.send(payload).outcome.name == "OK"
    frame = EmbeddedReader(tmp_path).frame("memory", ["used_bytes"], pd.Timestamp(t, tz="UTC"),
                                           pd.Timestamp(t + 10**9, tz="UTC"), by=["host"])
    assert frame["host"].tolist() == ["a", "b", "c", "d"]
    assert frame["used_bytes"].tolist() == [0.0, 1.0, 2.0, 9.0]


def test_file_key_must_be_hex(tmp_path):
    with pytest.raises(ValueError, match="hex"):
        EmbeddedWriter(tmp_path).write([Point("m", {"host": "h"}, {"v": 1}, 1)], key="../../etc")


def test_the_agents_embedded_sink_compacts_and_applies_retention(tmp_path):
    """One file per round would pile up: the sink merges a day's files and drops days past retention."""
    import time as _time

    from agents.config import StoreSettings
    from agents.stores.embedded_sink import EmbeddedSink

    sink = EmbeddedSink(tmp_path, StoreSettings(compact_interval_seconds=3600, compact_min_files=4,
                                                retention_days=2))
    now_ns = _time.time_ns() // (86_400 * S) * 86_400 * S + 3600 * S  # 01:00 today: one day's partition
    old_ns = now_ns - 5 * 86_400 * S

    def send(value: int, t: int) -> str:
        return sink.send(Point("memory", {"host": "a"}, {"used_bytes": value}, t).to_json().encode()).outcome.name

    for i in range(6):
        assert send(i, old_ns + i * S) == send(i, now_ns + i * S) == "OK"
    # The agent process writes no Parquet itself: one pending row file per batch
    assert list(tmp_path.rglob("*.parquet")) == [] and len(list((tmp_path / ".pending").iterdir())) == 12
    assert sink._child is None  # not yet: the interval has not passed
    sink._maintained -= 3600
    assert send(6, now_ns + 6 * S) == "OK"
    assert sink._child.wait(timeout=300) == 0  # the maintenance child: fold, compact, retention
    data = [p for p in tmp_path.rglob("*.parquet") if ".rollups" not in p.parts]
    assert [p.name.split("-")[0] for p in data] == ["compact"]  # today's 7 files merged into one; the old day is gone
    # and rolled up, from the compacted file (agents.stores.embedded_rollup); the old day's rollups are gone too
    from agents.stores import embedded_rollup as rollups

    made = sorted(p for p in tmp_path.rglob("rollup-*.parquet"))
    assert len(made) == len(rollups.LEVELS_NS) and {p.parent.name for p in made} == {data[0].parent.name}
    assert all(rollups.footer(p)["of"] == [data[0].name] for p in made)
    frame = EmbeddedReader(tmp_path).frame("memory", ["used_bytes"], pd.Timestamp(old_ns - S, tz="UTC"),
                                           pd.Timestamp(now_ns + 60 * S, tz="UTC"))
    assert frame["used_bytes"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
