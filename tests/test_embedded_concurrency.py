"""One writer process appending, compacting and rolling up, two reader processes querying at the same time:
no reader ever errors, sees a duplicated row, a half batch or a count going down, from the points or from
the rollups."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter

T0 = 1_795_651_200 * 10**9
BATCH = 20
MIN_BATCHES = 15
MIN_QUERIES = 5
GIVE_UP_SECONDS = 90.0  # only a starved machine gets here; the asserts then say what ran


def _writer(root: str, done, written, queries) -> None:
    from agents.points import Point
    from agents.stores.embedded import EmbeddedWriter

    w = EmbeddedWriter(root)
    deadline = time.monotonic() + GIVE_UP_SECONDS
    i = 0
    # Counted, not timed: keep writing and compacting until every reader has queried a few times while the
    # writer was active, however slow the machine is.
    while (i < MIN_BATCHES or min(queries[:]) < MIN_QUERIES) and time.monotonic() < deadline:
        # Batch i: BATCH points with value i, spread over two UTC days (two partitions per batch).
        w.write([Point("m", {"host": f"h{j % 3}"}, {"v": float(i)},
                       T0 + (i * BATCH + j) * 10**6 + (j % 2) * 86_400 * 10**9) for j in range(BATCH)])
        i += 1
        if i % 5 == 0:
            w.compact(min_files=4)
            w.rollup()
    written.value = i
    done.set()


def _reader(root: str, done, results, queries, k: int) -> None:
    import pandas as pd

    from agents.query.embedded import EmbeddedReader

    start, end = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 3 * 86_400 * 10**9, tz="UTC")
    seen: list[int] = []
    try:
        with EmbeddedReader(root) as r:
            while True:
                finished = done.is_set()
                df = r.frame("m", ["v"], start, end)
                # Files are the unit of atomicity: a batch's half in one day partition is one file, seen
                # whole or not at all, and each day's files appear in the order they were written.
                for day, part in df.groupby(df["time"].dt.floor("D")):
                    per_batch = Counter(part["v"].astype(int).tolist())
                    bad = {b: n for b, n in per_batch.items() if n != BATCH // 2}
                    if bad:
                        raise AssertionError(f"{day}: batches seen partly or twice: {bad}")
                    if sorted(per_batch) != list(range(len(per_batch))):
                        raise AssertionError(f"{day}: a batch is missing: {sorted(per_batch)}")
                # the same through the rollups (hourly counts; files written since are added raw)
                n = int(r.aggregate("m", {"n": ("v", "count")}, start, end, every="1h")["n"].sum())
                if n % (BATCH // 2) or n < len(df):
                    raise AssertionError(f"rollups counted {n} rows after the points said {len(df)}")
                seen.append(len(df))
                queries[k] += 1
                if finished:
                    break
        results.put(("ok", seen))
    except Exception as e:  # report to the parent rather than die silently
        results.put(("error", f"{type(e).__name__}: {e}"))


def test_writer_and_readers_in_parallel(tmp_path):
    ctx = mp.get_context("spawn")
    done, written, results = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    queries = ctx.Array("i", 2)
    root = str(tmp_path)
    from agents.stores.embedded import EmbeddedWriter

    EmbeddedWriter(root)  # the directory exists before readers start
    writer = ctx.Process(target=_writer, args=(root, done, written, queries))
    readers = [ctx.Process(target=_reader, args=(root, done, results, queries, k)) for k in range(2)]
    for p in (writer, *readers):
        p.start()
    outcomes = [results.get(timeout=GIVE_UP_SECONDS + 60) for _ in readers]
    for p in (writer, *readers):
        p.join(timeout=60)
    assert writer.exitcode == 0
    for status, detail in outcomes:
        assert status == "ok", detail
        assert len(detail) >= MIN_QUERIES, f"reader ran only {len(detail)} queries"
        assert detail == sorted(detail), "a count went down"
        assert detail[-1] == written.value * BATCH
    assert written.value >= MIN_BATCHES
    assert not [p for p in tmp_path.rglob(".*") if p.name not in (".lock", ".rollups")], "temp files left behind"
    assert list((tmp_path / ".rollups" / "m").glob("day=*/rollup-3600s-*.parquet"))  # rollups did run
    assert len(list((tmp_path / "m").glob("day=*/compact-*.parquet"))) == 2  # compaction did run in both days
