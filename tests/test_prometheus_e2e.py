"""The agent's /metrics scraped by a real Prometheus (Debian's package), and checked by promtool."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents import collectors
from agents.config import parse_listen
from tests.conftest import REPO, require_binary
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
