"""Fault: one value the embedded store cannot hold (a NIC counter of 2**64-1, a textfile value of 1e30)
must be quarantined, never block the queue: everything after it lands, the bad point is a dead letter."""

from __future__ import annotations

import shutil
import time

import pandas as pd

from agents.collectors.base import Cycle, Roots
from agents.collectors.net import NetCollector
from agents.collectors.textfile import TextfileCollector, TextfileOptions
from agents.config import StoreSettings
from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter
from agents.stores.writers import open_sink
from tests.conftest import FIXTURES

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9
HUGE_COUNTER = 2**64 - 1


def _collected(tmp_path) -> list[Point]:
    """One round of the real net and textfile collectors over trees holding the two bad values."""
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "net", proc)
    dev = proc / "net" / "dev"
    dev.write_text(dev.read_text().replace("1234567890", str(HUGE_COUNTER), 1))  # eth0 rx_bytes
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    # written by the scheduler's prolog (a job's own job-N.prom may not set job_info)
    (textfiles / "slurm-jobs.prom").write_text('fleetwise_job_info{job="7",name="train",cpus="1e30"} 1\n'
                                               'fleetwise_job_progress_total{job="7",unit="steps"} 42\n')
    points = list(NetCollector(Roots(proc=proc), "n1").collect(Cycle(time_ns=T0)))
    points += list(TextfileCollector(Roots(), "n1", TextfileOptions(directory=textfiles)).collect(Cycle(time_ns=T0)))
    return points


def _frame(root, measurement, fields, by):
    with EmbeddedReader(root) as r:
        return r.frame(measurement, fields, pd.Timestamp(T0 - S, tz="UTC"), pd.Timestamp(T0 + 3600 * S, tz="UTC"),
                       by=by)


def test_unstorable_values_are_dead_lettered_and_the_queue_moves_on(tmp_path):
    points = _collected(tmp_path)
    eth0 = [p for p in points if p.measurement == "net" and p.tags.get("interface") == "eth0"]
    info = [p for p in points if p.measurement == "job_info"]
    assert eth0[0].fields["rx_bytes"] == HUGE_COUNTER and info[0].fields["cpus_requested"] == int(1e30)
    root = tmp_path / "store"
    store = open_sink(f"embedded:{root}", StoreSettings(spool_dir=tmp_path / "spool", flush_interval_seconds=0.01))
    try:
        store.enqueue(points)
        later = Point("memory", {"host": "n1"}, {"total_bytes": 8 * 2**30}, T0 + 10 * S)
        store.enqueue([later])  # a round after the bad one must land too
        assert store.shipper.flush(time.monotonic() + 60)
        dead = store.spool.dead_letters()
    finally:
        store.close(0)
    assert len(dead) == 2
    assert any(b'"rx_bytes": 18446744073709551615' in line and "64 bits" in why for line, why, _ in dead)
    assert any(f"\"cpus_requested\": {int(1e30)}".encode() in line for line, _, _ in dead)
    EmbeddedWriter(root).maintain(min_files=2)
    for _ in range(2):  # before and after maintenance folded the rows into Parquet
        net = _frame(root, "net", ["rx_bytes"], ["interface"])
        # eth0's point is the dead letter (lo, docker0 and veth are excluded by default)
        assert net.set_index("interface")["rx_bytes"].to_dict() == {"ib0": 98765432109876}
        assert _frame(root, "job_progress", ["progress"], ["job"])["progress"].tolist() == [42.0]
        assert _frame(root, "memory", ["total_bytes"], [])["total_bytes"].tolist() == [8.0 * 2**30]
        assert _frame(root, "job_info", ["cpus_requested"], []).empty
        EmbeddedWriter(root).maintain(min_files=2)


def test_the_writer_refuses_exactly_the_bad_points_and_writes_nothing(tmp_path):
    from agents.stores.embedded_rows import check_points

    good = Point("net", {"host": "n1", "interface": "eth1"}, {"rx_bytes": 5}, T0)
    batch = [good, Point("net", {"host": "n1", "interface": "eth0"}, {"rx_bytes": HUGE_COUNTER}, T0),
             Point("m", {"host": "n1"}, {"v": 1}, T0), Point("m", {"host": "n1"}, {"v": "text"}, T0 + S),
             Point("net", {"host": "n1", "interface": "eth2"}, {"rx_bytes": 1.5}, T0)]
    problems = check_points(batch)
    assert sorted(problems) == [1, 3, 4]
    assert "64 bits" in problems[1] and "mixed types" in problems[3] and "64-bit integer" in problems[4]
    writer = EmbeddedWriter(tmp_path)
    try:
        writer.write(batch)
        raised = None
    except ValueError as e:
        raised = e
    assert raised is not None and not list(tmp_path.rglob("*.parquet"))
    assert writer.write([p for i, p in enumerate(batch) if i not in problems]) == 2
