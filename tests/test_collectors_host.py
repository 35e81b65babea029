"""cpu collector on fixture trees of an x86_64, an aarch64 and a ppc64le host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.cpu import CpuCollector, CpuOptions, parse_cpuinfo, parse_stat
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

HOST = FIXTURES / "host"
T0 = 1_700_000_000 * 10**9
# One interval's jiffies per CPU: user (guest included) 250, system 100, idle 550, iowait 50, irq 20,
# softirq 30, guest 50 -> 1000 accounted, so user_ratio 0.25 and busy 0.4.
DELTA = [250, 0, 100, 550, 50, 20, 30, 0, 50, 0]


def tree(tmp_path: Path, arch: str = "x86_64") -> Roots:
    shutil.copytree(HOST / arch, tmp_path / arch, symlinks=True)
    return Roots(proc=tmp_path / arch / "proc", sys=tmp_path / arch / "sys")


def advance(stat: Path, deltas: dict[str, list[int]]) -> None:
    """Add per-label deltas ('total', '0', ...) to the cpu lines of a /proc/stat file."""
    out = []
    for line in stat.read_text().splitlines():
        words = line.split()
        label = words[0][3:] or "total" if words and words[0].startswith("cpu") else None
        if label in deltas:
            values = [int(w) + d for w, d in zip(words[1:], deltas[label], strict=True)]
            line = f"{words[0]} {' '.join(map(str, values))}"
        out.append(line)
    stat.write_text("\n".join(out) + "\n")


def by(points, measurement: str, **tags):
    return [p for p in points if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())]


def test_first_read_has_info_system_and_cpu_seconds_but_no_ratios(tmp_path):
    roots = tree(tmp_path)
    points = list(CpuCollector(roots, "n1").collect(Cycle(T0)))
    assert_schema(points)
    (cpu,) = by(points, "cpu")
    # The fixture's "cpu" line: 19253816 82760 6438296 157175416 326136 840 225176 840 48856 840 jiffies,
    # at USER_HZ 100 a jiffy is 10 ms.
    assert cpu.tags == {"host": "n1", "cpu": "total"}
    assert cpu.fields == pytest.approx({
        "user_seconds": 192538.16, "nice_seconds": 827.60, "system_seconds": 64382.96, "idle_seconds": 1571754.16,
        "iowait_seconds": 3261.36, "irq_seconds": 8.40, "softirq_seconds": 2251.76, "steal_seconds": 8.40,
        "guest_seconds": 488.56, "guest_nice_seconds": 8.40,
    })
    (system,) = by(points, "system")
    assert system.fields == {"load1": 2.45, "load5": 1.87, "load15": 1.52, "procs_running": 3, "procs_blocked": 1,
                             "context_switches": 2761399124, "boot_time_seconds": 1699990000}
    assert system.tags == {"host": "n1"}


def test_total_ratios_from_two_reads(tmp_path):
    roots = tree(tmp_path)
    stat = roots.proc / "stat"
    labels = ["total"] + [str(i) for i in range(16)]
    deltas = {label: [d * (16 if label == "total" else 1) for d in DELTA] for label in labels}
    first, second = collect_twice(CpuCollector(roots, "n1"), between=lambda: advance(stat, deltas))
    assert_schema(first + second)
    (total,) = by(second, "cpu")  # per_core is off by default
    assert total.tags == {"host": "n1", "cpu": "total"}
    f = total.fields
    # The counters moved by the interval's jiffies: 16 CPUs x 250 user jiffies = 40 s.
    assert f["user_seconds"] - by(first, "cpu")[0].fields["user_seconds"] == pytest.approx(40.0)
    assert f["user_ratio"] == pytest.approx(0.25)
    assert f["nice_ratio"] == 0.0
    assert f["system_ratio"] == pytest.approx(0.10)
    assert f["idle_ratio"] == pytest.approx(0.55)
    assert f["iowait_ratio"] == pytest.approx(0.05)
    assert f["irq_ratio"] == pytest.approx(0.02)
    assert f["softirq_ratio"] == pytest.approx(0.03)
    assert f["steal_ratio"] == 0.0
    assert f["guest_ratio"] == pytest.approx(0.05)
    assert f["guest_nice_ratio"] == 0.0
    assert f["busy_ratio"] == pytest.approx(0.40)
    # guest is inside user: the eight accounted modes make the whole interval.
    accounted = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    assert sum(f[f"{m}_ratio"] for m in accounted) == pytest.approx(1.0)


def test_per_core_series(tmp_path):
    roots = tree(tmp_path)
    stat = roots.proc / "stat"
    busy_core = [900, 0, 100, 0, 0, 0, 0, 0, 0, 0]
    deltas = {str(i): list(DELTA) for i in range(16)}
    deltas["1"] = busy_core
    deltas["total"] = [15 * d + b for d, b in zip(DELTA, busy_core, strict=True)]
    collector = CpuCollector(roots, "n1", CpuOptions(per_core=True))
    _, second = collect_twice(collector, between=lambda: advance(stat, deltas))
    assert_schema(second)
    cpus = [p.tags["cpu"] for p in by(second, "cpu")]
    assert cpus == ["total"] + [str(i) for i in range(16)]
    assert by(second, "cpu", cpu="1")[0].fields["user_ratio"] == pytest.approx(0.9)
    assert by(second, "cpu", cpu="1")[0].fields["busy_ratio"] == pytest.approx(1.0)
    assert by(second, "cpu", cpu="2")[0].fields["user_ratio"] == pytest.approx(0.25)
    # (15 * 250 + 900) / (15 * 1000 + 1000)
    assert by(second, "cpu", cpu="total")[0].fields["user_ratio"] == pytest.approx(4650 / 16000)


def test_counter_that_went_down_gives_no_ratio(tmp_path):
    roots = tree(tmp_path)
    stat = roots.proc / "stat"
    deltas = {str(i): list(DELTA) for i in range(16)}
    deltas["3"] = [-1000, 0, -500, -9000000, 0, 0, 0, 0, 0, 0]  # cpu3 was unplugged and came back
    deltas["total"] = [-5000, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    collector = CpuCollector(roots, "n1", CpuOptions(per_core=True))
    _, second = collect_twice(collector, between=lambda: advance(stat, deltas))
    assert_schema(second)
    # Every CPU reports its counters; the ones that went down (cpu3, the total) have no ratios this round.
    with_ratios = {p.tags["cpu"] for p in by(second, "cpu") if "busy_ratio" in p.fields}
    assert with_ratios == {str(i) for i in range(16)} - {"3"}
    assert {p.tags["cpu"] for p in by(second, "cpu")} == {"total"} | {str(i) for i in range(16)}
    for p in by(second, "cpu"):
        assert all(0.0 <= v <= 1.0 for k, v in p.fields.items() if k.endswith("_ratio"))
    assert len(by(second, "cpu_info")) == 1 and len(by(second, "system")) == 1
    # The next interval counts from the new base again.
    advance(stat, {label: list(DELTA) for label in [*map(str, range(16)), "total"]})
    third = list(collector.collect(Cycle(T0 + 20 * 10**9)))
    with_ratios = {p.tags["cpu"] for p in by(third, "cpu") if "busy_ratio" in p.fields}
    assert with_ratios == {"total"} | {str(i) for i in range(16)}


def test_old_kernel_stat_without_steal_and_guest():
    stat = parse_stat("cpu  100 2 30 400 5 0 1\ncpu0 100 2 30 400 5 0 1\nctxt 77\n")
    assert stat.cpus["total"] == (100, 2, 30, 400, 5, 0, 1, 0, 0, 0)
    assert stat.scalars == {"ctxt": 77}


def test_x86_64_cpu_info(tmp_path):
    points = list(CpuCollector(tree(tmp_path), "n1").collect(Cycle(T0)))
    (info,) = by(points, "cpu_info")
    assert info.fields == {"arch": "x86_64", "vendor": "GenuineIntel",
                           "model": "Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz",
                           "sockets": 2, "cores": 8, "threads": 16}


def test_aarch64_cpu_info_with_sysfs_topology(tmp_path):
    points = list(CpuCollector(tree(tmp_path, "aarch64"), "g3").collect(Cycle(T0)))
    assert_schema(points)
    (info,) = by(points, "cpu_info")
    assert info.fields == {"arch": "aarch64", "vendor": "ARM", "model": "Neoverse-V1",
                           "sockets": 1, "cores": 8, "threads": 8}


def test_aarch64_topology_decides_sockets(tmp_path):
    roots = tree(tmp_path, "aarch64")
    for cpu in range(4, 8):  # as on a two-socket Altra: the second half sits in package 1
        (roots.sys / f"devices/system/cpu/cpu{cpu}/topology/physical_package_id").write_text("1\n")
    text = (roots.proc / "cpuinfo").read_text()
    info = parse_cpuinfo(text, roots.sys)
    assert (info.sockets, info.cores, info.threads) == (2, 8, 8)
    bare = parse_cpuinfo(text, tmp_path / "no-sysfs")
    assert (bare.sockets, bare.cores, bare.threads) == (1, 8, 8)


@pytest.mark.parametrize(("implementer", "part", "vendor", "model"), [
    ("0x41", "0xd0c", "ARM", "Neoverse-N1"),
    ("0x41", "0xd4f", "ARM", "Neoverse-V2"),
    ("0x48", "0xd01", "HiSilicon", "Kunpeng-920"),
    ("0xc0", "0xac3", "Ampere", "AmpereOne"),
    ("0x4e", "0x004", "NVIDIA", "Carmel"),
    ("0x61", "0x023", "Apple", "M1 Firestorm"),
    ("0x41", "0xfff", "ARM", "part 0xfff"),
])
def test_arm_implementer_and_part_names(tmp_path, implementer, part, vendor, model):
    text = (f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: {implementer}\n"
            f"CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: {part}\nCPU revision\t: 1\n")
    info = parse_cpuinfo(text, tmp_path)
    assert (info.arch, info.vendor, info.model, info.sockets, info.cores, info.threads) == (
        "aarch64", vendor, model, 1, 1, 1)


def test_ppc64le_cpu_info(tmp_path):
    points = list(CpuCollector(tree(tmp_path, "ppc64le"), "p9").collect(Cycle(T0)))
    assert_schema(points)
    (info,) = by(points, "cpu_info")
    # Two chips (package ids 0 and 8), two SMT4 cores each.
    assert info.fields == {"arch": "ppc64le", "vendor": "IBM", "model": "POWER9",
                           "sockets": 2, "cores": 4, "threads": 16}


def test_ppc64le_without_sysfs_uses_smt(tmp_path):
    text = (HOST / "ppc64le/proc/cpuinfo").read_text()
    info = parse_cpuinfo(text, tmp_path / "no-sysfs")
    assert (info.arch, info.sockets, info.cores, info.threads) == ("ppc64le", 1, 4, 16)


def test_arch_option_overrides(tmp_path):
    collector = CpuCollector(tree(tmp_path, "ppc64le"), "p9", CpuOptions(arch="ppc64"))
    (info,) = by(list(collector.collect(Cycle(T0))), "cpu_info")
    assert info.fields["arch"] == "ppc64"


def test_missing_loadavg_keeps_stat_counters(tmp_path):
    roots = tree(tmp_path)
    (roots.proc / "loadavg").unlink()
    (system,) = by(list(CpuCollector(roots, "n1").collect(Cycle(T0))), "system")
    assert system.fields == {"procs_running": 3, "procs_blocked": 1, "context_switches": 2761399124,
                             "boot_time_seconds": 1699990000}


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="per_cpu"):
        CpuOptions.model_validate({"per_cpu": True})
