"""nvidia: NVIDIA GPUs through NVML in-process (nvidia-ml-py, imported as pynvml).

pynvml is imported lazily, and only once the NVIDIA kernel module is seen loaded (its procfs or sysfs
entry under the configured roots), so the agent runs on hosts without it and a node without NVIDIA GPUs never
loads the bindings. Every optional read is guarded on
its own: a function the driver or the bindings lack is remembered per (GPU, function) and not
called again, so an old driver costs one failed call per function, not one per round.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, Roots
from agents.points import FieldValue, Point
from agents.schema.accelerators import GPU, GPU_INFO, GPU_MIG

_MISSING = object()  # an optional read that gave nothing (unsupported, or a transient error)

# Errors that mean "this GPU or driver cannot do that": remembered, never retried.
_UNSUPPORTED_ERRORS = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_NO_PERMISSION")
# Errors that mean the GPU itself is gone: stop reading it this round.
_FATAL_ERRORS = ("NVML_ERROR_GPU_IS_LOST",)

_PROCESS_FUNCTIONS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v3",
                      "nvmlDeviceGetComputeRunningProcesses_v2")
_THROTTLE_FUNCTIONS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


class NvidiaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_init_seconds: float = Field(300.0, gt=0, description="How often to retry nvmlInit after it failed "
                                      "(a driver loaded after the agent started is picked up).")


class _GpuFatal(Exception):
    """This GPU answered with an error that makes further reads pointless this round."""


@dataclass
class _Static:
    uuid: str
    model: str
    mig_mode: str  # enabled / disabled / unsupported
    minor: int | None = None  # /dev/nvidia<minor>: the index Slurm and the devices cgroup use


def _text(value: Any) -> str:
    # Older pynvml releases return bytes for names, UUIDs and versions.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def mig_profile(name: str) -> str:
    """'NVIDIA H100 80GB HBM3 MIG 1g.10gb' -> '1g.10gb' (NVML names MIG devices this way)."""
    _head, sep, tail = name.rpartition(" MIG ")
    return tail.strip() if sep else name


DRIVER_VERSION_FILE = "driver/nvidia/version"  # under procfs, written by the NVIDIA kernel module


def driver_present(roots: Roots) -> bool:
    """Whether the NVIDIA kernel module is loaded: its procfs version file, or its sysfs module directory
    (which containers see even when they do not see the host's /proc/driver)."""
    return (roots.proc / DRIVER_VERSION_FILE).is_file() or (roots.sys / "module/nvidia").is_dir()


class NvidiaCollector(Collector):
    name = "nvidia"
    measurements = (GPU, GPU_MIG, GPU_INFO)
    Options = NvidiaOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nv: Any = None  # the pynvml module once nvmlInit succeeded
        self._next_init: float | None = None  # cycle time (s) of the next nvmlInit attempt
        self._last_init: float | None = None
        self._driver: str | None = None
        self._static: dict[int, _Static] = {}
        self._mig_static: dict[tuple[int, int], tuple[str, str]] = {}
        self._unsupported: set[tuple] = set()
        self._gpm_samples: dict[str, Any] = {}  # MIG uuid -> previous GPM sample
        self._soft_errors: set[tuple] = set()  # GPUs that answered some read with an error this round
        self._process_count_known = False
        self._last_use: dict[str, Any] = {}

    # -- plumbing -------------------------------------------------------------------------------


    def _error_is(self, exc: BaseException, names: tuple[str, ...]) -> bool:
        codes = {getattr(self._nv, n, None) for n in names}
        return getattr(exc, "value", None) in codes

    def _init(self, now: float) -> bool:
        if self._nv is not None:
            return True
        # A clock stepped backwards must not postpone the retry forever.
        if self._next_init is not None and self._last_init is not None and self._last_init <= now < self._next_init:
            return False
        self._last_init = now
        self._next_init = now + self.options.retry_init_seconds
        if not driver_present(self.roots):
            # pynvml and ctypes cost a node without NVIDIA GPUs 2 MB of RSS for nothing (the agent's
            # budget is 40 MB); a driver loaded later is seen at the next retry.
            self.log_once(("absent",), logging.DEBUG, "nvidia: no NVIDIA driver loaded (%s missing); no NVIDIA GPUs",
                          self.roots.proc / DRIVER_VERSION_FILE)
            return False
        try:
            import pynvml
        except ImportError:
            self.log_once(("absent",), logging.DEBUG, "nvidia: pynvml (nvidia-ml-py) is not installed; no NVIDIA GPUs")
            return False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            self.log_once(("absent",), logging.DEBUG, "nvidia: nvmlInit failed (%s); no NVIDIA GPUs", e)
            return False
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as e:
            count = 0
            self.log_once(("absent",), logging.DEBUG, "nvidia: nvmlDeviceGetCount failed (%s)", e)
        if count == 0:
            self.log_once(("absent",), logging.DEBUG, "nvidia: NVML found no GPUs")
            self._shutdown(pynvml)
            return False
        self._nv = pynvml
        return True

    @staticmethod
    def _shutdown(nv: Any) -> None:
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()

    def _call(self, key: tuple, fn_name: str, *args: Any, fatal_on_error: bool = False,
              unsupported: tuple[str, ...] = _UNSUPPORTED_ERRORS) -> Any:
        """One NVML read. Returns _MISSING when unsupported (remembered) or when it failed softly.

        Raises _GpuFatal when the GPU is lost, or on any non-"unsupported" error if fatal_on_error.
        """
        memo = (*key, fn_name)
        if memo in self._unsupported:
            return _MISSING
        fn = getattr(self._nv, fn_name, None)
        if fn is None:  # the installed pynvml predates this function
            self._unsupported.add(memo)
            return _MISSING
        try:
            return fn(*args)
        except self._nv.NVMLError as e:
            if self._error_is(e, unsupported):
                self._unsupported.add(memo)
                return _MISSING
            if fatal_on_error or self._error_is(e, _FATAL_ERRORS):
                raise _GpuFatal(f"{fn_name}: {e}") from e
            self._soft_errors.add(key)
            self.log_once(("soft", *memo, getattr(e, "value", None)), logging.WARNING,
                           "nvidia: %s on %s failed: %s", fn_name, key, e)
            return _MISSING

    def _first(self, key: tuple, fn_names: tuple[str, ...], *args: Any) -> Any:
        """The first of several names for one NVML call (renamed across driver releases) that answers."""
        for fn_name in fn_names:
            value = self._call(key, fn_name, *args)
            if value is not _MISSING:
                return value
        return _MISSING

    # -- collection -----------------------------------------------------------------------------

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        if not self._init(cycle.seconds):
            return
        nv = self._nv
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as e:
            # The driver went away under us: start over, retrying init on the usual schedule.
            self.log_once(("count", getattr(e, "value", None)), logging.WARNING, "nvidia: nvmlDeviceGetCount: %s", e)
            self._shutdown(nv)
            self._nv = None
            self._static.clear()
            self._mig_static.clear()
            return
        if self._driver is None:
            driver = self._call(("system",), "nvmlSystemGetDriverVersion")
            self._driver = None if driver is _MISSING else _text(driver)
        processes: list[dict[str, Any]] = cycle.shared.setdefault("gpu_processes", [])
        for index in range(count):
            yield from self._collect_gpu(index, cycle, processes)
            self._share_inventory(index, cycle)

    def _read_static(self, key: tuple, handle: Any) -> _Static:
        uuid = self._call(key, "nvmlDeviceGetUUID", handle, fatal_on_error=True)
        model = self._call(key, "nvmlDeviceGetName", handle, fatal_on_error=True)
        uuid = "" if uuid is _MISSING else _text(uuid)
        model = "" if model is _MISSING else _text(model)
        mig_mode = "unsupported"
        mode = self._call(key, "nvmlDeviceGetMigMode", handle)
        if mode is not _MISSING:
            mig_mode = "enabled" if mode[0] == self._nv.NVML_DEVICE_MIG_ENABLE else "disabled"
        minor = self._call(key, "nvmlDeviceGetMinorNumber", handle)
        return _Static(uuid, model, mig_mode, None if minor is _MISSING else int(minor))

    def _collect_gpu(self, index: int, cycle: Cycle, processes: list[dict[str, Any]]) -> Iterator[Point]:
        key = (index,)
        self._soft_errors = set()
        static = self._static.get(index)
        fields: dict[str, FieldValue] = {}
        gpu_procs: list[dict[str, Any]] = []
        mig_points: list[Point] = []
        try:
            handle = self._call(key, "nvmlDeviceGetHandleByIndex", index, fatal_on_error=True)
            if static is None:
                static = self._read_static(key, handle)
                self._static[index] = static
            tags = self._tags(index, static)
            mem = self._call(key, "nvmlDeviceGetMemoryInfo", handle, fatal_on_error=True)
            if mem is not _MISSING:
                fields["memory_used_bytes"] = int(mem.used)
                fields["memory_total_bytes"] = int(mem.total)
            self._read_gauges(key, handle, fields)
            self._read_nvlink(key, handle, static.uuid, fields, cycle)
            self._read_ecc(key, handle, fields)
            gpu_procs = self._read_processes(key, handle, index, static.uuid)
            if static.mig_mode == "enabled":
                mig_points = list(self._collect_mig(index, handle, static, tags, cycle, gpu_procs))
            if gpu_procs or self._process_count_known:
                fields["processes"] = len(gpu_procs)
        except _GpuFatal as e:
            self.log_once(("fatal", index, str(e)), logging.WARNING, "nvidia: GPU %d answered with an error: %s",
                           index, e)
            # Re-read the static facts next time: a GPU that came back may be another board.
            self._static.pop(index, None)
            self._mig_static = {k: v for k, v in self._mig_static.items() if k[0] != index}
            yield self.point(GPU, self._tags(index, static), {"up": 0, **fields}, cycle)
            return
        fields = {"up": 0 if self._soft_errors else 1, **fields}
        yield self.point(GPU, tags, fields, cycle)
        yield from mig_points
        info: dict[str, FieldValue] = {"mig_mode": static.mig_mode}
        if self._driver is not None:
            info["driver"] = self._driver
        yield self.point(GPU_INFO, tags, info, cycle)
        utilization = fields.get("utilization_ratio")
        self._last_use = {"utilization_ratio": utilization, "memory_used_bytes": fields.get("memory_used_bytes")}
        for proc in gpu_procs:
            proc["utilization_ratio"] = utilization
        processes.extend(gpu_procs)

    def _share_inventory(self, index: int, cycle: Cycle) -> None:
        """What the jobs collector needs to name the GPUs jobs hold (see agents.collectors.gpu_alloc)."""
        static = self._static.get(index)
        if static is None:  # the GPU answered with an error this round
            return
        cycle.shared.setdefault("gpus", []).append({
            "vendor": "nvidia", "gpu": str(index), "uuid": static.uuid,
            "slot": static.minor if static.minor is not None else index, "render_minor": None,
            "ids": {static.uuid} - {""}, "processes_known": self._process_count_known,
            **self._last_use})

    @staticmethod
    def _tags(index: int, static: _Static | None) -> dict[str, str]:
        return {"gpu": str(index), "uuid": static.uuid if static else "", "vendor": "nvidia",
                "model": static.model if static else ""}

    def _read_gauges(self, key: tuple, h: Any, fields: dict[str, FieldValue]) -> None:
        nv = self._nv
        util = self._call(key, "nvmlDeviceGetUtilizationRates", h)
        if util is not _MISSING:  # NotSupported on a GPU in MIG mode
            fields["utilization_ratio"] = util.gpu / 100.0
            fields["memory_bandwidth_ratio"] = util.memory / 100.0
        # Divide rather than multiply by 1e-3: 312500 / 1000 is exactly 312.5, 312500 * 1e-3 is not.
        scaled = (
            ("power_watts", "nvmlDeviceGetPowerUsage", (), 1000),  # mW
            ("power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit", (), 1000),  # mW
            ("energy_joules", "nvmlDeviceGetTotalEnergyConsumption", (), 1000),  # mJ since driver load
            ("temperature_celsius", "nvmlDeviceGetTemperature", (nv.NVML_TEMPERATURE_GPU,), 1),
        )
        for field_name, fn_name, extra, divisor in scaled:
            value = self._call(key, fn_name, h, *extra)
            if value is not _MISSING:
                fields[field_name] = value / divisor
        mhz = self._call(key, "nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM)
        if mhz is not _MISSING:
            fields["sm_clock_hertz"] = float(mhz * 1_000_000)
        reasons = self._first(key, _THROTTLE_FUNCTIONS, h)
        if reasons is not _MISSING:
            fields["throttle_reasons"] = int(reasons)
        for field_name, counter in (("pcie_tx_bytes_per_second", nv.NVML_PCIE_UTIL_TX_BYTES),
                                    ("pcie_rx_bytes_per_second", nv.NVML_PCIE_UTIL_RX_BYTES)):
            # One memo key per direction would be pointless: both are supported or neither is.
            value = self._call(key, "nvmlDeviceGetPcieThroughput", h, counter)
            if value is not _MISSING:
                fields[field_name] = float(value * 1024)  # NVML reports KB/s

    def _read_ecc(self, key: tuple, h: Any, fields: dict[str, FieldValue]) -> None:
        nv = self._nv
        for field_name, kind in (("ecc_corrected_errors", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                                 ("ecc_uncorrected_errors", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            value = self._call(key, "nvmlDeviceGetTotalEccErrors", h, kind, nv.NVML_VOLATILE_ECC)
            if value is not _MISSING:
                fields[field_name] = int(value)

    def _active_links(self, key: tuple, h: Any) -> list[int]:
        nv = self._nv
        links = []
        for link in range(nv.NVML_NVLINK_MAX_LINKS):
            # Memoised per link: a GPU with 18 links answers NotSupported for links 18-35.
            # Link ids past the board's count are an invalid argument: no such link, ever.
            state = self._call((*key, "link", link), "nvmlDeviceGetNvLinkState", h, link,
                               unsupported=(*_UNSUPPORTED_ERRORS, "NVML_ERROR_INVALID_ARGUMENT"))
            if state is not _MISSING and state == nv.NVML_FEATURE_ENABLED:
                links.append(link)
        return links

    def _nvlink_from_fields(self, key: tuple, h: Any, links: list[int]) -> tuple[int, int] | None:
        nv = self._nv
        tx_id = getattr(nv, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", None)
        rx_id = getattr(nv, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", None)
        if tx_id is None or rx_id is None:
            return None
        # scopeId selects the link; asking per link keeps disabled links out of the sum.
        request = [(fid, link) for link in links for fid in (tx_id, rx_id)]
        values = self._call(key, "nvmlDeviceGetFieldValues", h, request)
        if values is _MISSING:
            return None
        totals = {tx_id: 0, rx_id: 0}
        for v in values:
            if v.nvmlReturn != nv.NVML_SUCCESS:
                return None
            totals[v.fieldId] += int(v.value.ullVal)
        return totals[tx_id] * 1024, totals[rx_id] * 1024  # KiB

    def _nvlink_from_counters(self, key: tuple, h: Any, links: list[int]) -> tuple[int, int] | None:
        nv = self._nv
        tx = rx = 0
        for link in links:
            control = self._call(key, "nvmlDeviceGetNvLinkUtilizationControl", h, link, 0)
            # The legacy counters count whatever unit their control selects; only bytes are meaningful here.
            if control is not _MISSING and control.units != nv.NVML_NVLINK_COUNTER_UNIT_BYTES:
                return None
            value = self._call(key, "nvmlDeviceGetNvLinkUtilizationCounter", h, link, 0)
            if value is _MISSING:
                return None
            rx += int(value[0])
            tx += int(value[1])
        return tx, rx

    def _read_nvlink(self, key: tuple, h: Any, uuid: str, fields: dict[str, FieldValue], cycle: Cycle) -> None:
        links = self._active_links(key, h)
        if not links:
            return
        totals = self._nvlink_from_fields(key, h, links) or self._nvlink_from_counters(key, h, links)
        if totals is None:
            return
        tx, rx = totals
        fields["nvlink_tx_bytes"] = tx
        fields["nvlink_rx_bytes"] = rx
        self.add_rate(fields, "nvlink_tx_bytes_per_second", ("nvlink_tx", uuid), tx, cycle)
        self.add_rate(fields, "nvlink_rx_bytes_per_second", ("nvlink_rx", uuid), rx, cycle)

    def _read_processes(self, key: tuple, h: Any, index: int, uuid: str) -> list[dict[str, Any]]:
        self._process_count_known = False
        procs = self._first(key, _PROCESS_FUNCTIONS, h)
        if procs is _MISSING:
            return []
        self._process_count_known = True
        return [self._process(p, index, uuid) for p in procs]

    @staticmethod
    def _process(p: Any, index: int, uuid: str) -> dict[str, Any]:
        used = getattr(p, "usedGpuMemory", None)
        return {"gpu": str(index), "uuid": uuid, "pid": int(p.pid),
                "memory_used_bytes": None if used is None else int(used), "utilization_ratio": None}

    # -- MIG ------------------------------------------------------------------------------------

    def _collect_mig(self, index: int, h: Any, static: _Static, tags: dict[str, str], cycle: Cycle,
                     gpu_procs: list[dict[str, Any]]) -> Iterator[Point]:
        nv = self._nv
        key = (index,)
        slots = self._call(key, "nvmlDeviceGetMaxMigDeviceCount", h)
        if slots is _MISSING:
            return
        gpm = self._gpm_supported(key, h)
        seen_pids = {p["pid"] for p in gpu_procs}
        for slot in range(int(slots)):
            fn = getattr(nv, "nvmlDeviceGetMigDeviceHandleByIndex", None)
            if fn is None:
                return
            try:
                mig = fn(h, slot)
            except nv.NVMLError as e:
                if self._error_is(e, ("NVML_ERROR_NOT_FOUND", "NVML_ERROR_INVALID_ARGUMENT")):
                    continue  # an empty slot
                if self._error_is(e, _FATAL_ERRORS):
                    raise _GpuFatal(f"nvmlDeviceGetMigDeviceHandleByIndex: {e}") from e
                self._soft_errors.add(key)
                continue
            point = self._mig_point(index, slot, h, mig, tags, cycle, gpm)
            if point is None:
                continue
            yield point
            # Processes inside an instance are attributed to the physical GPU (the parent's uuid).
            mig_procs = self._first((index, "mig", slot), _PROCESS_FUNCTIONS, mig)
            if mig_procs is _MISSING:
                continue
            self._process_count_known = True
            for p in mig_procs:
                if int(p.pid) not in seen_pids:
                    seen_pids.add(int(p.pid))
                    gpu_procs.append(self._process(p, index, static.uuid))

    def _gpm_supported(self, key: tuple, h: Any) -> bool:
        support = self._call(key, "nvmlGpmQueryDeviceSupport", h)
        return support is not _MISSING and bool(support.isSupportedDevice)

    def _mig_point(self, index: int, slot: int, parent: Any, mig: Any, tags: dict[str, str], cycle: Cycle,
                   gpm: bool) -> Point | None:
        key = (index, "mig", slot)
        facts = self._mig_static.get((index, slot))
        try:
            if facts is None:
                uuid = self._call(key, "nvmlDeviceGetUUID", mig, fatal_on_error=True)
                name = self._call(key, "nvmlDeviceGetName", mig, fatal_on_error=True)
                if uuid is _MISSING:
                    return None  # an instance without an identity cannot carry a series
                facts = (_text(uuid), "" if name is _MISSING else mig_profile(_text(name)))
                self._mig_static[(index, slot)] = facts
            mem = self._call(key, "nvmlDeviceGetMemoryInfo", mig, fatal_on_error=True)
        except _GpuFatal as e:
            self._mig_static.pop((index, slot), None)
            self._soft_errors.add((index,))
            self.log_once(("mig", index, slot, str(e)), logging.WARNING, "nvidia: MIG %d/%d: %s", index, slot, e)
            return None
        uuid, profile = facts
        fields: dict[str, FieldValue] = {}
        if mem is not _MISSING:
            fields["memory_used_bytes"] = int(mem.used)
            fields["memory_total_bytes"] = int(mem.total)
        if gpm:
            ratio = self._gpm_utilization(key, parent, mig, uuid)
            if ratio is not None:
                fields["utilization_ratio"] = ratio
        if not fields:
            return None
        return self.point(GPU_MIG, {**tags, "instance": uuid, "profile": profile}, fields, cycle)

    def _gpm_utilization(self, key: tuple, parent: Any, mig: Any, uuid: str) -> float | None:
        """SM occupancy between the previous round's GPM sample and this one; None on the first round.

        NVML has no utilization rate for MIG instances; GPM (Hopper and later) is the only source.
        """
        nv = self._nv
        previous = self._gpm_samples.pop(uuid, None)
        try:
            sample = nv.nvmlGpmSampleAlloc()
        except (nv.NVMLError, AttributeError):
            self._free(previous)
            return None
        try:
            if hasattr(nv, "nvmlGpmMigSampleGet"):
                nv.nvmlGpmMigSampleGet(parent, nv.nvmlDeviceGetGpuInstanceId(mig), sample)
            else:
                nv.nvmlGpmSampleGet(mig, sample)
        except (nv.NVMLError, AttributeError) as e:
            self.log_once(("gpm", *key), logging.DEBUG, "nvidia: GPM sample for %s failed: %s", uuid, e)
            self._free(previous)
            self._free(sample)
            return None
        self._gpm_samples[uuid] = sample
        if previous is None:
            return None
        try:
            request = nv.c_nvmlGpmMetricsGet_t()
            request.version = nv.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = 1
            request.sample1 = previous
            request.sample2 = sample
            request.metrics[0].metricId = nv.NVML_GPM_METRIC_SM_OCCUPANCY
            result = nv.nvmlGpmMetricsGet(request)
            metric = result.metrics[0]
            if metric.nvmlReturn != nv.NVML_SUCCESS:
                return None
            return float(metric.value) / 100.0
        except (nv.NVMLError, AttributeError) as e:
            self.log_once(("gpm-metrics", *key), logging.DEBUG, "nvidia: GPM metrics for %s failed: %s", uuid, e)
            return None
        finally:
            self._free(previous)

    def _free(self, sample: Any) -> None:
        if sample is None:
            return
        with contextlib.suppress(self._nv.NVMLError, AttributeError):
            self._nv.nvmlGpmSampleFree(sample)
