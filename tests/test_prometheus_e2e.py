"""The agent's /metrics scraped by a real Prometheus (Debian's package), and checked by promtool."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents import collectors
from agents.config import parse_listen
from tests.conftest import FIXTURES, REPO, require_binary
from tests.helpers import free_port, wait_http
from tests.services import prometheus

pytestmark = pytest.mark.services


def available(name: str) -> bool:
    """Other collectors are written in parallel; use one only when its module exists."""
    return importlib.util.find_spec(collectors.REGISTRY[name].split(":")[0]) is not None


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    names = ["memory"] + (["cpu"] if available("cpu") else [])
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwise", "agent", "--listen", f":{port}", "--interval", "1",
             "--collectors", ",".join(names)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30, proc=proc)
        yield proc, f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(base: str, promql: str, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(base, promql)
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has no {promql} after {timeout}s")


def value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_parse_listen_port_only_means_loopback():
    assert parse_listen(":9101") == ("127.0.0.1", 9101)
    assert parse_listen("0.0.0.0:9101") == ("0.0.0.0", 9101)


def test_agent_binds_loopback_for_port_only(agent):
    _, target = agent
    port = int(target.rpartition(":")[2])
    # /proc/net/tcp lists the listening socket's local address: 0100007F is 127.0.0.1 (little-endian hex).
    listening = {line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"}
    assert f"0100007F:{port:04X}" in listening
    assert f"00000000:{port:04X}" not in listening


def test_promtool_check_metrics_is_clean(agent):
    promtool = require_binary("promtool")
    _, target = agent
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as r:
        text = r.read()
    assert b"fleetwise_memory_total_bytes" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    # promtool prints lint problems (missing HELP, bad suffixes, non-snake-case) and exits 3 on any.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""


def test_prometheus_scrapes_plausible_values_and_sigterm_exits_0(agent, tmp_path: Path):
    proc, target = agent
    with prometheus(tmp_path, [target], scrape_interval="1s") as prom:
        wait_for(prom.url, 'fleetwise_agent_up{collector="memory"}')
        assert value(query(prom.url, 'up{job="fleetwise"}')) == 1
        total = value(wait_for(prom.url, "fleetwise_memory_total_bytes"))
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert total == pytest.approx(physical, rel=0.01)
        assert value(query(prom.url, 'fleetwise_agent_up{collector="memory"}')) == 1
        assert value(query(prom.url, 'fleetwise_agent_errors_total{collector="memory"}')) == 0
        used_ratio = value(query(prom.url, "fleetwise_memory_used_ratio"))
        assert 0 < used_ratio < 1
        if available("cpu"):
            # busy_ratio is a rate: it appears from the second collection round on.
            busy = value(wait_for(prom.url, 'fleetwise_cpu_busy_ratio{cpu="total"}'))
            assert 0 <= busy <= 1
            assert value(query(prom.url, 'fleetwise_agent_up{collector="cpu"}')) == 1

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


# ---------------------------------------------------------------- counters on a fixture tree

HOST_COLLECTORS = "cpu,memory,vmstat,pressure,disk,net,infiniband,hwmon,thermal,rapl,edac,nfs"
PACKAGE_WATTS = 45.0  # what the writer below makes RAPL package 0 draw
IO_STALL_SHARE = 0.25  # and the share of time some task waits on I/O


def _replace(path: Path, text: str) -> None:
    # Atomic, as the kernel's files are: the agent never reads a half-written value.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def tree_agent(tmp_path: Path) -> Iterator[str]:
    """The agent on a copy of the x86_64 fixture tree whose RAPL energy and I/O pressure counters a
    thread advances in real time at known rates."""
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "host" / "x86_64", root, symlinks=True)
    energy = root / "sys" / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    pressure = root / "proc" / "pressure" / "io"
    e0, s0, t0 = int(energy.read_text()), 987654321, time.monotonic()
    stop = threading.Event()

    def advance() -> None:
        while not stop.wait(0.05):
            elapsed = time.monotonic() - t0
            _replace(energy, f"{e0 + int(PACKAGE_WATTS * 1e6 * elapsed)}\n")
            stalled = s0 + int(IO_STALL_SHARE * 1e6 * elapsed)
            _replace(pressure, f"some avg10=25.00 avg60=25.00 avg300=25.00 total={stalled}\n"
                               "full avg10=0.00 avg60=0.00 avg300=0.00 total=876543210\n")

    writer = threading.Thread(target=advance, daemon=True)
    writer.start()
    port = free_port()
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwise", "agent", "--listen", f":{port}", "--interval", "0.5",
             "--proc-root", str(root / "proc"), "--sys-root", str(root / "sys"), "--collectors", HOST_COLLECTORS],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        writer.join(timeout=5)
        proc.kill()
        proc.wait()


def _scrape_when(target: str, needle: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as r:
            text = r.read()
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} on /metrics after {timeout}s")


def test_promtool_accepts_the_counters_of_a_full_scrape(tree_agent):
    promtool = require_binary("promtool")
    text = _scrape_when(tree_agent, b"fleetwise_rapl_energy_joules_total")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""
    types = dict(line.split()[2:4] for line in text.decode().splitlines() if line.startswith("# TYPE"))
    for name in ("fleetwise_cpu_seconds_total", "fleetwise_cpu_guest_seconds_total", "fleetwise_disk_read_bytes_total",
                 "fleetwise_disk_reads_total", "fleetwise_disk_write_bytes_total", "fleetwise_disk_writes_total",
                 "fleetwise_disk_read_seconds_total", "fleetwise_net_rx_bytes_total", "fleetwise_net_tx_packets_total",
                 "fleetwise_infiniband_xmit_bytes_total", "fleetwise_infiniband_rcv_bytes_total",
                 "fleetwise_infiniband_rcv_errors_total", "fleetwise_pressure_some_stall_seconds_total",
                 "fleetwise_rapl_energy_joules_total", "fleetwise_vmstat_oom_kills_total",
                 "fleetwise_edac_correctable_errors_total", "fleetwise_nfs_read_bytes_total"):
        assert types.get(name) == "counter", name
    # The fixture's cpu line: 19253816 jiffies of user time at USER_HZ 100; port_xmit_data 2.5e9 words x 4.
    assert b'fleetwise_cpu_seconds_total{cpu="total",mode="user"} 192538.16' in text
    assert b'fleetwise_infiniband_xmit_bytes_total{device="mlx5_0",port="1"} 1e+10' in text


def test_prometheus_rate_over_the_new_counters(tree_agent, tmp_path: Path):
    with prometheus(tmp_path, [tree_agent], scrape_interval="500ms") as prom:
        # rate() extrapolates a series younger than its window only half an interval back, which would
        # read low: wait until the series is older (20 samples at 0.5 s) than the 6 s window taken.
        wait_for_count = 'count_over_time(fleetwise_rapl_energy_joules_total{zone="0"}[12s]) >= 20'
        deadline = time.monotonic() + 90
        while not query(prom.url, wait_for_count):
            assert time.monotonic() < deadline, "Prometheus did not gather 20 samples in 90 s"
            time.sleep(0.5)
        watts = value(query(prom.url, 'rate(fleetwise_rapl_energy_joules_total{zone="0"}[6s])'))
        stall = value(query(prom.url, 'rate(fleetwise_pressure_some_stall_seconds_total{resource="io"}[6s])'))
        idle_zone = value(query(prom.url, 'rate(fleetwise_rapl_energy_joules_total{zone="1"}[6s])'))
    # The agent publishes the value it read at its last round (every 0.5 s) and Prometheus stamps it at
    # the scrape: the two ends of a 6 s window can each be off by up to one round (0.5 s), hence 20%.
    assert watts == pytest.approx(PACKAGE_WATTS, rel=0.2)
    assert stall == pytest.approx(IO_STALL_SHARE, rel=0.2)
    assert idle_zone == 0.0
