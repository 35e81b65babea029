"""The durable spool: order, acks, drop-oldest bound with exact counts, dead letters, persistence."""

from __future__ import annotations

import random
import sqlite3

import pytest

from agents.stores.shipper import backoff_delay
from agents.stores.spool import Spool, SpoolError


def payload(i: int, points: int = 1, width: int = 0) -> bytes:
    lines = [f"m,host=h v={i}i {1_000 + i * 10 + k}" for k in range(points)]
    text = "\n".join(lines)
    return (text + " " * max(0, width - len(text))).encode() if width else text.encode()


def test_oldest_first_coalesced_up_to_max_points(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    for i in range(5):
        spool.enqueue(payload(i, points=2), "line", 2)
    batch = spool.peek(max_points=5)
    # 2 + 2 fit, a third row would make 6 > 5
    assert batch.ids == (1, 2)
    assert batch.points == 4
    assert batch.payload == b"m,host=h v=0i 1000\nm,host=h v=0i 1001\nm,host=h v=1i 1010\nm,host=h v=1i 1011"
    spool.ack(batch)
    assert spool.peek(5).ids == (3, 4)
    stats = spool.stats()
    assert (stats.queued_batches, stats.sent_points) == (3, 4)
    assert stats.last_success_timestamp_seconds > 0


def test_one_row_larger_than_max_points_is_still_sent(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    spool.enqueue(payload(0, points=7), "line", 7)
    assert spool.peek(max_points=3).points == 7


def test_formats_are_never_mixed_in_one_batch(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    spool.enqueue(b"a v=1i 1", "line", 1)
    spool.enqueue(b'{"measurement": "a"}', "json", 1)
    assert spool.peek(100).ids == (1,)


def test_committed_batches_and_counters_survive_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=4096)
    for i in range(3):
        spool.enqueue(payload(i), "line", 1)
    spool.ack(spool.peek(1))
    spool.enqueue(b"z" * 5000, "line", 9)  # alone larger than the bound: dropped and counted
    spool.close()
    again = Spool(path, max_bytes=4096)
    stats = again.stats()
    assert (stats.queued_batches, stats.sent_points, stats.dropped_batches, stats.dropped_points) == (2, 1, 1, 9)
    assert again.peek(10).payload == payload(1) + b"\n" + payload(2)


def test_full_spool_drops_oldest_with_exact_counts_and_bounded_file(tmp_path):
    path = tmp_path / "s.sqlite"
    bound = 20_000
    spool = Spool(path, max_bytes=bound)
    sizes = []
    for i in range(300):  # 300 batches of 1000 bytes and 3 points each; 20 fit
        spool.enqueue(payload(i, points=3, width=1000), "line", 3)
        sizes.append(path.stat().st_size + (tmp_path / "s.sqlite-wal").stat().st_size)
    stats = spool.stats()
    assert stats.queued_batches == 20
    assert stats.queued_bytes == 20_000
    assert stats.dropped_batches == 280
    assert stats.dropped_points == 840
    batch = spool.peek(1000)
    assert batch.ids == tuple(range(281, 301))  # the newest survive, in order
    assert batch.payload.startswith(b"m,host=h v=280i ")
    # payload bound + SQLite pages + a WAL truncated in proportion to the bound
    assert max(sizes) < bound + 200_000, max(sizes)


def test_dead_letter_keeps_remainder_in_place(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    spool.enqueue(b"a v=1i 1\nbad line\nb v=2i 2", "line", 3)
    spool.enqueue(b"c v=3i 3", "line", 1)
    batch = spool.peek(3)
    rest = spool.dead_letter(batch, [(b"bad line", "invalid field format")], [b"a v=1i 1", b"b v=2i 2"])
    assert rest.ids == (1,) and rest.points == 2
    assert spool.peek(100).payload == b"a v=1i 1\nb v=2i 2\nc v=3i 3"  # still ahead of the newer row
    [(line, message, when)] = spool.dead_letters()
    assert (line, message) == (b"bad line", "invalid field format") and when > 0
    assert spool.stats().dead_letter_points == 1
    assert spool.stats().queued_bytes == len(b"a v=1i 1\nb v=2i 2") + len(b"c v=3i 3")


def test_second_agent_on_same_spool_is_refused(tmp_path):
    Spool(tmp_path / "s.sqlite")
    with pytest.raises(SpoolError, match="in use by another agent"):
        Spool(tmp_path / "s.sqlite")


def test_unwritable_spool_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="spool_dir"):
        Spool(tmp_path / "file" / "s.sqlite")


def test_spool_is_sqlite_wal(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    spool.enqueue(b"a v=1i 1", "line", 1)
    con = sqlite3.connect(tmp_path / "s.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT points, payload FROM batches").fetchall() == [(1, b"a v=1i 1")]


def test_backoff_is_exponential_jittered_and_capped():
    rng = random.Random(1)
    for attempt, step in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)]:
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step
        assert max(delays) - min(delays) > step / 4  # really jittered
