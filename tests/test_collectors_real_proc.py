"""Smoke test on this machine's real /proc and /sys, through the CLI as an operator runs it."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from agents.collectors import REGISTRY
from tests.helpers import run_cli
from tests.schema_check import assert_schema

ACCOUNTED = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Every host collector: sources this machine lacks (no PSI, hwmon, RAPL or EDAC in a VM or container)
# must give no points and a healthy collector, never a failure.
HOST = ("cpu", "memory", "vmstat", "pressure", "disk", "filesystem", "nfs", "lustre", "net", "infiniband", "hwmon",
        "thermal", "rapl", "edac")


def _available(name: str) -> bool:
    """A collector another helper may not have written yet is left out rather than failing the run."""
    return name in REGISTRY and importlib.util.find_spec(REGISTRY[name].split(":")[0]) is not None


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux procfs")


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    names = [n for n in HOST if _available(n)]
    result = run_cli(["agent", "--once", "--format", "json", "--collectors", ",".join(names)],
                     env={**os.environ, "FLEETWISE_AGENT__ONCE_PAUSE_SECONDS": "0.5"})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def of(points: list[dict], measurement: str) -> list[dict]:
    return [p for p in points if p["measurement"] == measurement]


def test_every_point_matches_the_schema(sample):
    assert_schema(sample)


def test_every_collector_ran(sample):
    health = {p["tags"]["collector"]: p["fields"] for p in of(sample, "agent")}
    assert set(HOST) == set(health)
    assert {name: h["up"] for name, h in health.items()} == dict.fromkeys(health, 1)


def test_new_sources_match_what_this_machine_has(sample):
    """Points exactly where the kernel offers the source; none (and no failure) where it does not."""
    psi = {p["tags"]["resource"] for p in of(sample, "pressure")}
    assert psi == {r for r in ("cpu", "memory", "io") if _readable(f"/proc/pressure/{r}")}
    for p in of(sample, "pressure"):
        assert 0.0 <= p["fields"]["some_avg10_ratio"] <= 1.0 and p["fields"]["some_stall_seconds"] >= 0
    (vmstat,) = of(sample, "vmstat")
    assert vmstat["fields"]["page_faults"] >= vmstat["fields"]["major_page_faults"] >= 0
    if not os.path.isdir("/sys/class/hwmon"):
        assert of(sample, "hwmon") == []
    if not os.path.isdir("/sys/class/powercap"):
        assert of(sample, "rapl") == []
    if not os.path.isdir("/sys/devices/system/edac/mc"):
        assert of(sample, "edac") == []
    for p in of(sample, "net"):
        name = p["tags"]["interface"]
        state = _read(f"/sys/class/net/{name}/operstate")
        assert p["fields"].get("operstate") == state
        assert p["fields"].get("mtu_bytes") == (int(_read(f"/sys/class/net/{name}/mtu")) if state else None)
        assert p["fields"].get("speed_bytes_per_second", 1) > 0


def _readable(path: str) -> bool:
    try:
        with open(path) as f:
            f.read()
        return True
    except OSError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def test_cpu_ratios(sample):
    (total,) = [p for p in of(sample, "cpu") if p["tags"]["cpu"] == "total"]
    fields = total["fields"]
    assert all(0.0 <= v <= 1.0 for k, v in fields.items() if k.endswith("_ratio")), fields
    # The counters are seconds since boot: their sum over the accounted modes is CPUs x uptime.
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    with open("/proc/stat") as f:
        cpus = sum(1 for line in f if line[:3] == "cpu" and line[3].isdigit())
    total_seconds = sum(fields[f"{m}_seconds"] for m in ACCOUNTED)
    assert total_seconds == pytest.approx(cpus * uptime, rel=0.1)
    assert sum(fields[f"{m}_ratio"] for m in ACCOUNTED) == pytest.approx(1.0, abs=1e-6)
    (info,) = of(sample, "cpu_info")
    assert info["fields"]["threads"] == os.cpu_count()
    assert info["fields"]["arch"] == os.uname().machine
    (system,) = of(sample, "system")
    assert system["fields"]["boot_time_seconds"] > 1_000_000_000


def test_memory_total_matches_sysconf(sample):
    (memory,) = of(sample, "memory")
    expected = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory["fields"]["total_bytes"] == pytest.approx(expected, rel=0.01)


def test_root_filesystem_has_a_size(sample):
    roots = [p for p in of(sample, "filesystem") if p["tags"]["path"] == "/"]
    if not roots:
        # In a container / may be an overlay, which the default fstypes leave out; read it explicitly.
        result = run_cli(["agent", "--once", "--format", "json", "--collectors", "filesystem"],
                         env={**os.environ, "FLEETWISE_COLLECTORS__FILESYSTEM__MOUNT_POINTS": '["/"]',
                              "FLEETWISE_AGENT__ONCE_PAUSE_SECONDS": "0.1"})
        assert result.returncode == 0, result.stderr
        points = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert_schema(points)
        roots = [p for p in of(points, "filesystem") if p["tags"]["path"] == "/"]
    (root,) = roots
    st = os.statvfs("/")
    assert root["fields"]["size_bytes"] == st.f_blocks * st.f_frsize > 0


def test_disk_values_are_sane(sample):
    for p in of(sample, "disk"):
        f = p["fields"]
        assert f["read_bytes"] % 512 == 0 and f["write_bytes"] % 512 == 0
        assert 0.0 <= f.get("busy_ratio", 0.0) <= 1.0
        assert f.get("read_bytes_per_second", 0.0) >= 0.0
