"""CPU, memory and system measurements."""

from agents.schema.types import counter, gauge, info, measurement, rate

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

_GUEST_HELP = "Time running guests' virtual CPUs since boot, already counted in the user and nice modes."

# The modes that add up to the whole time: guest and guest_nice are already inside user and nice.
ACCOUNTED_MODES = CPU_MODES[:8]

CPU = measurement(
    "cpu",
    "CPU time by mode from /proc/stat: cumulative seconds (every read) and the share of the last "
    "interval (from the second read on). cpu=\"total\" is all cores together; per-core series carry the "
    "core index when per_core is on. On /metrics the seconds are one family with a mode label, as "
    "node_exporter's node_cpu_seconds_total (guest time in its own family, since user already holds it).",
    ("cpu",),
    *(
        counter(
            f"{mode}_seconds",
            f"CPU time spent in {mode} mode since boot (jiffies / USER_HZ).",
            telegraf=f"cpu.time_{mode}",
            node_exporter=f'node_cpu_seconds_total{{mode="{mode}"}}',
            family="seconds",
            labels=(("mode", mode),),
            family_help="CPU time by mode since boot; guest time is inside user and nice.",
        )
        for mode in ACCOUNTED_MODES
    ),
    counter("guest_seconds", "Time running a guest's virtual CPUs, already counted in user_seconds.",
            telegraf="cpu.time_guest", node_exporter='node_cpu_guest_seconds_total{mode="user"}',
            family="guest_seconds", labels=(("mode", "user"),), family_help=_GUEST_HELP),
    counter("guest_nice_seconds", "Time running niced guests, already counted in nice_seconds.",
            telegraf="cpu.time_guest_nice", node_exporter='node_cpu_guest_seconds_total{mode="nice"}',
            family="guest_seconds", labels=(("mode", "nice"),), family_help=_GUEST_HELP),
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

VMSTAT = measurement(
    "vmstat",
    "Virtual memory event counters from /proc/vmstat.",
    (),
    counter("oom_kills", "Processes the OOM killer killed (oom_kill, Linux 4.13+).", type=int,
            telegraf="kernel_vmstat.oom_kill", node_exporter="node_vmstat_oom_kill"),
    counter("major_page_faults", "Page faults that needed I/O (pgmajfault).", type=int,
            telegraf="kernel_vmstat.pgmajfault", node_exporter="node_vmstat_pgmajfault"),
    counter("page_faults", "All page faults, minor and major (pgfault).", type=int,
            telegraf="kernel_vmstat.pgfault", node_exporter="node_vmstat_pgfault"),
    counter("swap_in_pages", "Pages swapped in (pswpin).", type=int, telegraf="kernel_vmstat.pswpin",
            node_exporter="node_vmstat_pswpin"),
    counter("swap_out_pages", "Pages swapped out (pswpout).", type=int, telegraf="kernel_vmstat.pswpout",
            node_exporter="node_vmstat_pswpout"),
    rate("major_page_faults_per_second", "Major page faults per second over the interval."),
)

PSI_RESOURCES = ("cpu", "memory", "io")
_PSI_NE = {"some": "waiting", "full": "stalled"}

PRESSURE = measurement(
    "pressure",
    "Pressure stall information from /proc/pressure/{cpu,memory,io} (Linux 4.20+, CONFIG_PSI): the share of "
    "time some task (some) or every non-idle task (full) was stalled waiting for the resource. The first "
    "sign of contention, before utilization says so. No series where the kernel has no PSI.",
    ("resource",),
    *(
        f
        for kind in ("some", "full")
        for f in (
            *(gauge(f"{kind}_avg{window}_ratio",
                    f"Kernel's {window}-second running average of the {kind} stall share (avg{window} / 100).",
                    telegraf=f"pressure.avg{window} (type={kind}, percent)")
              for window in (10, 60, 300)),
            counter(f"{kind}_stall_seconds", f"Cumulative {kind} stall time (total, microseconds / 1e6).",
                    telegraf=f"pressure.total (type={kind}, microseconds)",
                    node_exporter=f"node_pressure_<resource>_{_PSI_NE[kind]}_seconds_total"
                    + (" (cpu: none in 1.5)" if kind == "full" else "")),
            rate(f"{kind}_stall_ratio", f"Share of the interval with a {kind} stall (from the total counter)."),
        )
    ),
)

HWMON = measurement(
    "hwmon",
    "Temperatures and power from /sys/class/hwmon (CPU packages, DIMMs, NVMe, VRMs, PSUs; GPUs too). "
    "chip is named after the device the sensor belongs to, as node_exporter names it (e.g. "
    "platform_coretemp_0), so it survives the hwmonN renumbering of a reboot; sensor is temp1, power1, ...",
    ("chip", "sensor"),
    gauge("temp_celsius", "Temperature (temp*_input, millidegrees / 1000).",
          telegraf="temp.temp / sensors.temp_input", node_exporter="node_hwmon_temp_celsius"),
    gauge("temp_max_celsius", "The chip's high limit (temp*_max).", node_exporter="node_hwmon_temp_max_celsius"),
    gauge("temp_crit_celsius", "The chip's critical limit (temp*_crit).",
          node_exporter="node_hwmon_temp_crit_celsius"),
    gauge("power_watts", "Power (power*_average, else power*_input; microwatts / 1e6).",
          telegraf="sensors.power_average",
          node_exporter="node_hwmon_power_average_watt / node_hwmon_power_input_watt"),
    info("label", "The sensor's label (temp*_label: 'Package id 0', 'Composite', ...).",
         node_exporter="node_hwmon_sensor_label{label}"),
    info("chip_name", "The chip driver's name (the name file: coretemp, k10temp, nvme, ...).",
         node_exporter="node_hwmon_chip_names{chip_name}"),
)

THERMAL_ZONE = measurement(
    "thermal_zone",
    "Thermal zones from /sys/class/thermal/thermal_zone*/ (ACPI, SoC and package sensors).",
    ("zone", "type"),
    gauge("temp_celsius", "Zone temperature (temp, millidegrees / 1000).", telegraf="temp.temp",
          node_exporter="node_thermal_zone_temp"),
)

RAPL = measurement(
    "rapl",
    "CPU energy from RAPL (/sys/class/powercap/intel-rapl:N[:M], Intel and AMD Zen): package, DRAM, core "
    "and uncore domains. The CPU's power on nodes without a GPU to report it. energy_uj wraps at "
    "max_energy_range_uj; the agent's rate adds the range back over a wrap.",
    ("zone", "domain"),
    counter("energy_joules", "Energy since some start (energy_uj / 1e6); wraps at max_energy_range_uj.",
            node_exporter="node_rapl_<domain>_joules_total"),
    rate("power_watts", "Average power over the interval (energy difference / time, wrap-safe).",
         telegraf="powerstat_package.current_power_consumption_watts / current_dram_power_consumption_watts",
         node_exporter="rate(node_rapl_<domain>_joules_total)"),
)

EDAC = measurement(
    "edac",
    "Memory errors corrected and not corrected by ECC, per memory controller (/sys/devices/system/edac/mc).",
    ("controller",),
    counter("correctable_errors", "Corrected errors (ce_count).", type=int,
            node_exporter="node_edac_correctable_errors_total"),
    counter("uncorrectable_errors", "Uncorrected errors (ue_count).", type=int,
            node_exporter="node_edac_uncorrectable_errors_total"),
)

MEASUREMENTS = (CPU, CPU_INFO, SYSTEM, MEMORY, VMSTAT, PRESSURE, HWMON, THERMAL_ZONE, RAPL, EDAC)
