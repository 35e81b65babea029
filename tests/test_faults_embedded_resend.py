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


class _KilledAfterPublish:
    """The agent's embedded sink, killed (-9) right after its first publish: the spool never hears the ack."""

    def __init__(self, sink) -> None:
        self.sink, self.format = sink, sink.format
        self.content_keyed = getattr(sink, "content_keyed", False)

    def send(self, payload: bytes, timeout: float | None = None):
        self.sink.send(payload, timeout)
        raise KeyboardInterrupt("kill -9")  # BaseException: nothing in the shipper acks or retries


def test_rounds_resent_after_a_crash_are_not_regrouped_into_new_batches(tmp_path):
    # Three rounds wait in the spool; the shipper publishes a batch and dies before the ack. After the restart a
    # fourth round has joined the queue. Had the shipper coalesced rounds 1-3 into one batch before the crash
    # and rounds 1-4 after it, the second batch would get another content key and rounds 1-3 (6 rows) would be
    # stored twice. Every round must be stored once: 4 rounds x 2 rows.
    import time

    import pytest

    from agents.stores.settings import StoreSettings
    from agents.stores.shipper import Shipper
    from agents.stores.spool import Spool
    from agents.stores.url import parse_store_url
    from agents.stores.writers import make_writer

    def payload(first: int) -> bytes:
        return b"\n".join(p.to_json().encode() for p in _batch(first, 2))

    store, spool_path = tmp_path / "store", tmp_path / "spool.sqlite"
    url = parse_store_url(f"embedded:{store}")
    spool = Spool(spool_path)
    for r in range(3):
        spool.enqueue(payload(2 * r), "json", 2)
    with pytest.raises(KeyboardInterrupt):
        Shipper(spool, _KilledAfterPublish(make_writer(url, StoreSettings()))).flush(time.monotonic() + 30)
    spool.close()

    spool = Spool(spool_path)  # the restarted agent
    spool.enqueue(payload(6), "json", 2)
    assert Shipper(spool, make_writer(url, StoreSettings())).flush(time.monotonic() + 30)
    assert _values(store) == [float(i) for i in range(8)]
    EmbeddedWriter(store).maintain(min_files=2)
    assert _values(store) == [float(i) for i in range(8)]
