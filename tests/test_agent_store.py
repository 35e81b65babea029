"""`fleetwise agent --store URL`: wiring, config file, /metrics and store together, SIGTERM, light imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from agents.stores.influxdb import InfluxV1Writer
from agents.stores.url import parse_store_url
from tests.helpers import free_port, run_cli, wait_http

HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "sklearn", "dash", "scipy", "plotly")

LIGHT_SCRIPT = """
import json, sys
from fleetwise.cli import main
rc = main(["agent", "--once", "--store", %r])
print(json.dumps({"rc": rc, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
"""


def url_of(server, db: str = "fleet") -> str:
    return server.url.replace("http://", "influxdb://") + f"/{db}"


def count(server, q: str, db: str = "fleet") -> int:
    writer = InfluxV1Writer(parse_store_url(url_of(server, db)))
    series = writer.query(q)["results"][0].get("series")
    writer.close()
    return series[0]["values"][0][1] if series else 0


def env_with(tmp_path, **extra) -> dict[str, str]:
    return {**os.environ, "FLEETWISE_STORE__SPOOL_DIR": str(tmp_path / "spool"), **extra}


def test_influxdb_mode_imports_nothing_heavy(influxdb_server, tmp_path):
    result = subprocess.run([sys.executable, "-c", LIGHT_SCRIPT % (url_of(influxdb_server), HEAVY)],
                            capture_output=True, text=True, timeout=120, env=env_with(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "heavy": []}
    # the sample went through the spool to influxd: one memory point, one spool point
    assert count(influxdb_server, 'SELECT count("total_bytes") FROM "memory"') == 1
    assert count(influxdb_server, 'SELECT count("queued_batches") FROM "spool"') == 1


def test_store_url_from_config_file(influxdb_server, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ncollectors = ["memory"]\n[store]\nurl = "{url_of(influxdb_server, "fromfile")}"\n'
                      f'spool_dir = "{tmp_path / "spool2"}"\n')
    result = run_cli(["agent", "--config", str(config), "--once"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # to the store, not to stdout
    assert count(influxdb_server, 'SELECT count("total_bytes") FROM "memory"', db="fromfile") == 1
    assert list((tmp_path / "spool2").glob("influxdb-*.sqlite"))


def test_listen_and_store_together_then_sigterm(influxdb_server, tmp_path):
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "fleetwise", "agent", "--store", url_of(influxdb_server), "--interval", "0.3",
         "--collectors", "memory", "--listen", f":{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env_with(tmp_path, FLEETWISE_STORE__FLUSH_INTERVAL_SECONDS="0.2", FLEETWISE_AGENT__JITTER_SECONDS="0"))
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30, proc=agent)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and "fleetwise_spool_sent_points_total{" not in text:
            time.sleep(0.3)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "fleetwise_spool_sent_points_total{" in text and "\nfleetwise_memory_total_bytes " in text
        wait_for_count = time.monotonic() + 30
        while count(influxdb_server, 'SELECT count("total_bytes") FROM "memory"') < 3:
            assert time.monotonic() < wait_for_count
            time.sleep(0.2)
        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
        assert time.monotonic() - started < 8
    finally:
        if agent.poll() is None:
            agent.kill()
    assert count(influxdb_server, 'SELECT max("sent_points") FROM "spool"') >= 3


def test_sigterm_during_outage_exits_and_keeps_the_spool(influxdb_server, tmp_path):
    influxdb_server.stop()
    agent = subprocess.Popen(
        [sys.executable, "-m", "fleetwise", "agent", "--store", url_of(influxdb_server), "--interval", "0.2",
         "--collectors", "memory"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env_with(tmp_path, FLEETWISE_STORE__SHUTDOWN_FLUSH_SECONDS="2", FLEETWISE_AGENT__JITTER_SECONDS="0"))
    time.sleep(2)
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    assert time.monotonic() - started < 6
    import sqlite3

    [path] = (tmp_path / "spool").glob("*.sqlite")
    queued = sqlite3.connect(path).execute("SELECT count(*) FROM batches").fetchone()[0]
    assert queued >= 5


def test_bad_store_url_and_unusable_spool_are_clear_errors(tmp_path):
    result = run_cli(["agent", "--once", "--store", "influxdb://h:8086/bad name"])
    assert result.returncode == 2
    assert "store.url" in result.stderr and "database/bucket name must match" in result.stderr
    result = run_cli(["agent", "--once", "--store", "influxdb://u:pw@h:8086/db"])
    assert result.returncode == 2 and "put no password in a store URL" in result.stderr
    (tmp_path / "file").write_text("")
    result = run_cli(["agent", "--once", "--store", "influxdb://127.0.0.1:9/db"],
                     env={**os.environ, "FLEETWISE_STORE__SPOOL_DIR": str(tmp_path / "file" / "x")})
    assert result.returncode == 2 and "spool_dir" in result.stderr


def test_embedded_store_through_the_spool(tmp_path):
    import pandas as pd

    from agents.query.embedded import EmbeddedReader
    from agents.stores.embedded import EmbeddedWriter

    store = tmp_path / "store"
    before = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5)
    result = run_cli(["agent", "--once", "--collectors", "memory", "--store", f"embedded:{store}"])
    assert result.returncode == 0, result.stderr
    after = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5)
    # The agent writes no Parquet (that would load pyarrow): one pending row file per batch ...
    assert not list(store.rglob("*.parquet")) and len(list((store / ".pending").glob("batch-*.jsonl"))) == 1

    def read():
        with EmbeddedReader(store) as r:
            return (r.frame("memory", ["total_bytes"], before, after),
                    r.frame("spool", ["queued_batches"], before, after), r.measurements())

    # ... which readers see at once, and see the same after maintenance folded it into Parquet.
    for _ in range(2):
        memory, spool, names = read()
        assert len(memory) == 1 and memory["total_bytes"].iloc[0] > 0
        assert len(spool) == 1 and {"memory", "spool"} <= set(names)
        EmbeddedWriter(store).maintain()
    assert len(list((store / "memory").glob("day=*/part-*.parquet"))) == 1
    assert not list((store / ".pending").iterdir())
    # the spool lives next to the store, not inside it, and is empty after the flush
    [spool_file] = (tmp_path / "store.spool").glob("embedded-*.sqlite")
    import sqlite3

    assert sqlite3.connect(spool_file).execute("SELECT count(*) FROM batches").fetchone()[0] == 0
