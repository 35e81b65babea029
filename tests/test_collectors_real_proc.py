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


def _available(name: str) -> bool:
    """A collector another helper may not have written yet is left out rather than failing the run."""
    return name in REGISTRY and importlib.util.find_spec(REGISTRY[name].split(":")[0]) is not None


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux procfs")


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    names = [n for n in ("cpu", "memory", "disk", "filesystem", "net") if _available(n)]
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
    assert {"cpu", "memory", "disk", "filesystem"} <= set(health)
    assert {name: h["up"] for name, h in health.items()} == dict.fromkeys(health, 1)


def test_cpu_ratios(sample):
    (total,) = [p for p in of(sample, "cpu") if p["tags"]["cpu"] == "total"]
    fields = total["fields"]
    assert all(0.0 <= v <= 1.0 for v in fields.values()), fields
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
