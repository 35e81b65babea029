"""A fake NVML driver, installed at the pynvml function boundary.

Only the nvml* functions of the real pynvml module are replaced (monkeypatch.setattr); its
NVMLError classes, constants and ctypes structures stay the real ones, so the collector's error
handling runs against the driver's real error codes (pynvml.NVMLError(code) maps to the
NVMLError_* subclass exactly as when libnvidia-ml answers). Values are in NVML's own units:
mW, mJ, KB/s, KiB for NVLink field values, MHz, bytes for memory.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pynvml

GiB = 1024**3
MiB = 1024**2


def driver_proc(root: Path, driver: str = "550.54.15") -> Path:
    """Write root/proc/driver/nvidia/version as the NVIDIA kernel module does and return root/proc: the agent
    loads pynvml only where the driver is loaded, so a node with a fake NVML has the driver's procfs file too."""
    path = root / "proc/driver/nvidia/version"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Tue Mar  5 22:23:56 UTC 2024\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    return root / "proc"


@dataclass
class FakeMig:
    uuid: str
    name: str  # as NVML names MIG devices: "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    gpu_instance_id: int
    memory_used: int
    memory_total: int
    sm_occupancy: float = 0.0  # percent over the interval ending at the latest GPM sample
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeGpu:
    uuid: str
    name: str
    memory_used: int = 0
    memory_total: int = 0
    util_gpu: int = 0  # percent
    util_memory: int = 0  # percent
    power_mw: int = 0
    power_limit_mw: int = 0
    energy_mj: int = 0
    temperature_c: int = 0
    sm_clock_mhz: int = 0
    throttle_reasons: int = 0
    pcie_tx_kbs: int = 0
    pcie_rx_kbs: int = 0
    nvlink_count: int = 0  # links the board has; higher link ids are an invalid argument
    nvlink: dict[int, list[int]] = field(default_factory=dict)  # enabled link -> [tx KiB, rx KiB] cumulative
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, usedGpuMemory bytes or None)
    mig_mode: int | None = None  # None: MIG not supported by this board
    max_mig: int = 0
    migs: dict[int, FakeMig] = field(default_factory=dict)  # slot -> instance
    gpm_supported: bool = False
    minor_number: int | None = None  # /dev/nvidia<N>; None: the same as the NVML index, as on most hosts
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML_ERROR_* it answers with


@dataclass(frozen=True)
class FakeHandle:
    gpu: int
    mig: int | None = None


class FakeNVML:
    """The driver state and the nvml* functions that read it. calls counts every call by name."""

    def __init__(self, gpus: list[FakeGpu], driver: str = "550.54.15", init_error: int | None = None) -> None:
        self.gpus = gpus
        self.driver = driver
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self._samples: list[object] = []  # keeps the ctypes objects behind sample pointers alive
        self._sample_values: dict[int, tuple[str, float]] = {}

    # -- installation ---------------------------------------------------------------------------

    FUNCTIONS = (
        "nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlSystemGetDriverVersion",
        "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMigMode",
        "nvmlDeviceGetMinorNumber",
        "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperature",
        "nvmlDeviceGetClockInfo", "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetPcieThroughput", "nvmlDeviceGetNvLinkState",
        "nvmlDeviceGetFieldValues", "nvmlDeviceGetNvLinkUtilizationCounter",
        "nvmlDeviceGetNvLinkUtilizationControl", "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetMaxMigDeviceCount",
        "nvmlDeviceGetMigDeviceHandleByIndex", "nvmlDeviceGetGpuInstanceId", "nvmlGpmQueryDeviceSupport",
        "nvmlGpmSampleAlloc", "nvmlGpmSampleFree", "nvmlGpmSampleGet", "nvmlGpmMigSampleGet", "nvmlGpmMetricsGet",
    )

    def install(self, monkeypatch, missing: tuple[str, ...] = ()) -> None:
        """Replace pynvml's nvml* functions; names in `missing` are removed, as in an older pynvml."""
        for name in self.FUNCTIONS:
            monkeypatch.setattr(pynvml, name, self._counted(name, getattr(self, name)))
        for name in missing:
            monkeypatch.delattr(pynvml, name, raising=False)

    def _counted(self, name: str, fn):
        def call(*args, **kwargs):
            self.calls[name] += 1
            if args and isinstance(args[0], FakeHandle):
                target = self._target(args[0])
                if name in target.errors:
                    raise pynvml.NVMLError(target.errors[name])
            return fn(*args, **kwargs)
        call.__name__ = name
        return call

    def _target(self, h: FakeHandle) -> FakeGpu | FakeMig:
        gpu = self.gpus[h.gpu]
        return gpu if h.mig is None else gpu.migs[h.mig]

    # -- system ---------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if "nvmlDeviceGetHandleByIndex" in gpu.errors:
            raise pynvml.NVMLError(gpu.errors["nvmlDeviceGetHandleByIndex"])
        return FakeHandle(index)

    # -- per device -----------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:
        return self._target(h).uuid

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:
        return self._target(h).name

    def nvmlDeviceGetMinorNumber(self, h: FakeHandle) -> int:
        minor = self._target(h).minor_number if h.mig is None else None
        return h.gpu if minor is None else minor

    def nvmlDeviceGetMigMode(self, h: FakeHandle) -> list[int]:
        gpu = self._target(h)
        if gpu.mig_mode is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMemoryInfo(self, h: FakeHandle, version=None):
        t = self._target(h)
        return pynvml.c_nvmlMemory_t(total=t.memory_total, free=t.memory_total - t.memory_used, used=t.memory_used)

    def nvmlDeviceGetUtilizationRates(self, h: FakeHandle):
        if h.mig is not None:  # MIG devices have no utilization rate in NVML
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        gpu = self.gpus[h.gpu]
        if gpu.mig_mode == pynvml.NVML_DEVICE_MIG_ENABLE:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu, memory=gpu.util_memory)

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].energy_mj

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.gpus[h.gpu].temperature_c

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, clock: int) -> int:
        assert clock == pynvml.NVML_CLOCK_SM
        return self.gpus[h.gpu].sm_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].throttle_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].throttle_reasons

    def nvmlDeviceGetPcieThroughput(self, h: FakeHandle, counter: int) -> int:
        gpu = self.gpus[h.gpu]
        return gpu.pcie_tx_kbs if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kbs

    def nvmlDeviceGetNvLinkState(self, h: FakeHandle, link: int) -> int:
        gpu = self.gpus[h.gpu]
        if gpu.nvlink_count == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if link >= gpu.nvlink_count:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED if link in gpu.nvlink else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetFieldValues(self, h: FakeHandle, field_ids):
        gpu = self.gpus[h.gpu]
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for i, (fid, scope) in enumerate(field_ids):
            v = values[i]
            v.fieldId, v.scopeId = fid, scope
            direction = {pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: 0,
                         pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: 1}.get(fid)
            if direction is None or scope not in gpu.nvlink:
                v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            v.nvmlReturn = pynvml.NVML_SUCCESS
            v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            v.value.ullVal = gpu.nvlink[scope][direction]
        return values

    def nvmlDeviceGetNvLinkUtilizationControl(self, h: FakeHandle, link: int, counter: int):
        return pynvml.nvmlNvLinkUtilizationControl_t(units=pynvml.NVML_NVLINK_COUNTER_UNIT_BYTES, pktfilter=0xFF)

    def nvmlDeviceGetNvLinkUtilizationCounter(self, h: FakeHandle, link: int, counter: int) -> tuple[int, int]:
        tx_kib, rx_kib = self.gpus[h.gpu].nvlink[link]
        return rx_kib * 1024, tx_kib * 1024  # (rx, tx) in bytes, as pynvml returns them

    def nvmlDeviceGetTotalEccErrors(self, h: FakeHandle, error_type: int, counter_type: int) -> int:
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        gpu = self.gpus[h.gpu]
        return gpu.ecc_corrected if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_uncorrected

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeHandle):
        return [pynvml.nvmlFriendlyObject({"pid": pid, "usedGpuMemory": used, "gpuInstanceId": 0xFFFFFFFF,
                                           "computeInstanceId": 0xFFFFFFFF})
                for pid, used in self._target(h).processes]

    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses
    nvmlDeviceGetComputeRunningProcesses_v2 = nvmlDeviceGetComputeRunningProcesses

    # -- MIG and GPM ----------------------------------------------------------------------------

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeHandle) -> int:
        return self.gpus[h.gpu].max_mig

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeHandle, index: int) -> FakeHandle:
        if index not in self.gpus[h.gpu].migs:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return FakeHandle(h.gpu, index)

    def nvmlDeviceGetGpuInstanceId(self, h: FakeHandle) -> int:
        return self._target(h).gpu_instance_id

    def nvmlGpmQueryDeviceSupport(self, h: FakeHandle):
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = int(self.gpus[h.gpu].gpm_supported)
        return support

    def nvmlGpmSampleAlloc(self):
        opaque = pynvml.struct_c_nvmlGpmSample_t()
        self._samples.append(opaque)
        return ctypes.pointer(opaque)

    def nvmlGpmSampleFree(self, sample) -> None:
        self._sample_values.pop(ctypes.addressof(sample.contents), None)

    def _record(self, sample, who: str, value: float) -> None:
        self._sample_values[ctypes.addressof(sample.contents)] = (who, value)

    def nvmlGpmSampleGet(self, h: FakeHandle, sample):
        t = self._target(h)
        self._record(sample, t.uuid, getattr(t, "sm_occupancy", 0.0))
        return sample

    def nvmlGpmMigSampleGet(self, h: FakeHandle, gpu_instance_id: int, sample):
        for mig in self.gpus[h.gpu].migs.values():
            if mig.gpu_instance_id == gpu_instance_id:
                if "nvmlGpmMigSampleGet" in mig.errors:  # the handle is the parent's: look at the instance
                    raise pynvml.NVMLError(mig.errors["nvmlGpmMigSampleGet"])
                self._record(sample, mig.uuid, mig.sm_occupancy)
                return sample
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlGpmMetricsGet(self, request):
        first = self._sample_values.get(ctypes.addressof(request.sample1.contents))
        second = self._sample_values.get(ctypes.addressof(request.sample2.contents))
        # Two live samples of the same instance, in order: anything else is the caller's bug.
        if first is None or second is None or first[0] != second[0] or request.sample1 is request.sample2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId == pynvml.NVML_GPM_METRIC_SM_OCCUPANCY:
                metric.nvmlReturn = pynvml.NVML_SUCCESS
                metric.value = second[1]
            else:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return request


def a100(**overrides) -> FakeGpu:
    """An A100-SXM4-40GB in NVML's units, with 12 NVLinks (links 0-11), two enabled here to keep sums readable."""
    values = dict(
        uuid="GPU-9a1c7c53-5e0b-4f4e-9d3b-1c2d3e4f5a6b", name="NVIDIA A100-SXM4-40GB",
        memory_used=10 * GiB, memory_total=40 * GiB, util_gpu=87, util_memory=45,
        power_mw=312_500, power_limit_mw=400_000, energy_mj=1_234_567_890, temperature_c=61,
        sm_clock_mhz=1410, throttle_reasons=0x4, pcie_tx_kbs=2_048, pcie_rx_kbs=4_096,
        nvlink_count=12, nvlink={0: [1_000, 2_000], 1: [3_000, 4_000]},
        ecc_corrected=3, ecc_uncorrected=0, processes=[(4242, 8 * GiB), (4343, None)],
        mig_mode=0,
    )
    values.update(overrides)
    return FakeGpu(**values)


def h100(**overrides) -> FakeGpu:
    """An H100-SXM5-80GB (18 NVLinks, GPM), MIG disabled unless overridden."""
    values = dict(
        uuid="GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", name="NVIDIA H100 80GB HBM3",
        memory_used=20 * GiB, memory_total=80 * GiB, util_gpu=50, util_memory=25,
        power_mw=650_000, power_limit_mw=700_000, energy_mj=9_000_000, temperature_c=70,
        sm_clock_mhz=1980, throttle_reasons=0, pcie_tx_kbs=1_000, pcie_rx_kbs=500,
        nvlink_count=18, nvlink={5: [10, 20]}, ecc_corrected=0, ecc_uncorrected=1,
        processes=[(777, 1 * GiB)], mig_mode=0, gpm_supported=True,
    )
    values.update(overrides)
    return FakeGpu(**values)
