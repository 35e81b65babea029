"""The embedded reader keeps the columns of a list of files (files never change): a file written later is a
new list, so a field it brings is read, and the first list's answer is unchanged."""

from __future__ import annotations

import pandas as pd

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
START, END = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 3600 * 10**9, tz="UTC")


def test_a_field_in_a_file_written_after_a_read_is_seen(tmp_path):
    writer = EmbeddedWriter(tmp_path)
    writer.write([Point("m", {"host": "n1"}, {"a": 1.0}, T0)])
    with open_reader(f"embedded:{tmp_path}") as r:
        first = r.frame("m", ["a", "b"], START, END, every="1h", by=["host"])
        assert first["a"].tolist() == [1.0] and first["b"].isna().all()
        writer.write([Point("m", {"host": "n1"}, {"a": 3.0, "b": 5.0}, T0 + 60 * 10**9)])
        again = r.frame("m", ["a", "b"], START, END, every="1h", by=["host"])
        assert again["a"].tolist() == [2.0] and again["b"].tolist() == [5.0]
