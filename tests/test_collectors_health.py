"""pressure, vmstat, hwmon, thermal, rapl and edac collectors on the x86_64 fixture tree (kernel formats)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.edac import EdacCollector
from agents.collectors.hwmon import HwmonCollector, clean_name
from agents.collectors.pressure import PressureCollector, parse_pressure
from agents.collectors.rapl import RaplCollector, wrapped_delta
from agents.collectors.thermal import ThermalCollector
from agents.collectors.vmstat import VmstatCollector
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

T0 = 1_700_000_000 * 10**9


@pytest.fixture
def node(tmp_path) -> Roots:
    # symlinks=True: sysfs class entries link into /sys/devices, and hwmon's device link points back up.
    shutil.copytree(FIXTURES / "host" / "x86_64", tmp_path / "node", symlinks=True)
    return Roots(proc=tmp_path / "node" / "proc", sys=tmp_path / "node" / "sys")


def by_tags(points, *keys: str) -> dict:
    return {tuple(p.tags[k] for k in keys): p.fields for p in points}


def replace_word(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new))


# ---------------------------------------------------------------- pressure

def test_pressure_first_read(node):
    points = list(PressureCollector(node, "n1").collect(Cycle(T0)))
    assert_schema(points)
    psi = by_tags(points, "resource")
    assert sorted(psi) == [("cpu",), ("io",), ("memory",)]
    # avg10=12.40 is a percentage: 0.124 of the time; total=987654321 us = 987.654321 s.
    assert psi[("io",)] == pytest.approx({
        "some_avg10_ratio": 0.124, "some_avg60_ratio": 0.081, "some_avg300_ratio": 0.033,
        "some_stall_seconds": 987.654321,
        "full_avg10_ratio": 0.10, "full_avg60_ratio": 0.065, "full_avg300_ratio": 0.0275,
        "full_stall_seconds": 876.54321,
    })
    assert psi[("cpu",)]["some_stall_seconds"] == pytest.approx(13.146215)
    assert psi[("cpu",)]["full_stall_seconds"] == 0.0


def test_pressure_stall_ratio_from_the_total_counter(node):
    io = node.proc / "pressure" / "io"

    def advance():
        # +2.5 s of "some" stall and +1 s of "full" stall in 10 s: 25% and 10% of the interval.
        replace_word(io, "total=987654321", "total=990154321")
        replace_word(io, "total=876543210", "total=877543210")

    first, second = collect_twice(PressureCollector(node, "n1"), 10.0, between=advance)
    assert "some_stall_ratio" not in by_tags(first, "resource")[("io",)]
    io_fields = by_tags(second, "resource")[("io",)]
    assert io_fields["some_stall_ratio"] == pytest.approx(0.25)
    assert io_fields["full_stall_ratio"] == pytest.approx(0.10)
    assert by_tags(second, "resource")[("memory",)]["some_stall_ratio"] == 0.0


def test_pressure_absent_or_disabled_yields_nothing(tmp_path):
    assert list(PressureCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []
    # psi=0 on the kernel command line: the files exist but reading them fails (EOPNOTSUPP); a directory
    # in their place fails the read the same way.
    for resource in ("cpu", "memory", "io"):
        (tmp_path / "pressure" / resource).mkdir(parents=True)
    assert list(PressureCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


def test_parse_pressure_some_only_and_malformed():
    # Before 5.13 cpu has only a "some" line.
    assert parse_pressure("some avg10=0.00 avg60=0.10 avg300=0.20 total=5\n") == {
        "some": {"avg10": 0.0, "avg60": 0.1, "avg300": 0.2, "total": 5.0}}
    with pytest.raises(ValueError):
        parse_pressure("some avg10=0.00 total=5\n")


# ---------------------------------------------------------------- vmstat

def test_vmstat_counters_and_major_fault_rate(node):
    vmstat = node.proc / "vmstat"
    first, second = collect_twice(VmstatCollector(node, "n1"), 10.0,
                                  between=lambda: replace_word(vmstat, "pgmajfault 7321", "pgmajfault 7821"))
    assert_schema(first + second)
    (f,) = [p.fields for p in first]
    assert f == {"oom_kills": 2, "major_page_faults": 7321, "page_faults": 180612345, "swap_in_pages": 2048,
                 "swap_out_pages": 4096}
    (f,) = [p.fields for p in second]
    assert f["major_page_faults_per_second"] == pytest.approx(50.0)  # 500 faults in 10 s


def test_vmstat_of_an_old_kernel_without_oom_kill(tmp_path):
    (tmp_path / "vmstat").write_text("nr_free_pages 10\npgfault 100\npgmajfault 3\n")
    (p,) = VmstatCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))
    assert p.fields == {"page_faults": 100, "major_page_faults": 3}


# ---------------------------------------------------------------- hwmon

def test_hwmon_temperatures_power_labels_and_chip_names(node):
    points = list(HwmonCollector(node, "n1").collect(Cycle(T0)))
    assert_schema(points)
    hw = by_tags(points, "chip", "sensor")
    # Chips are named after their device, as node_exporter does: platform/coretemp.0 -> platform_coretemp_0.
    assert sorted(hw) == [("device:00_acpi0000:00", "power1"), ("nvme_nvme0", "temp1"),
                          ("platform_coretemp_0", "temp1"), ("platform_coretemp_0", "temp2"),
                          ("platform_coretemp_0", "temp3")]
    assert hw[("platform_coretemp_0", "temp1")] == {
        "temp_celsius": 45.0, "temp_max_celsius": 80.0, "temp_crit_celsius": 100.0, "label": "Package id 0",
        "chip_name": "coretemp"}
    assert hw[("nvme_nvme0", "temp1")] == pytest.approx({
        "temp_celsius": 38.85, "temp_max_celsius": 84.85, "temp_crit_celsius": 84.85, "label": "Composite",
        "chip_name": "nvme"})
    # power1_average 245000000 uW; the ACPI power meter has no label.
    assert hw[("device:00_acpi0000:00", "power1")] == {"power_watts": 245.0, "chip_name": "power_meter"}


def test_hwmon_without_device_link_falls_back_to_the_name(node):
    chip = node.sys / "devices" / "platform" / "coretemp.0" / "hwmon" / "hwmon0"
    (chip / "device").unlink()
    chips = {p.tags["chip"] for p in HwmonCollector(node, "n1").collect(Cycle(T0))}
    assert chips == {"coretemp", "nvme_nvme0", "device:00_acpi0000:00"}
    assert clean_name("Package id 0\n") == "package_id_0"


def test_hwmon_unreadable_sensor_is_skipped_and_absent_tree_yields_nothing(node, tmp_path):
    nvme = node.sys / "class" / "hwmon" / "hwmon1"
    for name in ("temp1_input", "temp1_max", "temp1_crit"):
        (nvme / name).unlink()
        (nvme / name).mkdir()  # a read error, as a sleeping NVMe drive's ENODATA
    chips = {p.tags["chip"] for p in HwmonCollector(node, "n1").collect(Cycle(T0))}
    assert "nvme_nvme0" not in chips and "platform_coretemp_0" in chips
    assert list(HwmonCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


# ---------------------------------------------------------------- thermal

def test_thermal_zones(node, tmp_path):
    points = list(ThermalCollector(node, "n1").collect(Cycle(T0)))
    assert_schema(points)
    assert by_tags(points, "zone", "type") == {("0", "x86_pkg_temp"): {"temp_celsius": 47.0},
                                               ("1", "acpitz"): {"temp_celsius": 27.8}}
    assert list(ThermalCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


# ---------------------------------------------------------------- rapl

def test_rapl_energy_and_power(node):
    package = node.sys / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    dram = node.sys / "class" / "powercap" / "intel-rapl:0:1" / "energy_uj"

    def advance():
        package.write_text(f"{123456789012 + 450_000_000}\n")  # 450 J in 10 s: 45 W
        dram.write_text(f"{9876543210 + 80_000_000}\n")  # 80 J: 8 W

    first, second = collect_twice(RaplCollector(node, "n1"), 10.0, between=advance)
    assert_schema(first + second)
    zones = by_tags(first, "zone", "domain")
    assert zones == {("0", "package-0"): {"energy_joules": 123456.789012},
                     ("0:0", "core"): {"energy_joules": 45678.901234},
                     ("0:1", "dram"): {"energy_joules": 9876.54321},
                     ("1", "package-1"): {"energy_joules": 98765.432101}}
    zones = by_tags(second, "zone", "domain")
    assert zones[("0", "package-0")]["power_watts"] == pytest.approx(45.0)
    assert zones[("0:1", "dram")]["power_watts"] == pytest.approx(8.0)
    assert zones[("1", "package-1")]["power_watts"] == 0.0


def test_rapl_wrap_is_added_back(node):
    energy = node.sys / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    top = 262143328850  # max_energy_range_uj of the fixture
    energy.write_text(f"{top - 100_000_000}\n")
    # 100 J to the top, wrap, then 200 J: 300 J in 10 s = 30 W.
    _, second = collect_twice(RaplCollector(node, "n1"), 10.0, between=lambda: energy.write_text("200000000\n"))
    assert by_tags(second, "zone", "domain")[("0", "package-0")] == pytest.approx(
        {"energy_joules": 200.0, "power_watts": 30.0})
    assert wrapped_delta(10, 5, None) is None  # no range known: no rate rather than a wrong one
    assert wrapped_delta(10, 5, 8) is None  # a drop no single wrap explains


def test_rapl_unreadable_energy_is_skipped(node, tmp_path):
    energy = node.sys / "class" / "powercap" / "intel-rapl:1" / "energy_uj"
    energy.unlink()
    energy.mkdir()  # stands for EACCES: energy_uj is root-only since Linux 5.10
    zones = by_tags(RaplCollector(node, "n1").collect(Cycle(T0)), "zone")
    assert sorted(zones) == [("0",), ("0:0",), ("0:1",)]
    assert list(RaplCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


# ---------------------------------------------------------------- edac

def test_edac_counts_per_controller(node, tmp_path):
    points = list(EdacCollector(node, "n1").collect(Cycle(T0)))
    assert_schema(points)
    assert by_tags(points, "controller") == {("0",): {"correctable_errors": 3, "uncorrectable_errors": 0},
                                             ("1",): {"correctable_errors": 0, "uncorrectable_errors": 1}}
    assert list(EdacCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []
