"""Fault: a file in a day partition that is not Parquet (a zero-byte file, a truncated copy, garbage).
Compaction sets it aside once and merges the rest; readers skip it; no traceback, no duplicate."""

from __future__ import annotations

import logging

import pandas as pd

from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9
DAY = "m/day=2026-11-26"


def _values(root) -> list[float]:
    with EmbeddedReader(root) as r:
        return r.frame("m", ["v"], pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 86_400 * S, tz="UTC"))["v"].tolist()


def _write(w, first: int, n: int) -> None:
    for i in range(first, first + n):
        w.write([Point("m", {"host": "h"}, {"v": float(i)}, T0 + i * S)], key=f"{i + 1:032x}")


def test_a_garbage_file_is_set_aside_and_the_day_still_compacts(tmp_path, caplog):
    w = EmbeddedWriter(tmp_path)
    _write(w, 0, 3)
    day = tmp_path / DAY
    (day / f"part-{T0:020d}-{'e' * 32}.parquet").write_bytes(b"this is not parquet\n" * 10)
    (day / f"part-{T0 + 5 * S:020d}-{'f' * 32}.parquet").write_bytes(b"")  # zero bytes
    assert _values(tmp_path) == [0.0, 1.0, 2.0]  # a reader skips them before compaction has run
    with caplog.at_level(logging.WARNING, logger="fleetwise.store"):
        assert w.compact(min_files=2) == 1
    assert sorted(p.name[:13] for p in day.iterdir()) == [".bad-part-017", ".bad-part-017", "compact-01795"]
    assert sum("set aside unreadable file" in r.getMessage() for r in caplog.records) == 2
    assert _values(tmp_path) == [0.0, 1.0, 2.0]
    caplog.clear()
    _write(w, 3, 2)
    with caplog.at_level(logging.WARNING, logger="fleetwise.store"):
        assert w.compact(min_files=2) == 1  # the day keeps compacting, and says nothing more about the file
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _values(tmp_path) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_truncated_compacted_file_is_set_aside_too(tmp_path):
    w = EmbeddedWriter(tmp_path)
    _write(w, 0, 3)
    w.compact(min_files=2)
    [compacted] = (tmp_path / DAY).glob("compact-*.parquet")
    data = compacted.read_bytes()
    compacted.write_bytes(data[: len(data) // 2])  # its footer (and list of replaced files) is gone
    _write(w, 3, 2)
    assert _values(tmp_path) == [3.0, 4.0]  # the rows of the damaged file cannot be read; the rest can
    assert w.compact(min_files=2) == 1
    assert _values(tmp_path) == [3.0, 4.0]
    assert len(list((tmp_path / DAY).glob(".bad-compact-*.parquet"))) == 1


def test_a_damaged_pending_batch_is_set_aside_and_the_rest_folds(tmp_path):
    from agents.stores.embedded_rows import write_pending

    good = Point("m", {"host": "h"}, {"v": 1.0}, T0 + S).to_json().encode()
    write_pending(tmp_path, good, "a" * 32)
    write_pending(tmp_path, b'{"measurement": "m", "tags": {}, "fiel', "b" * 32)  # cut off mid-write by hand
    assert _values(tmp_path) == [1.0]
    assert EmbeddedWriter(tmp_path).fold() == 1
    assert [p.name for p in (tmp_path / ".pending").iterdir()] == [".bad-batch-" + "b" * 32 + ".jsonl"]
    assert _values(tmp_path) == [1.0]
