"""The one table of equivalences between fleetwise's schema and the telemetry a site already has.

Three sources: dcgm-exporter and node_exporter scraped by Prometheus (read by agents.query.prometheus), and
Telegraf's input plugins written to InfluxDB (read by agents.query.telegraf). Both readers, and the
generated docs/existing-telemetry.md, are driven by EQUIVALENTS and VIEWS alone: a new equivalence is one
line here.

An Equivalent says which source series gives one fleetwise field, and how:
- metric: the Prometheus metric name (several joined by "+" are added series by series: dcgm-exporter's
  framebuffer size is FB_FREE + FB_USED), or Telegraf's "measurement.field";
- scale: source unit -> fleetwise base unit (MiB -> bytes, % -> ratio, mJ -> J, MHz -> Hz, 4-byte words ->
  bytes);
- counter: the source is cumulative while the fleetwise field is its rate (node_exporter's *_total
  counters, Telegraf's net/diskio/infiniband counters); readers take reset-safe rates;
- mean_over: a source label that splits what fleetwise keeps as one series, averaged over (node_exporter's
  per-core CPU seconds -> fleetwise's cpu="total");
- match: labels / tags the source series must have (mode="idle", cpu="cpu-total").

A View says how one source's series become one fleetwise measurement's tags: each fleetwise tag from a
source label, a constant ("=nvidia"), or a label with its ":port" dropped ("instance:host"); `require`
names labels that must be non-empty (dcgm-exporter's pod / hpc_job: a series without them is a GPU, not a
job). One (source, measurement) may have several views (pods and Slurm jobs); their series are disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass

DCGM, NODE, TELEGRAF = "dcgm-exporter", "node_exporter", "telegraf"
PROMETHEUS_SOURCES = (DCGM, NODE)
MIB = 2**20


@dataclass(frozen=True)
class Equivalent:
    measurement: str
    field: str
    source: str
    metric: str
    scale: float = 1.0
    unit: str = ""  # the source's unit, as its documentation states it
    counter: bool = False
    mean_over: str = ""
    match: tuple[tuple[str, str], ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.metric.split("+"))


@dataclass(frozen=True)
class View:
    source: str
    measurement: str
    tags: tuple[tuple[str, str], ...]  # (fleetwise tag, source label | "=constant" | "label:host")
    require: tuple[str, ...] = ()


def _dcgm_gpu_tags(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("host", "Hostname"), ("gpu", "gpu"), ("uuid", "UUID"), *extra)


VIEWS: tuple[View, ...] = (
    View(DCGM, "gpu", _dcgm_gpu_tags(("vendor", "=nvidia"), ("model", "modelName"))),
    # dcgm-exporter labels a GPU's series with the pod (Kubernetes, through the kubelet's pod-resources
    # socket) or the Slurm job (hpc_job, from its job-mapping directory) that holds it
    View(DCGM, "job_gpu", _dcgm_gpu_tags(("job", "pod"), ("scheduler", "=kubernetes"), ("user", "namespace")),
         require=("pod",)),
    View(DCGM, "job_gpu", _dcgm_gpu_tags(("job", "hpc_job"), ("scheduler", "=slurm"), ("user", "=")),
         require=("hpc_job",)),
    View(NODE, "cpu", (("host", "instance:host"), ("cpu", "=total"))),
    View(NODE, "memory", (("host", "instance:host"),)),
    View(NODE, "system", (("host", "instance:host"),)),
    View(NODE, "disk", (("host", "instance:host"), ("device", "device"))),
    View(NODE, "net", (("host", "instance:host"), ("interface", "device"))),
    View(NODE, "infiniband", (("host", "instance:host"), ("device", "device"), ("port", "port"))),
    View(TELEGRAF, "gpu", (("host", "host"), ("gpu", "index"), ("uuid", "uuid"), ("vendor", "=nvidia"),
                           ("model", "name"))),
    View(TELEGRAF, "cpu", (("host", "host"), ("cpu", "=total"))),
    View(TELEGRAF, "memory", (("host", "host"),)),
    View(TELEGRAF, "disk", (("host", "host"), ("device", "name"))),
    View(TELEGRAF, "net", (("host", "host"), ("interface", "interface"))),
    View(TELEGRAF, "infiniband", (("host", "host"), ("device", "device"), ("port", "port"))),
)

# amd_rocm_smi writes the same fleetwise measurement under other tag names: a second Telegraf view whose
# fields come from the amd_rocm_smi measurement
VIEWS += (View(TELEGRAF, "gpu", (("host", "host"), ("gpu", "gpu_id"), ("uuid", "gpu_unique_id"),
                                 ("vendor", "=amd"), ("model", "name"))),)

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _e(measurement: str, field: str, source: str, metric: str, **kw) -> Equivalent:
    return Equivalent(measurement, field, source, metric, **kw)


EQUIVALENTS: tuple[Equivalent, ...] = (
    # dcgm-exporter (default counters file): GPU series, and the same series per pod / Slurm job
    *(e for m in ("gpu", "job_gpu") for e in (
        _e(m, "utilization_ratio", DCGM, "DCGM_FI_DEV_GPU_UTIL", scale=0.01, unit="%"),
        _e(m, "memory_used_bytes", DCGM, "DCGM_FI_DEV_FB_USED", scale=MIB, unit="MiB"),
    )),
    _e("gpu", "memory_bandwidth_ratio", DCGM, "DCGM_FI_DEV_MEM_COPY_UTIL", scale=0.01, unit="%"),
    _e("gpu", "memory_total_bytes", DCGM, "DCGM_FI_DEV_FB_FREE+DCGM_FI_DEV_FB_USED", scale=MIB, unit="MiB"),
    _e("gpu", "power_watts", DCGM, "DCGM_FI_DEV_POWER_USAGE", unit="W"),
    _e("gpu", "power_limit_watts", DCGM, "DCGM_FI_DEV_POWER_MGMT_LIMIT", unit="W"),
    _e("gpu", "energy_joules", DCGM, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", scale=1e-3, unit="mJ"),
    _e("gpu", "temperature_celsius", DCGM, "DCGM_FI_DEV_GPU_TEMP", unit="C"),
    _e("gpu", "sm_clock_hertz", DCGM, "DCGM_FI_DEV_SM_CLOCK", scale=1e6, unit="MHz"),
    # node_exporter
    *(_e("cpu", f"{mode}_ratio", NODE, "node_cpu_seconds_total", counter=True, mean_over="cpu",
         match=(("mode", mode),), unit="s") for mode in _CPU_MODES),
    _e("memory", "total_bytes", NODE, "node_memory_MemTotal_bytes", unit="B"),
    _e("memory", "available_bytes", NODE, "node_memory_MemAvailable_bytes", unit="B"),
    _e("memory", "free_bytes", NODE, "node_memory_MemFree_bytes", unit="B"),
    _e("memory", "cached_bytes", NODE, "node_memory_Cached_bytes", unit="B"),
    _e("memory", "buffers_bytes", NODE, "node_memory_Buffers_bytes", unit="B"),
    _e("system", "load1", NODE, "node_load1"),
    _e("system", "load5", NODE, "node_load5"),
    _e("system", "load15", NODE, "node_load15"),
    _e("disk", "read_bytes_per_second", NODE, "node_disk_read_bytes_total", counter=True, unit="B"),
    _e("disk", "write_bytes_per_second", NODE, "node_disk_written_bytes_total", counter=True, unit="B"),
    _e("net", "rx_bytes_per_second", NODE, "node_network_receive_bytes_total", counter=True, unit="B"),
    _e("net", "tx_bytes_per_second", NODE, "node_network_transmit_bytes_total", counter=True, unit="B"),
    _e("infiniband", "xmit_bytes_per_second", NODE, "node_infiniband_port_data_transmitted_bytes_total",
       counter=True, unit="B"),
    _e("infiniband", "rcv_bytes_per_second", NODE, "node_infiniband_port_data_received_bytes_total",
       counter=True, unit="B"),
    # Telegraf: nvidia_smi and amd_rocm_smi
    _e("gpu", "utilization_ratio", TELEGRAF, "nvidia_smi.utilization_gpu", scale=0.01, unit="%"),
    _e("gpu", "memory_bandwidth_ratio", TELEGRAF, "nvidia_smi.utilization_memory", scale=0.01, unit="%"),
    _e("gpu", "memory_used_bytes", TELEGRAF, "nvidia_smi.memory_used", scale=MIB, unit="MiB"),
    _e("gpu", "memory_total_bytes", TELEGRAF, "nvidia_smi.memory_total", scale=MIB, unit="MiB"),
    _e("gpu", "power_watts", TELEGRAF, "nvidia_smi.power_draw", unit="W"),
    _e("gpu", "power_limit_watts", TELEGRAF, "nvidia_smi.power_limit", unit="W"),
    _e("gpu", "temperature_celsius", TELEGRAF, "nvidia_smi.temperature_gpu", unit="C"),
    _e("gpu", "sm_clock_hertz", TELEGRAF, "nvidia_smi.clocks_current_sm", scale=1e6, unit="MHz"),
    _e("gpu", "utilization_ratio", TELEGRAF, "amd_rocm_smi.utilization_gpu", scale=0.01, unit="%"),
    _e("gpu", "memory_used_bytes", TELEGRAF, "amd_rocm_smi.memory_used", unit="B"),
    _e("gpu", "memory_total_bytes", TELEGRAF, "amd_rocm_smi.memory_total", unit="B"),
    _e("gpu", "power_watts", TELEGRAF, "amd_rocm_smi.power_draw", unit="W"),
    _e("gpu", "temperature_celsius", TELEGRAF, "amd_rocm_smi.temperature_sensor_edge", unit="C"),
    # Telegraf: cpu (cpu-total), mem, diskio, net, infiniband
    *(_e("cpu", f"{mode}_ratio", TELEGRAF, f"cpu.usage_{mode}", scale=0.01, match=(("cpu", "cpu-total"),),
         unit="%") for mode in _CPU_MODES),
    _e("memory", "total_bytes", TELEGRAF, "mem.total", unit="B"),
    _e("memory", "available_bytes", TELEGRAF, "mem.available", unit="B"),
    _e("memory", "used_bytes", TELEGRAF, "mem.used", unit="B"),
    _e("memory", "free_bytes", TELEGRAF, "mem.free", unit="B"),
    _e("memory", "cached_bytes", TELEGRAF, "mem.cached", unit="B"),
    _e("memory", "buffers_bytes", TELEGRAF, "mem.buffered", unit="B"),
    _e("memory", "used_ratio", TELEGRAF, "mem.used_percent", scale=0.01, unit="%"),
    _e("disk", "read_bytes_per_second", TELEGRAF, "diskio.read_bytes", counter=True, unit="B"),
    _e("disk", "write_bytes_per_second", TELEGRAF, "diskio.write_bytes", counter=True, unit="B"),
    _e("net", "rx_bytes_per_second", TELEGRAF, "net.bytes_recv", counter=True, unit="B"),
    _e("net", "tx_bytes_per_second", TELEGRAF, "net.bytes_sent", counter=True, unit="B"),
    _e("infiniband", "xmit_bytes_per_second", TELEGRAF, "infiniband.port_xmit_data", scale=4.0, counter=True,
       unit="4-byte words"),
    _e("infiniband", "rcv_bytes_per_second", TELEGRAF, "infiniband.port_rcv_data", scale=4.0, counter=True,
       unit="4-byte words"),
)


def equivalents(source: str | tuple[str, ...], measurement: str | None = None) -> list[Equivalent]:
    sources = (source,) if isinstance(source, str) else source
    return [e for e in EQUIVALENTS if e.source in sources and (measurement is None or e.measurement == measurement)]


def views(source: str | tuple[str, ...], measurement: str) -> list[View]:
    sources = (source,) if isinstance(source, str) else source
    return [v for v in VIEWS if v.source in sources and v.measurement == measurement]


def telegraf_measurement(e: Equivalent) -> str:
    return e.metric.split(".", 1)[0]


def telegraf_field(e: Equivalent) -> str:
    return e.metric.split(".", 1)[1]


def telegraf_views(measurement: str, source_measurement: str) -> list[View]:
    """The Telegraf view whose tags a Telegraf measurement carries (amd_rocm_smi's differ from nvidia_smi's)."""
    amd = source_measurement == "amd_rocm_smi"
    return [v for v in views(TELEGRAF, measurement) if (("vendor", "=amd") in v.tags) == amd]
