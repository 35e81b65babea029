"""Fault: kill -9 between publishing a batch and acking it makes the spool resend the batch. The resend
must add nothing, also when compaction ran in between (it used to hide the first copy's name, and the
next compaction brought back a duplicate: 8 rows instead of 7)."""

from __future__ import annotations

import pandas as pd

from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9


def _batch(first: int, n: int) -> list[Point]:
    return [Point("m", {"host": "h"}, {"v": float(first + i)}, T0 + (first + i) * S) for i in range(n)]


def _values(root) -> list[float]:
    with EmbeddedReader(root) as r:
        frame = r.frame("m", ["v"], pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 86_400 * S, tz="UTC"))
    return frame["v"].tolist()


def test_a_keyed_batch_written_again_after_compaction_adds_nothing(tmp_path):
    w = EmbeddedWriter(tmp_path)
    w.write(_batch(0, 2), key="a" * 32)
    w.write(_batch(2, 3), key="b" * 32)  # batch B
    assert w.compact(min_files=2) == 1
    w.write(_batch(2, 3), key="b" * 32)  # B again: the ack was lost
    assert _values(tmp_path) == [0.0, 1.0, 2.0, 3.0, 4.0]
    w.write(_batch(5, 2), key="c" * 32)
    assert w.compact(min_files=2) == 1
    w.write(_batch(2, 3), key="b" * 32)  # and once more after a second compaction
    assert _values(tmp_path) == [float(i) for i in range(7)]
    assert w.compact(min_files=2) == 0  # nothing new to merge: the resends wrote no file


def test_a_batch_resent_through_the_agents_sink_after_fold_and_compaction_adds_nothing(tmp_path):
    from agents.config import StoreSettings
    from agents.stores.url import parse_store_url
    from agents.stores.writers import make_writer

    sink = make_writer(parse_store_url(f"embedded:{tmp_path}"), StoreSettings())

    def payload(points):
        return b"\n".join(p.to_json().encode() for p in points)

    a, b, c = payload(_batch(0, 2)), payload(_batch(2, 3)), payload(_batch(5, 2))
    w = EmbeddedWriter(tmp_path)
    assert sink.send(a).outcome.name == "OK" and sink.send(b).outcome.name == "OK"
    w.maintain(min_files=2)
    assert sink.send(b).outcome.name == "OK"  # resent: its rows are in a compacted file by now
    assert _values(tmp_path) == [0.0, 1.0, 2.0, 3.0, 4.0]  # readers already drop the pending copy
    assert sink.send(c).outcome.name == "OK"
    w.maintain(min_files=2)
    assert _values(tmp_path) == [float(i) for i in range(7)]
    assert sink.send(b).outcome.name == "OK"  # resent again, while its first copy is pending... and folded
    w.maintain(min_files=2)
    assert _values(tmp_path) == [float(i) for i in range(7)]
