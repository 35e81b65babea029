"""nvidia collector against a fake NVML installed at the pynvml function boundary (tests/fake_nvml.py)."""

from __future__ import annotations

import ctypes.util
import logging
import subprocess
import sys

import pynvml
import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.nvidia import NvidiaCollector, NvidiaOptions, mig_profile
from agents.points import Point
from tests.conftest import REPO
from tests.fake_nvml import FakeMig, FakeNVML, GiB, a100, driver_proc, h100
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

T0 = 1_700_000_000 * 10**9
LOGGER = "fleetwise.collectors.nvidia"


def check_schema(points: list[Point]) -> None:
    assert_schema(points)
    for p in points:
        p.to_line()  # and line protocol can carry every point


def by(points: list[Point], measurement: str) -> dict[str, Point]:
    """Points of one measurement keyed by gpu index (gpu_mig: by instance uuid)."""
    key = "instance" if measurement == "gpu_mig" else "gpu"
    return {p.tags[key]: p for p in points if p.measurement == measurement}


@pytest.fixture
def roots(tmp_path) -> Roots:
    """A node whose NVIDIA kernel module is loaded (its procfs file), to go with the fake NVML."""
    return Roots(proc=driver_proc(tmp_path))


@pytest.fixture
def collector(roots) -> NvidiaCollector:
    return NvidiaCollector(roots, "node1")


def test_error_mapping_is_the_real_one():
    # The fake raises pynvml.NVMLError(code); the real module maps it to the driver's error class.
    assert isinstance(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST), pynvml.NVMLError_GpuIsLost)
    assert isinstance(pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND), pynvml.NVMLError_FunctionNotFound)


def test_two_healthy_gpus_exact_values(monkeypatch, collector):
    fake = FakeNVML([a100(), h100()])
    fake.install(monkeypatch)
    cycle = Cycle(T0, shared={"gpu_processes": [{"gpu": "9", "pid": 1}]})
    points = list(collector.collect(cycle))
    check_schema(points)
    gpus = by(points, "gpu")
    assert set(gpus) == {"0", "1"}
    a = gpus["0"]
    assert a.tags == {"host": "node1", "gpu": "0", "uuid": "GPU-9a1c7c53-5e0b-4f4e-9d3b-1c2d3e4f5a6b",
                      "vendor": "nvidia", "model": "NVIDIA A100-SXM4-40GB"}
    assert a.time_ns == T0
    assert a.fields == {
        "up": 1,
        "utilization_ratio": 0.87,
        "memory_bandwidth_ratio": 0.45,
        "memory_used_bytes": 10 * GiB,
        "memory_total_bytes": 40 * GiB,
        "power_watts": 312.5,
        "power_limit_watts": 400.0,
        "energy_joules": 1234567.89,
        "temperature_celsius": 61.0,
        "sm_clock_hertz": 1.41e9,
        "throttle_reasons": 4,
        "pcie_tx_bytes_per_second": 2048 * 1024.0,
        "pcie_rx_bytes_per_second": 4096 * 1024.0,
        "nvlink_tx_bytes": (1000 + 3000) * 1024,
        "nvlink_rx_bytes": (2000 + 4000) * 1024,
        "ecc_corrected_errors": 3,
        "ecc_uncorrected_errors": 0,
        "processes": 2,
    }
    h = gpus["1"]
    assert h.tags["model"] == "NVIDIA H100 80GB HBM3"
    assert h.fields["utilization_ratio"] == 0.5
    assert h.fields["power_watts"] == 650.0
    assert h.fields["energy_joules"] == 9000.0
    assert h.fields["nvlink_tx_bytes"] == 10 * 1024 and h.fields["nvlink_rx_bytes"] == 20 * 1024
    assert h.fields["ecc_uncorrected_errors"] == 1
    infos = by(points, "gpu_info")
    assert infos["0"].fields == {"driver": "550.54.15", "mig_mode": "disabled"}
    assert infos["1"].tags == h.tags
    assert by(points, "gpu_mig") == {}
    assert cycle.shared["gpu_processes"] == [
        {"gpu": "9", "pid": 1},  # what another collector left is kept
        {"gpu": "0", "uuid": a.tags["uuid"], "pid": 4242, "memory_used_bytes": 8 * GiB, "utilization_ratio": 0.87},
        {"gpu": "0", "uuid": a.tags["uuid"], "pid": 4343, "memory_used_bytes": None, "utilization_ratio": 0.87},
        {"gpu": "1", "uuid": h.tags["uuid"], "pid": 777, "memory_used_bytes": 1 * GiB, "utilization_ratio": 0.5},
    ]


def test_static_facts_are_cached(monkeypatch, collector):
    fake = FakeNVML([a100()])
    fake.install(monkeypatch)
    collect_twice(collector)
    assert fake.calls["nvmlDeviceGetUUID"] == 1
    assert fake.calls["nvmlDeviceGetName"] == 1
    assert fake.calls["nvmlSystemGetDriverVersion"] == 1
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 2
    assert fake.calls["nvmlInit"] == 1


def test_bytes_names_from_older_pynvml_are_decoded(monkeypatch, collector):
    fake = FakeNVML([a100(uuid=b"GPU-0000", name=b"Tesla V100-SXM2-16GB")], driver=b"470.82.01")
    fake.install(monkeypatch)
    points = list(collector.collect(Cycle(T0)))
    check_schema(points)
    assert by(points, "gpu")["0"].tags["uuid"] == "GPU-0000"
    assert by(points, "gpu")["0"].tags["model"] == "Tesla V100-SXM2-16GB"
    assert by(points, "gpu_info")["0"].fields["driver"] == "470.82.01"


def test_gpu_fallen_off_the_bus(monkeypatch, collector, caplog):
    lost = a100(errors={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_GPU_IS_LOST})
    fake = FakeNVML([lost, h100()])
    fake.install(monkeypatch)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    first, second = collect_twice(collector)
    for points in (first, second):
        check_schema(points)
        gpus = by(points, "gpu")
        assert gpus["0"].fields == {"up": 0}
        assert gpus["0"].tags["uuid"] == lost.uuid  # read before the GPU failed
        assert gpus["1"].fields["up"] == 1
        assert gpus["1"].fields["power_watts"] == 650.0 and gpus["1"].fields["processes"] == 1
        assert "0" not in by(points, "gpu_info")
    # Logged once, and the static facts were re-read after the error.
    assert len([r for r in caplog.records if "GPU 0" in r.getMessage()]) == 1
    assert fake.calls["nvmlDeviceGetUUID"] == 2 + 1


def test_gpu_lost_after_a_good_round_keeps_its_tags(monkeypatch, collector):
    gpu = a100()
    fake = FakeNVML([gpu, h100()])
    fake.install(monkeypatch)

    def fall_off():
        gpu.errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_GPU_IS_LOST

    first, second = collect_twice(collector, between=fall_off)
    assert by(first, "gpu")["0"].fields["up"] == 1
    lost = by(second, "gpu")["0"]
    assert lost.fields == {"up": 0}
    assert lost.tags == by(first, "gpu")["0"].tags
    assert by(second, "gpu")["1"].fields["up"] == 1
    check_schema(second)


def test_unknown_error_on_first_basic_read_is_up_zero(monkeypatch, collector):
    fake = FakeNVML([a100(errors={"nvmlDeviceGetUUID": pynvml.NVML_ERROR_UNKNOWN}), h100()])
    fake.install(monkeypatch)
    points = list(collector.collect(Cycle(T0)))
    check_schema(points)
    gone = by(points, "gpu")["0"]
    assert gone.fields == {"up": 0}
    assert gone.tags["uuid"] == "" and gone.tags["vendor"] == "nvidia"
    assert "uuid=" not in gone.to_line()  # empty tags stay out of line protocol
    assert by(points, "gpu")["1"].fields["up"] == 1


def test_old_driver_omits_fields_and_does_not_retry(monkeypatch, collector):
    old = a100(errors={
        "nvmlDeviceGetTotalEnergyConsumption": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        "nvmlDeviceGetPcieThroughput": pynvml.NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetTotalEccErrors": pynvml.NVML_ERROR_NOT_SUPPORTED,
    }, mig_mode=None)
    fake = FakeNVML([old])
    # An older nvidia-ml-py lacks these names altogether.
    fake.install(monkeypatch, missing=("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetFieldValues",
                                       "nvmlDeviceGetComputeRunningProcesses",
                                       "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlGpmQueryDeviceSupport"))
    first, second = collect_twice(collector)
    for points in (first, second):
        check_schema(points)
        f = by(points, "gpu")["0"].fields
        assert f["up"] == 1  # unsupported is not an error
        for absent in ("energy_joules", "pcie_tx_bytes_per_second", "pcie_rx_bytes_per_second",
                       "ecc_corrected_errors", "ecc_uncorrected_errors"):
            assert absent not in f
        assert f["throttle_reasons"] == 4  # through the older name
        # NVLink through the legacy utilization counters, in bytes.
        assert f["nvlink_tx_bytes"] == 4000 * 1024 and f["nvlink_rx_bytes"] == 6000 * 1024
        assert f["processes"] == 2  # through _v2
        assert by(points, "gpu_info")["0"].fields["mig_mode"] == "unsupported"
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert fake.calls["nvmlDeviceGetPcieThroughput"] == 1
    assert fake.calls["nvmlDeviceGetTotalEccErrors"] == 1
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 2
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 2
    # 12 real links + 24 invalid ids in round one, only the 12 real links in round two.
    assert fake.calls["nvmlDeviceGetNvLinkState"] == 36 + 12
    assert fake.calls["nvmlDeviceGetNvLinkUtilizationCounter"] == 2 * 2


def test_nvlink_counters_differenced_and_reset_gives_no_rate(monkeypatch, collector):
    gpu = a100()
    fake = FakeNVML([gpu])
    fake.install(monkeypatch)

    def traffic():
        gpu.nvlink[0][0] += 5000  # KiB sent
        gpu.nvlink[1][0] += 5000
        gpu.nvlink[0][1] += 2500  # KiB received
        gpu.nvlink[1][1] += 2500

    first, second = collect_twice(collector, gap_seconds=10.0, between=traffic)
    f1 = by(first, "gpu")["0"].fields
    assert "nvlink_tx_bytes_per_second" not in f1 and "nvlink_rx_bytes_per_second" not in f1
    f2 = by(second, "gpu")["0"].fields
    assert f2["nvlink_tx_bytes"] == 14000 * 1024
    assert f2["nvlink_tx_bytes_per_second"] == 10000 * 1024 / 10
    assert f2["nvlink_rx_bytes_per_second"] == 5000 * 1024 / 10
    check_schema(second)
    # Driver reload: the counters restart from small values.
    gpu.nvlink = {0: [7, 8], 1: [9, 10]}
    third = list(collector.collect(Cycle(T0 + 20 * 10**9)))
    f3 = by(third, "gpu")["0"].fields
    assert f3["nvlink_tx_bytes"] == 16 * 1024 and f3["nvlink_rx_bytes"] == 18 * 1024
    assert "nvlink_tx_bytes_per_second" not in f3 and "nvlink_rx_bytes_per_second" not in f3


def mig_h100():
    return h100(
        mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE, max_mig=7, processes=[],
        migs={
            0: FakeMig(uuid="MIG-aaaaaaaa-0000-5000-8000-000000000001", name="NVIDIA H100 80GB HBM3 MIG 1g.10gb",
                       gpu_instance_id=9, memory_used=2 * GiB, memory_total=10 * GiB, sm_occupancy=10.0,
                       processes=[(1001, 2 * GiB)]),
            3: FakeMig(uuid="MIG-aaaaaaaa-0000-5000-8000-000000000002", name="NVIDIA H100 80GB HBM3 MIG 3g.40gb",
                       gpu_instance_id=2, memory_used=30 * GiB, memory_total=40 * GiB, sm_occupancy=20.0,
                       processes=[(1002, None)]),
        })


def test_mig_instances_memory_and_gpm_utilization(monkeypatch, collector):
    gpu = mig_h100()
    fake = FakeNVML([gpu])
    fake.install(monkeypatch)

    def busy():
        gpu.migs[0].sm_occupancy = 42.5
        gpu.migs[3].sm_occupancy = 80.0

    c1, c2 = Cycle(T0), Cycle(T0 + 10 * 10**9)
    first = list(collector.collect(c1))
    collector.rates.sweep()
    busy()
    second = list(collector.collect(c2))
    check_schema(first)
    check_schema(second)
    parent_uuid = gpu.uuid
    migs = by(first, "gpu_mig")
    assert set(migs) == {"MIG-aaaaaaaa-0000-5000-8000-000000000001", "MIG-aaaaaaaa-0000-5000-8000-000000000002"}
    small = migs["MIG-aaaaaaaa-0000-5000-8000-000000000001"]
    assert small.tags == {"host": "node1", "gpu": "0", "uuid": parent_uuid, "vendor": "nvidia",
                          "model": "NVIDIA H100 80GB HBM3", "instance": "MIG-aaaaaaaa-0000-5000-8000-000000000001",
                          "profile": "1g.10gb"}
    assert small.fields == {"memory_used_bytes": 2 * GiB, "memory_total_bytes": 10 * GiB}  # no GPM yet
    assert migs["MIG-aaaaaaaa-0000-5000-8000-000000000002"].tags["profile"] == "3g.40gb"
    migs2 = by(second, "gpu_mig")
    assert migs2["MIG-aaaaaaaa-0000-5000-8000-000000000001"].fields["utilization_ratio"] == 0.425
    assert migs2["MIG-aaaaaaaa-0000-5000-8000-000000000002"].fields == {
        "memory_used_bytes": 30 * GiB, "memory_total_bytes": 40 * GiB, "utilization_ratio": 0.8}
    # The parent in MIG mode has no NVML utilization rate: none is made up.
    parent = by(second, "gpu")["0"]
    assert "utilization_ratio" not in parent.fields and parent.fields["up"] == 1
    assert parent.fields["processes"] == 2
    assert by(second, "gpu_info")["0"].fields["mig_mode"] == "enabled"
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 1  # NotSupported is remembered
    assert fake.calls["nvmlGpmSampleFree"] == 2  # each round-one sample freed once used
    assert c2.shared["gpu_processes"] == [
        {"gpu": "0", "uuid": parent_uuid, "pid": 1001, "memory_used_bytes": 2 * GiB, "utilization_ratio": None},
        {"gpu": "0", "uuid": parent_uuid, "pid": 1002, "memory_used_bytes": None, "utilization_ratio": None},
    ]


def test_mig_gpm_failure_omits_utilization(monkeypatch, collector):
    gpu = mig_h100()
    gpu.migs[0].errors["nvmlGpmMigSampleGet"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    fake = FakeNVML([gpu])
    fake.install(monkeypatch)
    _, second = collect_twice(collector)
    migs = by(second, "gpu_mig")
    assert "utilization_ratio" not in migs["MIG-aaaaaaaa-0000-5000-8000-000000000001"].fields
    assert migs["MIG-aaaaaaaa-0000-5000-8000-000000000002"].fields["utilization_ratio"] == 0.2


def test_library_not_found_logs_once_and_retries_later(monkeypatch, caplog, roots):
    fake = FakeNVML([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    fake.install(monkeypatch)
    collector = NvidiaCollector(roots, "node1", NvidiaOptions(retry_init_seconds=300))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    s = 10**9
    assert list(collector.collect(Cycle(T0))) == []
    assert list(collector.collect(Cycle(T0 + 10 * s))) == []
    assert fake.calls["nvmlInit"] == 1  # not retried every round
    assert list(collector.collect(Cycle(T0 + 301 * s))) == []
    assert fake.calls["nvmlInit"] == 2
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    # The driver gets loaded: picked up at the next retry, not before.
    fake.init_error = None
    fake.gpus = [a100()]
    assert list(collector.collect(Cycle(T0 + 302 * s))) == []
    points = list(collector.collect(Cycle(T0 + 602 * s)))
    assert by(points, "gpu")["0"].fields["up"] == 1


def test_driver_not_loaded_and_no_devices_yield_nothing(monkeypatch, collector, roots):
    fake = FakeNVML([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    fake.install(monkeypatch)
    assert list(collector.collect(Cycle(T0))) == []
    other = NvidiaCollector(roots, "node1")
    fake.init_error = None  # loaded, but no GPU
    assert list(other.collect(Cycle(T0))) == []


def test_pynvml_not_installed(monkeypatch, collector, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert list(collector.collect(Cycle(T0))) == []
    assert list(collector.collect(Cycle(T0 + 400 * 10**9))) == []
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this host has libnvidia-ml")
def test_real_pynvml_without_library(collector, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert list(collector.collect(Cycle(T0))) == []
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_no_driver_no_nvml_until_the_driver_loads(monkeypatch, tmp_path, caplog):
    """Without the NVIDIA kernel module (no /proc/driver/nvidia/version, no /sys/module/nvidia) NVML is not
    asked at all; once the module is loaded, the next retry finds the GPUs."""
    fake = FakeNVML([a100()])
    fake.install(monkeypatch)
    roots = Roots(proc=tmp_path / "proc", sys=tmp_path / "sys")
    collector = NvidiaCollector(roots, "node1", NvidiaOptions(retry_init_seconds=60))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert list(collector.collect(Cycle(T0))) == []
    assert fake.calls["nvmlInit"] == 0
    assert "no NVIDIA driver loaded" in caplog.text
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)  # modprobe nvidia: sysfs shows the module
    assert list(collector.collect(Cycle(T0 + 10 * 10**9))) == []  # not before the retry
    points = list(collector.collect(Cycle(T0 + 61 * 10**9)))
    assert fake.calls["nvmlInit"] == 1 and by(points, "gpu")["0"].fields["up"] == 1


def test_no_driver_does_not_load_pynvml(tmp_path):
    """The bindings (and ctypes under them) cost a node 2 MB of RSS: a node without the driver never loads them."""
    code = ("import sys; from pathlib import Path; from agents.collectors.base import Cycle, Roots; "
            "from agents.collectors.nvidia import NvidiaCollector; root = Path(sys.argv[1]); "
            "c = NvidiaCollector(Roots(proc=root / 'proc', sys=root / 'sys'), 'n1'); "
            "print(list(c.collect(Cycle(10**18))), 'pynvml' in sys.modules)")
    without = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert without.stdout.split() == ["[]", "False"], without.stderr
    driver_proc(tmp_path)
    present = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert present.stdout.split()[-1] == "True", present.stderr  # the driver is there: NVML is asked


def test_module_imports_without_pynvml():
    code = "import sys; sys.modules['pynvml'] = None; import agents.collectors.nvidia"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_mig_profile_from_name():
    assert mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb") == "1g.10gb"
    assert mig_profile("NVIDIA A100-SXM4-40GB MIG 7g.40gb") == "7g.40gb"
    assert mig_profile("something else") == "something else"


def test_options_reject_unknown_keys():
    with pytest.raises(ValueError):
        NvidiaOptions(retry_init_second=5)
    with pytest.raises(ValueError):
        NvidiaOptions(retry_init_seconds=0)


def test_transient_error_on_optional_read_is_up_zero_and_retried(monkeypatch, collector):
    gpu = a100(errors={"nvmlDeviceGetTemperature": pynvml.NVML_ERROR_TIMEOUT})
    fake = FakeNVML([gpu])
    fake.install(monkeypatch)
    first, second = collect_twice(collector, between=gpu.errors.clear)
    f1 = by(first, "gpu")["0"].fields
    assert f1["up"] == 0 and "temperature_celsius" not in f1 and f1["power_watts"] == 312.5
    f2 = by(second, "gpu")["0"].fields
    assert f2["up"] == 1 and f2["temperature_celsius"] == 61.0
    assert fake.calls["nvmlDeviceGetTemperature"] == 2
