"""CPU, memory and system measurements."""

from agents.schema.types import counter, gauge, info, measurement, rate

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

CPU = measurement(
    "cpu",
    "CPU time share by mode over the last interval (from /proc/stat deltas). cpu=\"total\" is all "
    "cores together; per-core series carry the core index when per_core is on.",
    ("cpu",),
    *(
        rate(
            f"{mode}_ratio",
            f"Fraction of CPU time spent in {mode} mode over the interval (0-1).",
            telegraf=f"cpu.usage_{mode}",
            node_exporter=f'node_cpu_seconds_total{{mode="{mode}"}} (as rate)',
            prometheus=True,
        )
        for mode in CPU_MODES
    ),
    rate(
        "busy_ratio",
        "Fraction of CPU time not idle or iowait (0-1).",
        telegraf="100 - cpu.usage_idle",
        prometheus=True,
    ),
)

CPU_INFO = measurement(
    "cpu_info",
    "What the CPUs are: architecture, vendor, model, sockets, cores and threads (x86_64, aarch64, ppc64le).",
    (),
    info("arch", "Machine architecture as uname reports it (x86_64, aarch64, ppc64le).",
         node_exporter="node_uname_info{machine}"),
    info("vendor", "CPU vendor (GenuineIntel, AuthenticAMD, ARM implementer, IBM).",
         node_exporter="node_cpu_info{vendor}"),
    info("model", "CPU model name.", node_exporter="node_cpu_info{model_name}"),
    gauge("sockets", "Physical packages.", type=int),
    gauge("cores", "Physical cores over all sockets.", type=int),
    gauge("threads", "Logical CPUs online.", type=int, node_exporter="count(node_cpu_seconds_total{mode=\"idle\"})"),
)

SYSTEM = measurement(
    "system",
    "Host-wide load and scheduler counters.",
    (),
    gauge("load1", "1-minute load average.", telegraf="system.load1", node_exporter="node_load1"),
    gauge("load5", "5-minute load average.", telegraf="system.load5", node_exporter="node_load5"),
    gauge("load15", "15-minute load average.", telegraf="system.load15", node_exporter="node_load15"),
    gauge("procs_running", "Runnable tasks.", type=int, telegraf="kernel.processes_running",
          node_exporter="node_procs_running"),
    gauge("procs_blocked", "Tasks blocked on I/O.", type=int, node_exporter="node_procs_blocked"),
    counter("context_switches", "Context switches since boot.", type=int,
            telegraf="kernel.context_switches", node_exporter="node_context_switches_total"),
    gauge("boot_time_seconds", "Boot time, seconds since the epoch.", type=int,
          telegraf="kernel.boot_time", node_exporter="node_boot_time_seconds"),
)

MEMORY = measurement(
    "memory",
    "Memory from /proc/meminfo, in bytes.",
    (),
    gauge("total_bytes", "MemTotal.", type=int, telegraf="mem.total", node_exporter="node_memory_MemTotal_bytes"),
    gauge("available_bytes", "MemAvailable: what can be allocated without swapping.", type=int,
          telegraf="mem.available", node_exporter="node_memory_MemAvailable_bytes"),
    gauge("used_bytes", "MemTotal - MemAvailable.", type=int, telegraf="mem.used"),
    gauge("free_bytes", "MemFree.", type=int, telegraf="mem.free", node_exporter="node_memory_MemFree_bytes"),
    gauge("cached_bytes", "Cached (page cache).", type=int, telegraf="mem.cached",
          node_exporter="node_memory_Cached_bytes"),
    gauge("buffers_bytes", "Buffers.", type=int, telegraf="mem.buffered", node_exporter="node_memory_Buffers_bytes"),
    gauge("used_ratio", "used_bytes / total_bytes.", telegraf="mem.used_percent / 100"),
    gauge("swap_total_bytes", "SwapTotal.", type=int, telegraf="swap.total",
          node_exporter="node_memory_SwapTotal_bytes"),
    gauge("swap_used_bytes", "SwapTotal - SwapFree.", type=int, telegraf="swap.used"),
)

MEASUREMENTS = (CPU, CPU_INFO, SYSTEM, MEMORY)
