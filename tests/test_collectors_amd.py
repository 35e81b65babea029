"""amd collector on a sysfs tree in amdgpu's real formats: two MI250 GCDs (card0, card1) and an Intel iGPU."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from agents.collectors.amd import AmdCollector
from agents.collectors.base import Cycle, Roots
from agents.points import Point
from tests.schema_check import assert_schema

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "amdgpu" / "sys"
T0 = 1_700_000_000 * 10**9
VRAM = 68702699520  # mem_info_vram_total of one MI250X GCD (64 GiB less the reserved part)


def check_schema(points: list[Point]) -> None:
    assert_schema(points)
    for p in points:
        p.to_line()  # and line protocol can carry every point


def collect(sys_root: Path) -> list[Point]:
    points = list(AmdCollector(Roots(sys=sys_root), "node1").collect(Cycle(T0)))
    check_schema(points)
    return points


def gpus(points: list[Point], measurement: str = "gpu") -> dict[str, Point]:
    return {p.tags["gpu"]: p for p in points if p.measurement == measurement}


@pytest.fixture
def tree(tmp_path) -> Path:
    """A private copy of the fixture to alter (symlinks kept as symlinks, as in sysfs)."""
    root = tmp_path / "sys"
    shutil.copytree(FIXTURE, root, symlinks=True)
    return root


def card(root: Path, n: int) -> Path:
    return root / "class" / "drm" / f"card{n}" / "device"


def test_two_mi250_gcds_exact_values():
    points = collect(FIXTURE)
    g = gpus(points)
    assert set(g) == {"0", "1"}  # the Intel iGPU (card2) and its connector are skipped
    assert g["0"].tags == {"host": "node1", "gpu": "0", "uuid": "2b8f5a1c7e3d9a01", "vendor": "amd",
                           "model": "MI250X/MI250"}
    assert g["0"].fields == {
        "up": 1,
        "utilization_ratio": 0.87,
        "memory_bandwidth_ratio": 0.23,
        "memory_used_bytes": 16 * 1024**3,
        "memory_total_bytes": VRAM,
        "power_watts": 312.0,
        "power_limit_watts": 560.0,
        "sm_clock_hertz": 1.7e9,
        "temperature_celsius": 45.0,  # edge, not junction (52) or mem (48)
        "processes": 1,  # KFD: pid 5100 holds VRAM here (its vram_<gpu_id> of GCD 1 is 0)
    }
    # The second GCD has no power sensor of its own: no power field rather than a made-up zero.
    assert g["1"].tags["uuid"] == "2b8f5a1c7e3d9a02"
    assert g["1"].fields == {
        "up": 1,
        "utilization_ratio": 0.05,
        "memory_bandwidth_ratio": 0.0,
        "memory_used_bytes": 1024**3,
        "memory_total_bytes": VRAM,
        "sm_clock_hertz": 8e8,
        "temperature_celsius": 43.0,
        "processes": 1,  # KFD: pid 5200
    }
    info = gpus(points, "gpu_info")
    assert info["0"].fields == {"driver": "6.7.0", "mig_mode": "unsupported"}
    assert info["1"].tags == g["1"].tags
    assert len(points) == 4


def test_product_name_and_pci_address_fallback(tree):
    (card(tree, 0) / "product_name").write_text("AMD Instinct MI250X\n")
    (card(tree, 1) / "unique_id").unlink()
    (tree / "module" / "amdgpu" / "version").unlink()  # in-tree driver: no version file
    points = collect(tree)
    g = gpus(points)
    assert g["0"].tags["model"] == "AMD Instinct MI250X"
    assert g["1"].tags["uuid"] == "0000:c6:00.0"  # PCI_SLOT_NAME from uevent
    assert gpus(points, "gpu_info")["0"].fields == {"mig_mode": "unsupported"}


def test_driver_from_uevent_when_no_symlink(tree):
    (card(tree, 1) / "driver").unlink()
    assert set(gpus(collect(tree))) == {"0", "1"}
    (card(tree, 1) / "uevent").write_text("DRIVER=vfio-pci\nPCI_SLOT_NAME=0000:c6:00.0\n")
    assert set(gpus(collect(tree))) == {"0"}  # passed through to a VM: not ours to read


def test_junction_temperature_and_power1_input(tree):
    hwmon = card(tree, 0) / "hwmon" / "hwmon2"
    (hwmon / "temp1_input").unlink()  # MI300X has no edge sensor
    (hwmon / "temp1_label").unlink()
    (hwmon / "power1_average").unlink()
    (hwmon / "power1_input").write_text("401500000\n")
    (card(tree, 0) / "device").write_text("0x74a1\n")
    (card(tree, 1) / "device").write_text("0x7461\n")
    g = gpus(collect(tree))
    assert g["0"].fields["temperature_celsius"] == 52.0
    assert g["0"].fields["power_watts"] == 401.5
    assert g["0"].tags["model"] == "MI300X"
    assert g["1"].tags["model"] == "0x7461"  # unknown id: the id itself


def test_card_order_is_numeric(tree):
    drm = tree / "class" / "drm"
    for n, uid in ((10, "ten"), (3, "three")):
        shutil.copytree(drm / "card0", drm / f"card{n}", symlinks=True)
        (card(tree, n) / "unique_id").write_text(uid + "\n")
    g = gpus(collect(tree))
    assert [g[i].tags["uuid"] for i in ("0", "1", "2", "3")] == ["2b8f5a1c7e3d9a01", "2b8f5a1c7e3d9a02",
                                                                  "three", "ten"]


def test_unreadable_attribute_is_up_zero_and_others_still_read(tree, caplog):
    busy = card(tree, 0) / "gpu_busy_percent"
    busy.unlink()
    busy.mkdir()  # reading it now fails with an OSError other than "absent", like -EIO from a hung GPU
    caplog.set_level(logging.WARNING, logger="fleetwise.collectors.amd")
    collector = AmdCollector(Roots(sys=tree), "node1")
    for _ in range(2):
        g = gpus(list(collector.collect(Cycle(T0))))
        assert g["0"].fields["up"] == 0
        assert "utilization_ratio" not in g["0"].fields
        assert g["0"].fields["power_watts"] == 312.0
        assert g["1"].fields["up"] == 1
    assert len(caplog.records) == 1


def test_garbage_value_is_an_error_not_a_crash(tree):
    (card(tree, 1) / "mem_info_vram_used").write_text("not-a-number\n")
    g = gpus(collect(tree))
    assert g["1"].fields["up"] == 0 and "memory_used_bytes" not in g["1"].fields
    assert g["0"].fields["up"] == 1


def test_no_amd_gpu_yields_nothing_and_logs_once(tree, caplog):
    drm = tree / "class" / "drm"
    shutil.rmtree(drm / "card0")
    shutil.rmtree(drm / "card1")
    caplog.set_level(logging.DEBUG, logger="fleetwise.collectors.amd")
    collector = AmdCollector(Roots(sys=tree), "node1")
    assert list(collector.collect(Cycle(T0))) == []
    assert list(collector.collect(Cycle(T0))) == []
    assert list(AmdCollector(Roots(sys=tree / "missing"), "n").collect(Cycle(T0))) == []
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 2  # once per collector
