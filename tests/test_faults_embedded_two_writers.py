"""Fault: two processes write one embedded store at once (two agents, an agent and `ingest`, an agent and
its maintenance). 100 rounds once became 405,575 rows: concurrent compactions each merged the same files.
Every change now takes the store's writer lock, so concurrent writers interleave and every row lands once;
a step that must not wait (maintenance) is refused with the store path and the holder's PID."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pandas as pd

from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9
ROUNDS, HOSTS = 25, 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _round(writer: int, i: int) -> list[Point]:
    return [Point("m", {"host": f"w{writer}-h{h}"}, {"v": float(i)}, T0 + i * S) for h in range(HOSTS)]


def _bulk_writer(root: str, writer: int, start) -> None:
    """Like `ingest` or `simulate`: writes and compacts as fast as it can."""
    start.wait(60)
    w = EmbeddedWriter(root)
    for i in range(ROUNDS):
        w.write(_round(writer, i))
        w.compact(min_files=2)


def _agent(root: str, writer: int, start) -> None:
    """Like the agent: one pending file per round through its sink, and maintenance in between."""
    from agents.config import StoreSettings
    from agents.stores.embedded_sink import EmbeddedSink

    start.wait(60)
    sink = EmbeddedSink(root, StoreSettings())
    w = EmbeddedWriter(root)
    for i in range(ROUNDS):
        assert sink.send(b"\n".join(p.to_json().encode() for p in _round(writer, i))).outcome.name == "OK"
        if i % 3 == 0:
            w.maintain(min_files=2)


def test_concurrent_writers_and_compactions_keep_every_row_once(tmp_path):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_bulk_writer, args=(str(tmp_path), 0, start)),
             ctx.Process(target=_bulk_writer, args=(str(tmp_path), 1, start)),
             ctx.Process(target=_agent, args=(str(tmp_path), 2, start))]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    EmbeddedWriter(tmp_path).maintain(min_files=2)
    with EmbeddedReader(tmp_path) as r:
        frame = r.frame("m", ["v"], pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 86_400 * S, tz="UTC"), by=["host"])
    assert len(frame) == 3 * ROUNDS * HOSTS
    assert frame.groupby("host")["v"].apply(sorted).map(lambda v: v == [float(i) for i in range(ROUNDS)]).all()


def test_maintenance_refuses_to_wait_for_another_writer_and_names_it(tmp_path):
    w = EmbeddedWriter(tmp_path)
    w.write(_round(0, 0))
    command = [sys.executable, "-m", "agents.stores.embedded_maintain", str(tmp_path)]
    with w.lock():
        busy = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert busy.returncode == 3, busy.stderr
    assert str(tmp_path) in busy.stderr and f"pid {os.getpid()}" in busy.stderr
    assert "Traceback" not in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    free = subprocess.run([sys.executable, "-m", "fleetwise", "store", "compact", str(tmp_path), "--min-files", "2"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert free.returncode == 0, free.stderr
    assert free.stdout == (f"{tmp_path}: 0 pending batches folded, 0 partitions compacted, 0 days removed, "
                           "1 partitions rolled up\n")
