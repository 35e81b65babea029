"""Faults between the agent and a real influxd: outages, kill -9, a full spool, malformed points.

The agent runs as a subprocess (`python -m fleetwise agent --store influxdb://...`); it logs each
round it committed to the spool ("round N (time_ns T)"), which is what the store must end up holding.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.config import StoreSettings
from agents.points import Point
from agents.stores.influxdb import InfluxV1Writer
from agents.stores.url import parse_store_url
from agents.stores.writers import open_sink
from tests.helpers import wait_http

ROUND = re.compile(r"round (\d+) \(time_ns (\d+)\)")


def url_of(server, db: str = "fleet") -> str:
    return server.url.replace("http://", "influxdb://") + f"/{db}"


def start_agent(server, spool_dir: Path, log: Path, interval: float = 0.3, **store_env) -> subprocess.Popen:
    env = {**os.environ, "FLEETWISE_STORE__SPOOL_DIR": str(spool_dir),
           "FLEETWISE_STORE__FLUSH_INTERVAL_SECONDS": "0.2", "FLEETWISE_STORE__RETRY_BASE_SECONDS": "0.2",
           "FLEETWISE_STORE__RETRY_MAX_SECONDS": "1", "FLEETWISE_AGENT__JITTER_SECONDS": "0",
           **{f"FLEETWISE_STORE__{k.upper()}": str(v) for k, v in store_env.items()}}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "fleetwise", "--log-level", "INFO", "agent",
                                 "--store", url_of(server), "--interval", str(interval), "--collectors", "memory"],
                                stdout=subprocess.DEVNULL, stderr=out, env=env)


def rounds(log: Path) -> list[int]:
    """time_ns of every round the agent(s) committed, in order."""
    return [int(m.group(2)) for m in ROUND.finditer(log.read_text())]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def stop_agent(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def memory_times(server) -> list[int]:
    writer = InfluxV1Writer(parse_store_url(url_of(server)))
    try:
        answer = writer.query('SELECT "total_bytes" FROM "memory"')
    except RuntimeError:
        return []
    writer.close()
    series = answer["results"][0].get("series")
    if not series:
        return []
    from datetime import datetime

    # InfluxQL returns RFC3339 with nanoseconds; distinct timestamps are what we compare.
    out = []
    for stamp, _ in series[0]["values"]:
        whole, _, frac = stamp.rstrip("Z").partition(".")
        seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
        out.append(seconds * 10**9 + int((frac or "0").ljust(9, "0")))
    return out


def restart(server) -> None:
    server.start_again()
    wait_http(server.url + "/ping", timeout=60, proc=server.proc, header="X-Influxdb-Version")


def test_rounds_written_during_an_outage_all_arrive(influxdb_server, tmp_path):
    log = tmp_path / "agent.log"
    agent = start_agent(influxdb_server, tmp_path / "spool", log)
    try:
        wait_for(lambda: len(memory_times(influxdb_server)) >= 3, what="first rounds in influxd")
        influxdb_server.stop()
        down_at = len(rounds(log))
        time.sleep(3)
        up_at = len(rounds(log))
        restart(influxdb_server)
        assert up_at - down_at >= 5, "the agent kept collecting during the outage"
        time.sleep(2)
    finally:
        assert stop_agent(agent) == 0
    produced = rounds(log)
    stored = memory_times(influxdb_server)
    assert sorted(stored) == produced  # every round, each once, none invented
    assert "stopped after" in log.read_text() and "spool empty" in log.read_text()


def spooled_round_times(spool_dir: Path) -> list[int]:
    [path] = spool_dir.glob("*.sqlite")
    con = sqlite3.connect(path)
    try:
        payloads = [row[0] for row in con.execute("SELECT payload FROM batches ORDER BY id")]
    finally:
        con.close()
    return [int(line.rsplit(b" ", 1)[1]) for p in payloads for line in p.split(b"\n") if line.startswith(b"memory,")]


def test_kill_9_while_spooling_loses_nothing(influxdb_server, tmp_path):
    log, spool_dir = tmp_path / "agent.log", tmp_path / "spool"
    influxdb_server.stop()  # the agent starts during an outage: everything waits in the spool
    agent = start_agent(influxdb_server, spool_dir, log)
    wait_for(lambda: len(rounds(log)) >= 6, what="six rounds")
    agent.send_signal(signal.SIGKILL)  # while the shipper retries: mid-flush
    agent.wait(timeout=10)
    before = rounds(log)
    spooled = spooled_round_times(spool_dir)
    # each logged round was committed; at most one more was committed between the commit and its log line
    assert spooled[:len(before)] == before and len(spooled) - len(before) in (0, 1)

    restart(influxdb_server)
    agent = start_agent(influxdb_server, spool_dir, log)
    try:
        wait_for(lambda: len(rounds(log)) >= len(before) + 3, what="rounds after restart")
        time.sleep(1)
    finally:
        assert stop_agent(agent) == 0
    expected = sorted(set(spooled) | set(rounds(log)))
    assert sorted(memory_times(influxdb_server)) == expected


def test_full_spool_drops_the_oldest_and_counts_exactly(influxdb_server, tmp_path):
    log, spool_dir = tmp_path / "agent.log", tmp_path / "spool"
    influxdb_server.stop()
    bound = 4096
    agent = start_agent(influxdb_server, spool_dir, log, interval=0.2, spool_max_bytes=bound)
    wait_for(lambda: len(rounds(log)) >= 25, what="25 rounds")
    assert stop_agent(agent) == 0
    produced = rounds(log)
    [path] = spool_dir.glob("*.sqlite")
    con = sqlite3.connect(path)
    queued, queued_bytes = con.execute("SELECT count(*), sum(bytes) FROM batches").fetchone()
    meta = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    assert queued_bytes <= bound
    assert meta["dropped_batches"] + queued == len(produced)  # exact: every round is either queued or counted
    assert meta["dropped_points"] == meta["dropped_batches"] * 3  # memory + agent + spool point per round
    assert spooled_round_times(spool_dir) == produced[-queued:]  # the oldest went, the newest stayed
    assert 0 < queued < len(produced)
    assert sum(f.stat().st_size for f in spool_dir.glob("*.sqlite*")) < 200_000


@pytest.fixture
def store(influxdb_server, tmp_path):
    settings = StoreSettings(spool_dir=tmp_path / "spool", flush_interval_seconds=0.1, retry_base_seconds=0.1)
    sink = open_sink(url_of(influxdb_server), settings)
    sink.start()
    yield sink
    sink.close()


def test_malformed_point_goes_to_dead_letter_and_good_points_land(store, influxdb_server):
    now = time.time_ns()
    good = [Point("memory", {"host": "h"}, {"total_bytes": 1}, now + i) for i in range(4)]
    beyond_int64 = Point("memory", {"host": "h"}, {"total_bytes": 2}, 2**63)  # valid to us, not to influxd
    store.enqueue([good[0], beyond_int64, good[1]])
    store.enqueue([good[2], good[3]])  # a later batch must not be blocked by the bad one
    wait_for(lambda: store.spool.stats().queued_batches == 0, what="spool drained")
    assert sorted(memory_times(influxdb_server)) == [p.time_ns for p in good]
    [(line, message, when)] = store.spool.dead_letters()
    assert line == beyond_int64.to_line().encode()
    assert "value out of range" in message and abs(when - time.time()) < 30
    stats = store.spool.stats()
    assert (stats.dead_letter_points, stats.sent_points) == (1, 4)


def test_type_conflict_is_found_by_bisection(store, influxdb_server):
    now = time.time_ns()
    store.enqueue([Point("memory", {"host": "h"}, {"total_bytes": 1}, now)])  # total_bytes is an integer now
    wait_for(lambda: store.spool.stats().sent_points == 1, what="first point")
    batch = [Point("memory", {"host": "h"}, {"total_bytes": i}, now + i) for i in range(1, 8)]
    batch[4] = Point("memory", {"host": "h"}, {"total_bytes": "a string"}, now + 5)
    store.enqueue(batch)
    wait_for(lambda: store.spool.stats().queued_batches == 0, what="spool drained")
    assert sorted(memory_times(influxdb_server)) == [now + i for i in range(8) if i != 5]
    [(line, message, _)] = store.spool.dead_letters()
    assert line == batch[4].to_line().encode() and "field type conflict" in message
    assert store.spool.stats().sent_points == 7
